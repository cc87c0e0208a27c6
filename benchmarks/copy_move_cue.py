"""The copy-move cue (`medfake.detection.copymove`) alone and fused into the detector, on copy-moves of **test**
reals made like the data-set builder's, unprocessed and after JPEG 75 / resize ×0.5; and the cue's speed.

    python benchmarks/copy_move_cue.py [--n 300] [--models-dir models]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, append  # noqa: E402


# ---------------------------------------------------------------------------------------------- the experiment
def _jpeg(a: np.ndarray, q: int = 75) -> np.ndarray:
    from PIL import Image as P

    b = io.BytesIO()
    P.fromarray((a * 255).round().astype(np.uint8)).save(b, "JPEG", quality=q)
    return np.asarray(P.open(b), np.float32) / 255


def _half(a: np.ndarray) -> np.ndarray:
    from PIL import Image as P

    im = P.fromarray((a * 255).round().astype(np.uint8))
    im = im.resize((64, 64), P.Resampling.BILINEAR).resize((128, 128), P.Resampling.BILINEAR)
    return np.asarray(im, np.float32) / 255


def _q8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.float32) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--n", type=int, default=300, help="test reals (each also copy-moved once)")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from medfake.data.canonical import to_canonical
    from medfake.data.manifest import read_manifest
    from medfake.detection.copymove import CopyMoveConfig, copy_move_scores, copy_of_pair
    from medfake.detection.detector import load_detector
    from medfake.evaluation.build import _canonical_image, mask_from_geometry, random_mask_geometry
    from medfake.io.image import Image
    from medfake.manipulation import manipulate

    recs = [r for r in read_manifest(args.data) if r.split == "test"]
    rng = np.random.default_rng(args.seed)
    sel = rng.choice(len(recs), min(args.n, len(recs)), replace=False)
    reals, fakes, masks = [], [], []
    for i in sel:  # the data-set builder's copy-move: same mask sampler, same method, boolean mask
        r = recs[i]
        img = _canonical_image(r.path, r.modality, r.label or "")
        res = manipulate(img, mask_from_geometry(random_mask_geometry(rng)), "copy-move", seed=int(rng.integers(1 << 30)))
        reals.append(_q8(to_canonical(img)))
        fakes.append(_q8(to_canonical(res.image)))
        masks.append(np.asarray(res.mask, bool))
    det = load_detector("default", args.models_dir).with_copy_move_if(False)
    fused_det = det.with_copy_move_if(None)  # the cue where the card has one (an ensemble: its primary's)
    if fused_det.copy_move is None:
        fused_det = None
    cfg = fused_det.copy_move.config if fused_det is not None else CopyMoveConfig()
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    rows, speed, pix = [], None, None
    for name, f in (("clean", _q8), ("JPEG 75", _jpeg), ("resize x0.5", _half)):
        R = np.stack([f(a) for a in reals])
        Fk = np.stack([f(a) for a in fakes])
        x = torch.tensor(np.concatenate([R, Fk]))[:, None]
        t0 = time.perf_counter()
        s, regions, _ = copy_move_scores(x, cfg, return_maps=True)
        dt = time.perf_counter() - t0
        s = s.numpy()
        ims = [Image(a) for a in np.concatenate([R, Fk])]
        cols = [(s, None)]
        for d in (det, fused_det):
            if d is None:
                continue
            preds = d.predict(ims)
            pm = np.array([p.p_manipulated for p in preds])
            called = np.array([p.verdict == "manipulated" for p in preds])
            cols.append((pm, called))
        cells = []
        for sc, called in cols:
            thr = float(np.quantile(sc[: len(R)], 0.99))
            cells.append(f"{roc_auc_score(y, sc):.3f} | {float((sc[len(R):] > thr).mean()):.3f}")
            if called is not None:
                cells.append(f"{float(called[len(R):].mean()):.3f} / {float(called[: len(R)].mean()):.3f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        if name == "clean":
            speed = len(x) / dt
            # pixel-F1 of the cue's map on the copies it finds: the pair (copy + source), and the region
            # copy_of_pair keeps (the one whose boundary is the stronger seam), as `medfake detect` maps it
            found = np.flatnonzero(s[len(R):] > float(np.quantile(s[: len(R)], 0.99)))
            f1s, f1c = [], []
            for i in found:
                m, pair = masks[i], regions[len(R) + i].numpy()
                for out, mp in ((f1s, pair[0] | pair[1]), (f1c, copy_of_pair(Fk[i], pair))):
                    out.append(2 * float((m & mp).sum()) / max(float(m.sum() + mp.sum()), 1.0))
            pix = (float(np.mean(f1s)) if f1s else float("nan"), int(len(found)),
                   float(np.mean(f1c)) if f1c else float("nan"))
    body = (f"{len(reals)} medimg128 **test** reals and a copy-move of each (the data-set builder's mask sampler and "
            f"method), unmodified and after JPEG 75 / resize x0.5 (both sets). TPR at the 99th percentile of the "
            f"reals' scores (1 % FPR here). Detector: `{det.name}` {det.version}, p_manipulated, alone and fused "
            f"with the cue (as `medfake detect` runs it by default); 'called' = verdict manipulated at the card's "
            f"thresholds, copies / reals.\n\n"
            "| images | cue AUC | cue TPR@1%FPR | detector AUC | TPR@1%FPR | called | + cue AUC | TPR@1%FPR | "
            "called |\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nCue speed with its maps: {speed:.1f} img/s ({torch.get_num_threads()} torch threads). Cue map pixel-F1 on the "
              f"{pix[1]} copies it finds at 1 % FPR: {pix[0]:.3f} for the pair (the copy and its source: ≤ 0.67), "
              f"{pix[2]:.3f} for the region `copy_of_pair` keeps (the stronger seam).")
    print(body)
    if not args.no_append:
        append("Copy-move cue", body)


if __name__ == "__main__":
    main()
