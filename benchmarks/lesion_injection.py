"""Does a RePaint lesion injection carry the lesion class? Guidance scales compared.

    .venv/bin/python benchmarks/lesion_injection.py [--n 8] [--guidance 1,2] [--steps 25] [--radius 0.18]

For each modality with a lesion label, n real test images of the healthy label get an ellipse (radii `--radius` of
the side, default 18 %) at their foreground's centroid inpainted by `repaint-ddim` conditioned on the lesion label.
The project's feature network (`models/features.*`, a 20-class (modality, label) classifier trained on the real
train split) scores each image before and after: the lesion's probability among the modality's labels, and
whether it becomes the top label. A crude proxy for "the injected region reads as that lesion" (the classifier is
weak: 68 % train accuracy, and it reads whole-image cues), used only to compare settings on the same images, masks
and seeds. Needs ../shared/datasets/medimg128.
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
from medfake.data.modalities import CLASS_INDEX, HEALTHY, MODALITIES
from medfake.io import read_image
from medfake.manipulation import repaint_ddim
from medfake.synthesis.quality import load_feature_net

LESION = {"brain_mri": "glioma", "kidney_ct": "Tumor", "lung_ct": "COVID", "breast_us": "malignant"}


def ellipse_at_foreground(a: np.ndarray, frac: float = 0.18) -> np.ndarray:
    """An ellipse mask centred on the centroid of the brighter-than-mean pixels."""
    h, w = a.shape
    fg = a > a.mean()
    ys, xs = np.nonzero(fg) if fg.any() else (np.array([h // 2]), np.array([w // 2]))
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / (frac * h)) ** 2 + ((xx - cx) / (frac * w)) ** 2 <= 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--guidance", default="1,2")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--radius", type=float, default=0.18, help="the ellipse's radii as a fraction of the side")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/datasets/medimg128")
    scales = [float(w) for w in args.guidance.split(",")]
    if not 0.02 <= args.radius <= 0.5:
        raise SystemExit("--radius must be between 0.02 and 0.5 (a fraction of the image side)")
    fnet, _ = load_feature_net("features", args.models_dir)
    test = filter_records(read_manifest(args.data), "test")

    def p_label(arr: np.ndarray, modality: str) -> np.ndarray:
        """(N, labels of the modality) probabilities from the 20-class head, renormalised over the modality."""
        with torch.no_grad():
            logits = fnet(torch.from_numpy(arr[:, None].astype(np.float32)) * 2 - 1)
        idx = [CLASS_INDEX[(modality, lab)] for lab in MODALITIES[modality]]
        return torch.softmax(logits[:, idx], 1).numpy()

    res: dict = {}
    for m, lesion in LESION.items():
        recs = [r for r in test if r.modality == m and r.label == HEALTHY[m]][: args.n]
        imgs = [read_image(r.path) for r in recs]
        arrs = np.stack([to_canonical(i) for i in imgs])
        j = list(MODALITIES[m]).index(lesion)
        before = p_label(arrs, m)
        ref = p_label(np.stack([to_canonical(read_image(r.path)) for r in test
                                if r.modality == m and r.label == lesion][: args.n]), m)
        row = {"n": len(recs), "before": {"p_lesion": float(before[:, j].mean()),
                                          "top_lesion": float((before.argmax(1) == j).mean())},
               "real_lesion": {"p_lesion": float(ref[:, j].mean()), "top_lesion": float((ref.argmax(1) == j).mean())}}
        for w in scales:
            t0 = time.time()
            outs = []
            for k, (im, a) in enumerate(zip(imgs, arrs)):
                im.array = a  # work at the canonical 128 px, as the benchmark's edits
                r = repaint_ddim(im, ellipse_at_foreground(a, args.radius), label=lesion, modality=m, seed=k,
                                 steps=args.steps, guidance=w, models_dir=args.models_dir)
                outs.append(to_canonical(r.image))
            after = p_label(np.stack(outs), m)
            row[f"w={w:g}"] = {"p_lesion": float(after[:, j].mean()), "top_lesion": float((after.argmax(1) == j).mean()),
                               "seconds_per_edit": round((time.time() - t0) / len(imgs), 2)}
        res[m] = row
        print(m, json.dumps(row))
    keys = [f"w={w:g}" for w in scales]
    lines = ["| modality (healthy → lesion) | n | real lesion images: P(lesion), top | before: P(lesion), top | "
             + " | ".join(f"RePaint-DDIM {k}: P(lesion), top" for k in keys) + " |",
             "|" + "---|" * (4 + len(keys))]
    for m, row in res.items():
        lines.append(f"| {m} ({HEALTHY[m]} → {LESION[m]}) | {row['n']} | {row['real_lesion']['p_lesion']:.2f}, "
                     f"{row['real_lesion']['top_lesion']:.2f} | {row['before']['p_lesion']:.2f}, "
                     f"{row['before']['top_lesion']:.2f} | "
                     + " | ".join(f"{row[k]['p_lesion']:.2f}, {row[k]['top_lesion']:.2f}" for k in keys) + " |")
    body = (f"`repaint-ddim` ({args.steps} steps, jump 5 × 2, η = 1) with the shipped `ddpm`; an ellipse of radii "
            f"{args.radius:.0%} of the side at the foreground centroid; P(lesion) is the feature network's mean "
            "probability of "
            "the lesion among the modality's labels, `top` the fraction whose top label is the lesion; the first column scores "
            "n real test images of the lesion label (what the classifier can tell).\n\n"
            + "\n".join(lines))
    if not args.no_append:
        append("RePaint lesion injection against guidance (benchmarks/lesion_injection.py)", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
