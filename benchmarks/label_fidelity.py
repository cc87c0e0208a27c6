"""Does the DDPM draw the label it is asked for? Label fidelity of class-conditional samples.

    .venv/bin/python benchmarks/label_fidelity.py [--n 8] [--guidance card,3] [--modalities brain_mri,kidney_ct]

For every (modality, label) the shipped `ddpm` draws n samples conditioned on it (the card's per-modality sampler
settings; `--guidance` adds runs at other guidance scales, `card` being the card's own). The project's feature
network (`models/features.*`, a 20-class (modality, label) classifier trained on the real train split) scores each
sample: the asked label's probability among the modality's labels, and whether it is the top label. The same for
n real test images of that label says what the classifier can tell at all (it is weak: 68 % train accuracy), and
chance is 1 / (labels of the modality). A lesion injection can only carry its class (benchmarks/lesion_injection.py)
if whole samples of that class do. Needs ../shared/datasets/medimg128 (the real reference column).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, SHARED, append
from medfake.data import filter_records, read_manifest, to_canonical
from medfake.data.modalities import CLASS_INDEX, MODALITIES, MODALITY_NAMES
from medfake.io import read_image
from medfake.synthesis import load_generator
from medfake.synthesis.quality import load_feature_net


def label_scores(fnet, arr: np.ndarray, modality: str, label: str) -> tuple[float, float]:
    """(mean probability of `label` among the modality's labels, fraction with it as the top label)."""
    idx = [CLASS_INDEX[(modality, lab)] for lab in MODALITIES[modality]]
    with torch.no_grad():
        logits = fnet(torch.from_numpy(arr[:, None].astype(np.float32)) * 2 - 1)
    p = torch.softmax(logits[:, idx], 1).numpy()
    j = list(MODALITIES[modality]).index(label)
    return float(p[:, j].mean()), float((p.argmax(1) == j).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--generator", default="ddpm")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--guidance", default="card", help="comma list: 'card' (the card's settings) and/or scales")
    ap.add_argument("--modalities", default=",".join(MODALITY_NAMES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/datasets/medimg128")
    mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = sorted(set(mods) - set(MODALITY_NAMES))
    if unknown:
        raise SystemExit(f"unknown modalities {unknown}; choose from {', '.join(MODALITY_NAMES)}")
    runs = [None if g.strip() == "card" else float(g) for g in args.guidance.split(",") if g.strip()]
    fnet, _ = load_feature_net("features", args.models_dir)
    gen = load_generator(args.generator, args.models_dir, device="cpu")
    test = filter_records(read_manifest(args.data), "test")

    rows, t0 = [], time.time()
    for m in mods:
        for lab in MODALITIES[m]:
            real = [r for r in test if r.modality == m and r.label == lab][: args.n]
            row = {"modality": m, "label": lab, "chance": 1 / len(MODALITIES[m]),
                   "real": label_scores(fnet, np.stack([to_canonical(read_image(r.path)) for r in real]), m, lab)
                   if real else None, "n_real": len(real)}
            for w in runs:
                s = gen.sampling_settings(m, guidance=w)
                imgs = gen.sample(m, lab, args.n, seed=args.seed, **s)
                row["card" if w is None else f"w={w:g}"] = label_scores(fnet, np.stack([i.array for i in imgs]), m, lab)
                row.setdefault("settings", {})["card" if w is None else f"w={w:g}"] = s
            rows.append(row)
            print(json.dumps(row))
    keys = ["card" if w is None else f"w={w:g}" for w in runs]

    def cell(v):
        return "–" if v is None else f"{v[0]:.2f}, {v[1]:.2f}"

    lines = ["| modality | label | chance | real test images: P(label), top | "
             + " | ".join(f"samples ({k}): P(label), top" for k in keys) + " |", "|" + "---|" * (4 + len(keys))]
    for r in rows:
        lines.append(f"| {r['modality']} | {r['label']} | {r['chance']:.2f} | {cell(r['real'])} | "
                     + " | ".join(cell(r[k]) for k in keys) + " |")
    summary = []
    for k in keys:
        per_mod = {}
        for m in mods:
            rr = [r for r in rows if r["modality"] == m and r[k] is not None]
            per_mod[m] = (np.mean([r[k][1] for r in rr]), np.mean([r["real"][1] for r in rr if r["real"]]))
        summary.append(f"- {k}: top-label accuracy of samples (of real test images), mean over labels: "
                       + "; ".join(f"{m} {a:.2f} ({b:.2f})" for m, (a, b) in per_mod.items()))
    body = (f"Generator `{args.generator}` {gen.version}; {args.n} samples per (modality, label), seed {args.seed}; "
            "feature network `features` (20 classes, renormalised over the modality's labels). "
            f"{time.time() - t0:.0f} s in all.\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary))
    if not args.no_append:
        append("DDPM label fidelity (benchmarks/label_fidelity.py)", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
