"""Reconstruction quality of the KL autoencoder (`vae` card) on the medimg128 **test** split: PSNR and SSIM
(MONAI metrics) per modality, and how much high-frequency detail survives (mean |Laplacian| of the
reconstruction over that of the real image: 1 = as sharp, < 1 = smoother). A blurry autoencoder would teach a
detector "smooth = fake", which is why the last column matters.

    python benchmarks/vae_recon.py [--model vae] [--models-dir models] [--per-modality 100] [--update-card]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, append  # noqa: E402


def _lap(x):
    import torch

    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(x, k)[:, 0].abs().mean((1, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vae")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--per-modality", type=int, default=100)
    ap.add_argument("--update-card", action="store_true", help="write the numbers into the card's metrics")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch
    from monai.metrics import PSNRMetric, SSIMMetric

    from medfake.data.manifest import read_manifest
    from medfake.io.readers import read_image
    from medfake.models.cards import read_card, write_card
    from medfake.synthesis import load_generator

    gen = load_generator(args.model, models_dir=args.models_dir)
    recs = [r for r in read_manifest(args.data) if r.split == "test"]
    by_mod = defaultdict(list)
    for r in sorted(recs, key=lambda r: str(r.path)):
        if len(by_mod[r.modality]) < args.per_modality:
            by_mod[r.modality].append(r)
    psnr, ssim = PSNRMetric(max_val=1.0), SSIMMetric(spatial_dims=2, data_range=1.0)
    rows, metrics = [], {}
    for m, rs in sorted(by_mod.items()):
        srcs = [read_image(r.path) for r in rs]
        out = gen.reconstruct(srcs)
        x = torch.from_numpy(np.stack([s.array for s in srcs]))[:, None].float()
        y = torch.from_numpy(np.stack([np.round(o.array * 255) / 255 for o in out]))[:, None].float()  # as written
        p, s = float(psnr(y, x).mean()), float(ssim(y, x).mean())
        sharp = float((_lap(y) / _lap(x).clamp_min(1e-6)).median())
        metrics[m] = {"psnr_db": round(p, 2), "ssim": round(s, 4), "laplacian_ratio": round(sharp, 3), "n": len(rs)}
        rows.append(f"| {m} | {len(rs)} | {p:.2f} | {s:.4f} | {sharp:.3f} |")
    card = read_card(args.model, Path(args.models_dir) if args.models_dir else None)
    body = (f"Model `{args.model}` (version {card.get('version')}, {card.get('steps')} steps, "
            f"{card.get('hardware')}); test split, first {args.per_modality} images per modality.\n\n"
            "| modality | n | PSNR dB | SSIM | high-frequency kept (median Laplacian ratio) |\n|---|---|---|---|---|\n"
            + "\n".join(rows))
    if args.update_card:
        card.setdefault("metrics", {})["reconstruction_test"] = metrics
        write_card(card["_path"], card)
    print(json.dumps(metrics, indent=1))
    if not args.no_append:
        append("KL autoencoder: reconstruction quality (benchmarks/vae_recon.py)", body)


if __name__ == "__main__":
    main()
