"""Leave-one-generator-out (LOGO) matrix on a built benchmark: for each generator/method g, train a detector on
the train split without g, then score the test split of every generator/method against the real test images.

    python benchmarks/logo.py --data data_cache/bench/manifest.csv --config dual-srm --steps 400 --out bench_out/logo

Each fold's detector (card, weights, retrieval bank) stays in OUT/without_<g>/ so that
`benchmarks/detect_fewshot.py --models-dir OUT/without_<g> --detector logo --holdout <g>` can reuse it.
Writes OUT/logo.json and appends the matrix to benchmarks/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import append


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="manifest.csv of a built data set")
    ap.add_argument("--config", default="dual-srm", help="registered detector architecture")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--generators", default="", help="comma-separated subset to hold out (default: all)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/logo"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--online-manipulations", type=float, default=0.0,
                    help="train each fold with on-the-fly pseudo-manipulations (self-blends/splices) at this rate")
    ap.add_argument("--no-copy-move", action="store_true",
                    help="train and score the folds without the copy-move cue (as before 2026-12-02)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from medfake.evaluation.protocols import detection_trainer, leave_one_generator_out

    t0 = time.time()
    gens = [g for g in args.generators.split(",") if g] or None
    res = leave_one_generator_out(args.data, work_dir=args.out, generators=gens, seed=args.seed,
                                  train_fn=detection_trainer(args.config, args.steps, args.batch_size,
                                                             online_manipulations=args.online_manipulations,
                                                             copy_move_cue=not args.no_copy_move),
                                  detector_config=args.config, steps=args.steps)
    res["minutes"] = round((time.time() - t0) / 60, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logo.json").write_text(json.dumps(res, indent=2))
    cols = res["columns"]
    lines = ["| held out ↓ / test → | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for g, row in zip(res["rows"], res["matrix"]):
        cells = [("**%.3f**" if c == g else "%.3f") % v if v is not None else "–" for c, v in zip(cols, row)]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    held = res["held_out_auc"]
    side = res.get("held_out_auc_by_score") or {}
    keys = sorted({k for v in side.values() for k in v})
    side_lines = ["| held out | fake (fused) | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for g in res["rows"]:
        side_lines.append(f"| {g} | {held[g]:.3f} | "
                          + " | ".join("%.3f" % side[g][k] if k in side.get(g, {}) else "–" for k in keys) + " |")
    worst = min(held, key=lambda k: held[k] if held[k] is not None else 2)
    body = (f"Detector `{args.config}`, {args.steps} steps of batch {args.batch_size} per fold"
            + (f", pseudo-manipulations at rate {args.online_manipulations}" if args.online_manipulations else "")
            + (", without the copy-move cue" if args.no_copy_move else ", with the copy-move cue (as medfake detect)")
            + f", {len(res['rows'])} "
            f"folds, {res['minutes']} min in all; test split, {res['n_test']} images; AUC of the fake score (any "
            f"fake) of each generator's test images against all real test images. Bold: the held-out generator.\n\n"
            + "\n".join(lines)
            + f"\n\nHeld-out AUC ≥ 0.95 for {sum(v is not None and v >= 0.95 for v in held.values())} of "
              f"{len(held)}; worst: {worst} {held[worst]:.3f}."
            + ("\n\nThe held-out generator's AUC under each of its fold detector's scores (the anomaly score is "
               "fitted on real training images only):\n\n" + "\n".join(side_lines) if keys else ""))
    if not args.no_record:
        append("Leave-one-generator-out (benchmarks/logo.py)", body)
    else:
        print(body)
    return res


if __name__ == "__main__":
    main()
