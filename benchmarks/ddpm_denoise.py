"""How well a DDPM estimates the clean image at each noise level (the diagnosis behind its samples' quality).

    .venv/bin/python benchmarks/ddpm_denoise.py [--models-dir models [--models-dir runs/x ...]] [--n 60]

For real test images x0 (balanced over the six modalities, conditioned on their own class), x_t = √ᾱ x0 + √(1−ᾱ) ε
at several t; the model's output is turned into the clean-image estimate by MONAI's DDIM step (clipped to [−1, 1],
as when sampling) and compared with x0 (mean squared error on the [−1, 1] scale). Reference: the error of
predicting the test images' mean image, which knows nothing about x_t. An estimate worse than that at high t
means sampling starts from amplified noise. Needs ../shared/datasets/medimg128.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, SHARED, append
from medfake.data import MODALITY_NAMES, filter_records, read_manifest
from medfake.data.datasets import ImageDataset, train_transforms
from medfake.synthesis import load_generator
from medfake.synthesis.samplers import make_scheduler

TS = (50, 200, 400, 600, 800, 950)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, action="append", default=None)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--n", type=int, default=60, help="test images (balanced over modalities)")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    dirs = args.models_dir or [ROOT / "models"]
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/datasets/medimg128")
    test = filter_records(read_manifest(args.data), "test")
    rng = np.random.default_rng(0)
    per = max(1, args.n // len(MODALITY_NAMES))
    pick = []
    for m in MODALITY_NAMES:
        rs = [r for r in test if r.modality == m]
        pick += [rs[i] for i in rng.choice(len(rs), size=min(per, len(rs)), replace=False)]
    ds = ImageDataset(pick, train_transforms(False))
    x0 = torch.stack([ds[i]["image"] for i in range(len(ds))]).float()
    cls = torch.tensor([ds[i]["cls"] for i in range(len(ds))])
    ref = float(((x0 - x0.mean(0, keepdim=True)) ** 2).mean())
    rows = []
    for d in dirs:
        gen = load_generator("ddpm", models_dir=d)
        model = gen.module
        sched = make_scheduler(model, "ddim", model.cfg.num_train_timesteps)
        acp = sched.alphas_cumprod
        g = torch.Generator().manual_seed(0)
        errs = []
        for t in TS:
            noise = torch.randn(x0.shape, generator=g)
            a = acp[t]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            out = torch.cat([model(xt[i:i + 16], torch.full((len(xt[i:i + 16]),), t), cls[i:i + 16])
                             for i in range(0, len(xt), 16)])
            x0h = sched.step(out, t, xt)[1]
            errs.append(float(((x0h - x0) ** 2).mean()))
        c = gen.card
        rows.append(f"| {c.get('version')} ({c['config'].get('prediction_type', 'epsilon')}, {c.get('steps')} steps) | "
                    + " | ".join(f"{e:.3f}" for e in errs) + " |")
        print(rows[-1])
    body = (f"{len(ds)} real test images ({per} per modality), each conditioned on its class; clean-image estimate "
            f"(MONAI DDIM step, clipped) against x0, MSE on the [−1, 1] scale. Reference: predicting the test mean "
            f"image, **{ref:.3f}**.\n\n| DDPM | " + " | ".join(f"t = {t}" for t in TS) + " |\n|---|"
            + "---|" * len(TS) + "\n" + "\n".join(rows))
    if not args.no_append:
        append("DDPM clean-image estimate per noise level (benchmarks/ddpm_denoise.py)", body)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
