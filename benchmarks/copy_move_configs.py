"""The copy-move cue alone, config against config, on a built benchmark's split: every image of a kind against the
split's real images (AUC), the share above a score (the lowest logistic centre a card may use, 0.1) and above the
reals' 99th percentile, the reals' high percentiles, and the cue's speed at batch 64 on this machine.

    python benchmarks/copy_move_configs.py --data data_cache/bench/manifest.csv --split test \
        --config 'autocorrelation=0' --config ''

--degrade jpeg75 (or any name of medfake.evaluation.robustness.DEGRADATIONS) applies that degradation to every
image of the split first, as `medfake eval`'s robustness table does. Each --config is a comma-separated list of
CopyMoveConfig fields (`''`: the defaults); the first is the baseline. --kinds picks the generators and methods
scored against the reals (default: the manipulation methods; e.g. `--kinds copy-move,ddim-v,ddpm-v,ddim-card`).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402

KINDS = ("copy-move", "splice", "retouch", "repaint", "repaint-ddim")


def parse_config(text: str):
    from medfake.detection.copymove import CopyMoveConfig

    fields = CopyMoveConfig.__dataclass_fields__
    kw = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown CopyMoveConfig field {name!r}; choose from {', '.join(fields)}")
        kw[name] = type(getattr(CopyMoveConfig(), name))(float(value))
    return CopyMoveConfig(**kw)


def auc(neg: np.ndarray, pos: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a built benchmark's manifest.csv")
    ap.add_argument("--split", default="test")
    ap.add_argument("--config", action="append", default=None, help="CopyMoveConfig fields, e.g. 'max_flat=1'")
    ap.add_argument("--degrade", default="clean", help="e.g. jpeg75, resize0.5 (applied to reals and fakes alike)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated generators / methods to score against the reals (e.g. ddim-v,ddpm-v)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())

    import torch
    from PIL import Image

    from medfake.detection.copymove import copy_move_scores
    from medfake.evaluation.robustness import DEGRADATIONS

    if args.degrade not in DEGRADATIONS:
        raise SystemExit(f"unknown degradation {args.degrade!r}; choose from {', '.join(DEGRADATIONS)}")
    degrade = DEGRADATIONS[args.degrade]

    torch.set_num_threads(args.threads)
    root = Path(args.data).parent
    rows = [r for r in csv.DictReader(open(args.data)) if r["split"] == args.split]
    if not rows:
        raise SystemExit(f"no {args.split} rows in {args.data}")
    x = torch.as_tensor(np.stack([
        np.clip(degrade(np.asarray(Image.open(root / r["path"]).convert("L"), np.float32) / 255,
                        np.random.default_rng(0)), 0, 1).astype(np.float32) for r in rows])[:, None])
    gen = np.array([r["generator"] for r in rows])
    real = gen == "real"
    lines = [f"{args.split} split of `{args.data}`"
             + ("" if args.degrade == "clean" else f", every image degraded by `{args.degrade}`")
             + f": {int(real.sum())} reals, "
             + ", ".join(f"{int((gen == k).sum())} {k}" for k in kinds if (gen == k).any()) + ".", "",
             "| config | img/s | reals p99 / p99.5 / max | " + " | ".join(f"{k} AUC" for k in kinds if (gen == k).any())
             + " | copy-move > 0.1 | copy-move > reals' p99 |",
             "|---|---|---|" + "---|" * sum((gen == k).any() for k in kinds) + "---|---|"]
    for text in args.config or ["autocorrelation=0", ""]:
        cfg = parse_config(text)
        copy_move_scores(x[:64], cfg)  # warm-up
        t = time.perf_counter()
        s = np.concatenate([copy_move_scores(x[i:i + 64], cfg).numpy() for i in range(0, len(x), 64)])
        rate = len(x) / (time.perf_counter() - t)
        sr = s[real]
        p99 = float(np.quantile(sr, 0.99))
        cm = s[gen == "copy-move"]
        lines.append(f"| `{text or 'defaults'}` | {rate:.0f} | {p99:.3f} / {np.quantile(sr, 0.995):.3f} / "
                     f"{sr.max():.3f} | "
                     + " | ".join(f"{auc(sr, s[gen == k]):.3f}" for k in kinds if (gen == k).any())
                     + f" | {(cm > 0.1).mean():.0%} | {(cm > p99).mean():.0%} |")
        print(lines[-1], flush=True)
    if not args.no_append:
        what = "" if args.degrade == "clean" else f", {args.degrade}"
        append(f"Copy-move cue configs on the benchmark's {args.split} split{what} (benchmarks/copy_move_configs.py)",
               "\n".join(lines))


if __name__ == "__main__":
    main()
