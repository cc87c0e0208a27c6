"""Would two detectors that raise different false alarms do better together? An offline probe, not a shipped
detector: each member scores the benchmark's val and test images and both sets of outside reals; the members'
p_synthetic and p_manipulated are combined (min = both must agree, or the mean); every single member and every
combination then gets the same plain rule (with three or more members also the mean of all), so that the rows
compare like with like:

- thresholds: the 99th percentile of the combined score on the val split's real images (1 % false alarms), one per
  head, no per-modality floors, no uncertain band, no small-input thresholds;
- verdict: synthetic if p_synthetic clears its threshold, else manipulated if p_manipulated clears its one, else
  real.

The shipped verdicts differ (floors, uncertain band, shifted copies in the real pool), so the single rows here are
not `medfake eval`'s numbers; only the comparison within this table is. A second table keeps each member's own
verdicts (its card's full rule, as `medfake detect` gives them) and, for each pair, the agreement rule: not real
only where both members say not real (the first member's verdict then); with three or more members also "k of n":
not real where at least k of them say so (the verdict most of those give). In both tables a catch is any verdict
other than real.

    python benchmarks/ensemble_probe.py --data data_cache/bench/manifest.csv \\
        --member models:detector-default --member models:detector-second [--no-append]

(the shipped default, `detector-ensemble`, is built into `medfake detect` from these two: detection/ensemble.py)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402

TARGET_FPR = 0.01


VERDICT_CODE = {"real": 0, "synthetic": 1, "manipulated": 2, "uncertain": 3}


def scores(det, images, batch: int = 64) -> np.ndarray:
    """(N, 3) p_synthetic, p_manipulated (a head the detector does not have scores 0) and the detector's own
    verdict (VERDICT_CODE), as `medfake detect` gives it."""
    from medfake.evaluation.run import predict_batched

    preds = predict_batched(det, images, batch=batch)
    return np.array([[p.p_synthetic, p.p_manipulated, VERDICT_CODE.get(p.verdict, 3)] for p in preds], dtype=float)


def verdicts(val: np.ndarray, val_real: np.ndarray, x: np.ndarray) -> np.ndarray:
    """0 real, 1 synthetic, 2 manipulated under the plain rule (thresholds from val reals)."""
    t = np.quantile(val[val_real, :2], 1 - TARGET_FPR, axis=0)
    return np.where(x[:, 0] > t[0], 1, np.where(x[:, 1] > t[1], 2, 0))


def k_of_n(v: np.ndarray, k: int) -> np.ndarray:
    """Verdict codes (members, N) → one per image: not real where at least k members say not real, then the
    verdict most of those members give (ties: synthetic, then manipulated, then uncertain)."""
    alarm = (v > 0).sum(0) >= k
    counts = np.stack([(v == c).sum(0) for c in (1, 2, 3)])  # synthetic, manipulated, uncertain
    return np.where(alarm, 1 + counts.argmax(0), 0)


def f1(pos_pred: np.ndarray, pos_true: np.ndarray) -> float:
    tp = float((pos_pred & pos_true).sum())
    return 2 * tp / max(1.0, float(pos_pred.sum() + pos_true.sum()))


def row(name: str, v_test: np.ndarray, kinds: np.ndarray, mods: np.ndarray, v_out: list[np.ndarray]) -> str:
    cells = []
    for k, kind in ((1, "synthetic"), (2, "manipulated")):
        pick = (kinds == "real") | (kinds == kind)
        cells.append(f"{f1(v_test[pick] > 0, kinds[pick] == kind):.3f} / "
                     f"{(v_test[kinds == kind] > 0).mean():.2f}")
    real = kinds == "real"
    worst = max((float((v_test[real & (mods == m)] > 0).mean()), m) for m in sorted(set(mods[real])))
    cells.append(f"{worst[1]} {worst[0]:.1%}")
    cells += [f"{(v > 0).mean():.1%}" for v in v_out]
    both = np.concatenate(v_out)
    cells.append(f"**{(both > 0).mean():.1%}** ({int((both > 0).sum())} of {len(both)})")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the built benchmark's manifest.csv (val and test splits)")
    ap.add_argument("--member", action="append", required=True,
                    help="MODELS_DIR:NAME of a detector card (repeat; at least two)")
    ap.add_argument("--more", type=Path, default=Path("data_cache/external/files"),
                    help="the fetched second outside set (benchmarks/external_fetch.py); skipped when absent")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if len(args.member) < 2:
        ap.error("give at least two --member")

    from medfake.detection.detector import load_detector, use_copy_move
    from medfake.evaluation.external import external_reals, external_reals_more
    from medfake.evaluation.run import load_eval_records, load_images

    val_recs, test_recs = load_eval_records(args.data, "val"), load_eval_records(args.data, "test")
    val_imgs, test_imgs = load_images(val_recs), load_images(test_recs)
    outside = [("first set", [im for _, _, im in external_reals(lambda m: None)])]
    if args.more.is_dir():
        outside.append(("second set", [im for _, _, im in external_reals_more(args.more, lambda m: None)]))
    val_real = np.array([r.get("kind") == "real" for r in val_recs])
    kinds = np.array([r.get("kind") for r in test_recs])
    mods = np.array([r.modality for r in test_recs])

    members = {}
    for spec in args.member:
        folder, _, name = spec.rpartition(":")
        det = use_copy_move(load_detector(name, folder or None), None)
        label = f"`{name}` ({det.version})"
        members[label] = [scores(det, val_imgs), scores(det, test_imgs)] + [scores(det, ims) for _, ims in outside]
        print(f"scored {label}", flush=True)

    combos = dict(members)
    agree = {}  # each member's own verdict (its card's full rule); not real only where both say not real
    for a, b in itertools.combinations(members, 2):
        for how, fn in (("min", np.minimum), ("mean", lambda x, y: (x + y) / 2)):
            combos[f"{how}({a.split(' ')[0]}, {b.split(' ')[0]})"] = [fn(x, y) for x, y in
                                                                      zip(members[a], members[b])]
        agree[f"both {a.split(' ')[0]} and {b.split(' ')[0]}"] = [
            np.where((x[:, 2] > 0) & (y[:, 2] > 0), x[:, 2], 0) for x, y in zip(members[a], members[b])]
    if len(members) > 2:  # all members: the mean of their scores; their own verdicts, k of n of them
        short = ", ".join(m.split(" ")[0] for m in members)
        combos[f"mean({short})"] = [np.mean(sc, axis=0) for sc in zip(*members.values())]
        for k in range(2, len(members) + 1):
            agree[f"{k} of the {len(members)}"] = [k_of_n(np.stack([x[:, 2] for x in sc]), k)
                                                   for sc in zip(*members.values())]
    own = {f"{name}, own verdicts": [s[:, 2] for s in sc] for name, sc in members.items()}
    head = ("| detector or combination | synthetic F1 / recall | manipulation F1 / recall | test reals not real, "
            "worst modality | " + " | ".join(f"outside reals, {n} ({len(ims)})" for n, ims in outside)
            + " | outside reals, all |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, (val, test, *out) in combos.items():
        lines.append(row(name, verdicts(val, val_real, test), kinds, mods,
                         [verdicts(val, val_real, o) for o in out]))
    lines += ["", "Each member's own verdicts (its card's thresholds, floors and uncertain band, as `medfake detect` "
              "gives them), and the two together: not real only where both say not real (with three or more members, "
              "where k of them do):", "", lines[0], lines[1]]
    for name, (_, test, *out) in {**own, **agree}.items():
        lines.append(row(name, test, kinds, mods, list(out)))
    body = (f"Val {len(val_recs)} images ({int(val_real.sum())} real), test {len(test_recs)}; plain rule (module "
            "docstring): thresholds at the 99th percentile of the val reals' combined scores, no floors, no "
            "uncertain band; each detector with its copy-move cue where its card has one.\n\n" + "\n".join(lines))
    if args.no_append:
        print(body)
    else:
        append("Two detectors together: an offline ensemble probe (benchmarks/ensemble_probe.py)", body)


if __name__ == "__main__":
    main()
