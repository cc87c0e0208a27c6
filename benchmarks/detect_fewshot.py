"""Few-shot retrieval: do 10 reference images of a held-out generator (synthetic) or manipulation method raise the
detector's AUC on it?

Uses a detector trained WITHOUT the held-out generator (e.g. the leave-one-generator-out model), the builder's data
set manifest (path, modality, label, split, kind, generator, mask), and compares AUC(real vs held-out synthetic)
on the test split before and after adding `--shots` references of that generator (from another split) to the
retrieval bank — no retraining.

    python benchmarks/detect_fewshot.py --data DATASET/manifest.csv --detector logo-ddpm --holdout ddpm
    python benchmarks/detect_fewshot.py --demo          # tiny generated data + tiny detector, checks the plumbing

Appends a line to benchmarks/RESULTS.md unless --no-record.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _demo(work: Path) -> tuple[Path, Path, str, str]:
    """Real = smooth blobs; generator 'checker' adds a checkerboard, held-out 'stripes' adds row stripes."""
    import csv

    from PIL import Image as PILImage
    from scipy.ndimage import gaussian_filter

    from medfake.data.modalities import MODALITY_NAMES
    from medfake.detection import train_detector

    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[:128, :128]
    for kind, gen, n in (("real", "", 90), ("synthetic", "checker", 60), ("synthetic", "stripes", 60)):
        for i in range(n):
            a = gaussian_filter(rng.random((128, 128)), 8)
            a = 0.15 + 0.7 * (a - a.min()) / (np.ptp(a) + 1e-8)
            if gen == "checker":
                a = a + 0.06 * (((xx + yy) % 2) * 2 - 1)
            elif gen == "stripes":
                a = a + 0.06 * ((yy % 2) * 2 - 1)
            rel = f"{gen or 'real'}/{i:03d}.png"
            (work / (gen or "real")).mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)).save(work / rel)
            split = ("train", "val", "test")[i % 3]
            rows.append({"path": rel, "modality": MODALITY_NAMES[i % 6], "label": "", "split": split, "kind": kind,
                         "generator": gen, "mask": ""})
    with (work / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    from medfake.detection.train import load_records

    recs = [r for r in load_records(work / "manifest.csv") if r.get("generator") != "stripes"]
    train_detector("dual-srm", recs, work / "models", name="demo", steps=60, batch_size=16, lr=3e-3, device="cpu",
                   config={"stem": 4, "widths": [8, 16, 32], "seg_channels": 4}, bank_size=60)
    return work / "manifest.csv", work / "models", "demo", "stripes"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--holdout", help="generator name held out from the detector's training")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from medfake.detection import load_detector
    from medfake.detection.train import load_records
    from medfake.io import read_image

    if args.demo:
        args.data, args.models_dir, args.detector, args.holdout = _demo(Path(tempfile.mkdtemp(prefix="fewshot_")))
    if not args.data or not args.holdout:
        ap.error("--data and --holdout are required (or --demo)")
    recs = load_records(args.data)
    det = load_detector(args.detector, args.models_dir)
    if args.holdout in (det.card.get("generators") or []):
        print(f"warning: {det.name} was trained on {args.holdout!r}; the benchmark expects a held-out generator")
    kinds = {r.get("kind") for r in recs if r.get("generator") == args.holdout and r.get("kind") != "real"}
    if len(kinds) != 1:
        raise SystemExit(f"{args.holdout!r}: expected the images of one fake kind, found {sorted(kinds) or 'none'}")
    kind = kinds.pop()  # synthetic or manipulated: which score, threshold and reference label to use
    if kind == "manipulated" and not det.has_man:
        raise SystemExit(f"{det.name} has no manipulation head")
    test_real = [r for r in recs if r.split == args.split and r.get("kind") == "real"]
    test_fake = [r for r in recs if r.split == args.split and r.get("kind") == kind
                 and r.get("generator") == args.holdout]
    pool = [r for r in recs if r.split != args.split and r.get("kind") == kind
            and r.get("generator") == args.holdout]
    if not test_real or not test_fake or len(pool) < args.shots:
        raise SystemExit(f"need real and {args.holdout!r} images in split {args.split!r} and ≥{args.shots} "
                         f"{args.holdout!r} images in other splits")
    rng = np.random.default_rng(args.seed)
    refs = [read_image(pool[i].path) for i in rng.choice(len(pool), args.shots, replace=False)]
    images = [read_image(r.path) for r in test_real + test_fake]
    y = np.r_[np.zeros(len(test_real)), np.ones(len(test_fake))]
    thr = float(det.thresholds[kind])  # the global threshold of that head (before any per-modality floor)

    def aucs(d):
        preds = d.predict(images)
        p = np.array([q.p_synthetic if kind == "synthetic" else q.p_manipulated for q in preds])
        knn = np.array([q.scores.get(f"knn_{kind}", 0.0) for q in preds])
        return float(roc_auc_score(y, p)), float(roc_auc_score(y, knn)) if len(set(knn)) > 1 else 0.5, p

    before, knn_before, pb = aucs(det)
    det2 = det.with_references(refs, [kind] * args.shots)
    after, knn_after, pa = aucs(det2)
    res = {"detector": f"{det.name} ({det.card.get('architecture')}, {det.version})", "holdout": args.holdout,
           "kind": kind, "shots": args.shots, "n_real": len(test_real), "n_fake": len(test_fake),
           "retrieval_weight": det2.retrieval_weights[kind], "auc_before": round(before, 4), "auc_after": round(after, 4),
           "knn_auc_before": round(knn_before, 4), "knn_auc_after": round(knn_after, 4),
           "tpr_before": float((pb[y == 1] >= thr).mean()), "tpr_after": float((pa[y == 1] >= thr).mean()),
           "fpr_before": float((pb[y == 0] >= thr).mean()), "fpr_after": float((pa[y == 0] >= thr).mean())}
    print(json.dumps(res, indent=2))
    if not args.no_record:
        line = (f"\n## detect_fewshot — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
                f"- command: `python benchmarks/detect_fewshot.py {shlex.join(argv if argv is not None else sys.argv[1:])}`\n"
                f"- machine: {platform.machine()} {platform.processor() or ''}\n"
                f"- detector {res['detector']}, held-out {kind} generator `{args.holdout}` (score p_{kind}), "
                f"{args.shots} references, "
                f"{res['n_real']} real / {res['n_fake']} fake test images{' (tiny demo data)' if args.demo else ''}\n"
                f"- AUC {res['auc_before']} → **{res['auc_after']}** (kNN alone {res['knn_auc_before']} → "
                f"{res['knn_auc_after']}); TPR at the card threshold {res['tpr_before']:.3f} → {res['tpr_after']:.3f}, "
                f"real FPR {res['fpr_before']:.3f} → {res['fpr_after']:.3f}\n")
        with (ROOT / "benchmarks" / "RESULTS.md").open("a") as fh:
            fh.write(line)
    return res


if __name__ == "__main__":
    main()
