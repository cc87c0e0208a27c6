"""README figure: original, mask and result for each manipulation method on a few images.

    .venv/bin/python benchmarks/manipulation_figure.py [--models-dir models] [--steps 25]

Inputs are public test images that ship with pydicom (CT and MR) and a DDPM-synthesized chest X-ray, so no
medimg128 image ends up in the repository. The CT mask lies in the lung field (where CT-GAN injects); each method
gets the feather `medfake manipulate` uses by default (2 px for RePaint). Writes docs/img/manipulation.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import ROOT
from medfake.io import read_image
from medfake.manipulation import default_feather, make_mask, manipulate
from medfake.synthesis import load_generator


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pydicom.data import get_testdata_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "manipulation.png")
    args = ap.parse_args()

    ct = read_image(get_testdata_file("CT_small.dcm", download=False), window="lung")
    ct.meta.modality = "lung_ct"
    mr = read_image(get_testdata_file("MR_small.dcm", download=False))
    mr.meta.modality = "brain_mri"
    cx = load_generator("ddpm", models_dir=args.models_dir).sample("chest_xray", "NORMAL", 1, steps=args.steps, seed=3)[0]
    donors = {"lung_ct": ct.with_array(np.fliplr(ct.array).copy()), "brain_mri": mr.with_array(np.flipud(mr.array).copy()),
              "chest_xray": cx.with_array(np.fliplr(cx.array).copy())}
    # mask ellipse (cx, cy, rx, ry) per case; None = right of centre. CT_small is a 128 px crop around the spine
    # whose lung fields are its upper corners: the lesion goes into the left one.
    cases = [(ct, "COVID", (18, 30, 12, 11)), (mr, "glioma", None), (cx, "PNEUMONIA", None)]
    methods = ["repaint", "repaint-ddim", "copy-move", "splice", "retouch"]
    fig, axes = plt.subplots(len(cases), 2 + len(methods), figsize=(2 * (2 + len(methods)), 2.1 * len(cases)))
    for r, (img, label, ellipse) in enumerate(cases):
        h, w = img.shape
        ellipse = ellipse or (w // 2 + w // 8, h // 2, w // 7, h // 9)
        mask = make_mask(img.shape, ellipse=ellipse)
        axes[r, 0].imshow(img.array, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(f"original ({img.meta.modality}, {w}×{h})", fontsize=7)
        axes[r, 1].imshow(mask, cmap="gray")
        axes[r, 1].set_title("mask", fontsize=7)
        for c, meth in enumerate(methods):
            kw = {"label": label, "steps": args.steps, "models_dir": args.models_dir} if meth.startswith("repaint") else {}
            if meth == "splice":
                kw["donor"] = donors[img.meta.modality]
            t0 = time.time()
            m = make_mask(img.shape, ellipse=ellipse, feather=default_feather(meth))
            res = manipulate(img, m, meth, seed=0, **kw)
            axes[r, 2 + c].imshow(res.image.array, cmap="gray", vmin=0, vmax=1)
            axes[r, 2 + c].set_title(f"{meth}{' → ' + label if 'label' in kw else ''} ({time.time() - t0:.1f} s)", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout(pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
