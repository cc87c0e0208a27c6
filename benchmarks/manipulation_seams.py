"""Seam visibility: gradient magnitude on the mask boundary vs the rest of the image, per method, with and
without feathering.

    .venv/bin/python benchmarks/manipulation_seams.py [--n 20] [--feather 0 4] [--diffusion --models-dir models]

On medimg128 test images (../shared) when present, else on synthetic smooth scans. For every image a random
ellipse mask (seeded) is drawn; the manipulated image's Sobel gradient magnitude is averaged on the ring of
pixels within 1 px of the mask's edge (`edge`) and of its feathered support's edge (`support edge`), and on
all other pixels (`rest`). The table gives mean(edge)/mean(rest) for the manipulated image next to the same
ratio for the untouched image with the same mask (`orig`): a seam shows up as a ratio well above `orig`.
Inside the mask (eroded by 2 px, away from the seam) two more columns: `texture` = mean gradient of the result
over that of the original (below 1: smoother than the anatomy it replaced, e.g. a blurry inpainting) and
`bias` = mean intensity of the result minus that of the original, in [0, 1] display units (a dark smear shows as a
negative bias). With `--diffusion`, RePaint runs in the variants of DIFFUSION (the shipped default DDPM).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from _common import ROOT, SHARED, append
from medfake.data import MODALITY_NAMES, filter_records, read_manifest
from medfake.io import Image, read_image
from medfake.manipulation import make_mask, manipulate

CLASSICAL = [("copy-move", {}), ("splice", {"blend": "alpha"}), ("splice", {"blend": "poisson"}),
             ("retouch", {"mode": "blur", "sigma": 3.0}), ("retouch", {"mode": "noise", "noise_std": 0.05})]
# RePaint variants (CPU-sized, --ddim-steps steps each): the fast DDIM variant (jump 5 × 2) at η = 0, 0.5 and 1 (its
# default since 2026-12-02), and ancestral RePaint on respaced steps with the paper's jump 10 × 10
DIFFUSION = {"ddim-eta0": ("repaint-ddim", {"eta": 0.0}), "ddim-eta0.5": ("repaint-ddim", {"eta": 0.5}),
             "ddim-eta1": ("repaint-ddim", {"eta": 1.0}),
             "ancestral": ("repaint", {})}


def grad(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return np.hypot(ndimage.sobel(a, 0), ndimage.sobel(a, 1))


def ring(m: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(m, iterations=1) & ~ndimage.binary_erosion(m, iterations=1)


def load_images(n: int, data: Path) -> tuple[list[Image], str]:
    if data.exists():
        recs = filter_records(read_manifest(data), "test")
        out = []
        for mod in MODALITY_NAMES:
            for r in [r for r in recs if r.modality == mod][:n]:
                img = read_image(r.path)
                img.meta.modality, img.meta.label = r.modality, r.label
                out.append(img)
        return out, f"medimg128 test split, {n} per modality ({len(out)} images)"
    rng = np.random.default_rng(0)
    out = []
    for i in range(n * len(MODALITY_NAMES)):
        yy, xx = np.mgrid[:128, :128] / 128.0
        a = 0.2 + 0.5 * (((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.1) + ndimage.gaussian_filter(rng.normal(0, 0.3, (128, 128)), 2)
        img = Image(np.clip(a, 0, 1).astype(np.float32))
        img.meta.modality = MODALITY_NAMES[i % len(MODALITY_NAMES)]
        out.append(img)
    return out, f"synthetic smooth scans ({len(out)}; medimg128 not present)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="images per modality")
    ap.add_argument("--feather", type=float, nargs="+", default=[0.0, 4.0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--diffusion", action="store_true",
                    help="also run the RePaint variants (needs a DDPM in --models-dir)")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--ddim-steps", type=int, default=50, help="steps of every RePaint variant")
    ap.add_argument("--variants", nargs="+", choices=list(DIFFUSION), default=list(DIFFUSION),
                    help="which RePaint variants --diffusion runs")
    ap.add_argument("--skip-classical", action="store_true")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    images, desc = load_images(args.n, args.data)
    methods = [] if args.skip_classical else list(CLASSICAL)
    if args.diffusion:
        methods += [(m, {**kw, "steps": args.ddim_steps, "models_dir": args.models_dir})
                    for m, kw in (DIFFUSION[v] for v in args.variants)]
    rows = []
    t0 = time.time()
    for method, params in methods:
        for feather in args.feather:
            r_edge, r_sup, r_orig, secs, tex, bias = [], [], [], [], [], []
            for i, img in enumerate(images):
                rng = np.random.default_rng(i)
                h, w = img.shape
                rx, ry = rng.uniform(0.08, 0.16, 2) * (w, h)
                cx = rng.uniform(rx + feather + 2, w - rx - feather - 3)
                cy = rng.uniform(ry + feather + 2, h - ry - feather - 3)
                base = make_mask(img.shape, ellipse=(cx, cy, rx, ry))
                mask = make_mask(img.shape, ellipse=(cx, cy, rx, ry), feather=feather)
                kw = dict(params)
                if method == "splice":
                    kw["donor"] = images[(i + 1) % len(images)] if images[(i + 1) % len(images)].meta.modality == \
                        img.meta.modality else images[i - 1]
                if method.startswith("repaint"):
                    kw["label"] = img.meta.label or None
                s = time.perf_counter()
                res = manipulate(img, mask, method, seed=i, **kw)
                secs.append(time.perf_counter() - s)
                g_new, g_old = grad(res.image.array), grad(img.array)
                edge, sup = ring(base), ring(res.mask)
                rest = ~(edge | sup)
                r_edge.append(g_new[edge].mean() / g_new[rest].mean())
                r_sup.append(g_new[sup].mean() / g_new[rest].mean())
                r_orig.append(g_old[edge].mean() / g_old[rest].mean())
                inner = ndimage.binary_erosion(base, iterations=2)
                tex.append(g_new[inner].mean() / max(g_old[inner].mean(), 1e-6))
                bias.append(float(res.image.array[inner].mean() - img.array[inner].mean()))
            name = method + (f" ({next(iter(params.values()))})" if method in ("splice", "retouch") else "")
            if method.startswith("repaint"):
                name += f" ({params['steps']} steps" + (f", η = {params['eta']:g}" if "eta" in params else "") + ")"
            rows.append((name, feather, np.mean(r_edge), np.std(r_edge), np.mean(r_sup), np.mean(r_orig),
                         np.mean(tex), np.mean(bias), np.mean(np.abs(bias)), 1000 * np.mean(secs)))
            print(rows[-1])
    ddpm = json.loads((args.models_dir / "ddpm.json").read_text()).get("version", "?") if args.diffusion else None
    body = ([f"RePaint model: `ddpm` {ddpm} from {args.models_dir}.", ""] if ddpm else []) + [
            f"Data: {desc}. Random ellipse masks (radii 8–16 % of the image), seeded; gradient = Sobel magnitude "
            "on the output's [0, 1] display array.", "",
            "| method | feather px | edge/rest (mean ± sd) | support-edge/rest | orig edge/rest | texture inside "
            "(result/orig) | bias inside (mean, mean abs) | ms/image |",
            "|---|---|---|---|---|---|---|---|"]
    for name, f, me, se, ms, mo, tx, b, ab, t in rows:
        body.append(f"| {name} | {f:g} | {me:.2f} ± {se:.2f} | {ms:.2f} | {mo:.2f} | {tx:.2f} | {b:+.3f}, {ab:.3f} "
                    f"| {t:.1f} |")
    body.append("")
    body.append(f"Total {time.time() - t0:.0f} s.")
    text = "\n".join(body)
    if args.no_append:
        print(text)
    else:
        append("Manipulation seams (gradient on the mask boundary vs the rest)", text)


if __name__ == "__main__":
    main()
