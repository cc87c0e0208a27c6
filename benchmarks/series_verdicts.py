"""Per-series verdicts (`medfake detect --summary`): how often a *real* series is called fake, and how often an
attacked one is caught, under the old rule (the most serious of its images' verdicts) and the shipped one (a fake
verdict only when the series holds more images called fake than chance explains at the detector's per-image
false-alarm rate, uncertain when it holds any or more uncertain ones than chance explains; `detection.summary`).

medimg128 has single slices, not series, so series are drawn: n test images of one modality (with replacement),
real ones from the benchmark's test reals; an attacked series has m of them replaced by the same modality's test
manipulations (`kind` manipulated) or is made wholly of one generator's test fakes. Drawn images are independent, so
the real-series rate is the best case; the real multi-frame files from outside medimg128 (`evaluation.external`:
an MR acquisition, ultrasound cine loops) are real series whose frames are not independent, and are listed too.

    python benchmarks/series_verdicts.py [--data data_cache/bench/manifest.csv] [--trials 2000] [--seed 0]
        [--detector default] [--no-append]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402

SIZES = (1, 3, 10, 50, 120, 300)
FAKE = ("manipulated", "synthetic")


def _old(verdicts) -> str:
    return next((v for v in (*FAKE, "uncertain") if v in verdicts), "real")


def _new(verdicts, rates: tuple[float, float]) -> str:
    from medfake.detection.summary import group_verdict

    counts = Counter(verdicts)
    return group_verdict(counts, len(verdicts), 0, *rates)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data_cache/bench/manifest.csv")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    from medfake.detection import detect_paths
    from medfake.detection.detector import load_detector, use_copy_move
    from medfake.detection.summary import detector_rates
    from medfake.evaluation.external import external_reals
    from medfake.evaluation.run import predict_batched

    manifest = Path(args.data)
    if not manifest.exists():
        ap.error(f"{manifest} not found (benchmarks/bench_rebuild.sh makes it)")
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    det = use_copy_move(load_detector(args.detector, args.models_dir), None)  # as medfake detect runs it
    rates = detector_rates(args.detector, args.models_dir)
    fpr = rates[0]
    out = detect_paths([manifest.parent / r["path"] for r in rows], detector=det, progress=True)
    pool: dict[tuple[str, str], list[str]] = defaultdict(list)  # (modality, kind or generator) -> verdicts
    for r, o in zip(rows, out):
        pool[(r["modality"], "real" if r["kind"] == "real" else r["kind"])].append(o["verdict"])
        if r["kind"] == "synthetic":
            pool[(r["modality"], "gen:" + r["generator"])].append(o["verdict"])
    modalities = sorted({m for m, k in pool if k == "real" and pool[(m, "manipulated")]})
    rng = np.random.default_rng(args.seed)

    def draw(m: str, kind: str, n: int) -> list[str]:
        vs = pool[(m, kind)]
        return [vs[i] for i in rng.integers(0, len(vs), n)]

    def share(make) -> tuple[float, float, float, float]:
        """(old fake, old not real, new fake, new not real) over the trials, modalities in turn."""
        old = new = old_nr = new_nr = 0
        for t in range(args.trials):
            vs = make(modalities[t % len(modalities)])
            o, w = _old(vs), _new(vs, rates)
            old, old_nr = old + (o in FAKE), old_nr + (o != "real")
            new, new_nr = new + (w in FAKE), new_nr + (w != "real")
        return old / args.trials, old_nr / args.trials, new / args.trials, new_nr / args.trials

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    lines = ["| series | size n | called fake: old rule | new rule | not called real: old | new |",
             "|---|---|---|---|---|---|"]
    for n in SIZES:
        o, onr, w, wnr = share(lambda m: draw(m, "real", n))
        lines.append(f"| real | {n} | {pct(o)} | {pct(w)} | {pct(onr)} | {pct(wnr)} |")
    for n in SIZES[1:]:
        for m_edit in sorted({1, max(1, n // 10), max(1, n // 3)}):
            def attacked(m, n=n, k=m_edit):
                return draw(m, "real", n - k) + draw(m, "manipulated", k)

            o, onr, w, wnr = share(attacked)
            lines.append(f"| {m_edit} manipulated + {n - m_edit} real | {n} | {pct(o)} | {pct(w)} | {pct(onr)} | "
                         f"{pct(wnr)} |")
    gens = sorted({k[4:] for _, k in pool if k.startswith("gen:")})
    for g in gens:
        have = [m for m in modalities if pool.get((m, "gen:" + g))]
        if not have:
            continue
        for n in (3, 50):
            def synthetic(m, n=n, g=g):
                return draw(have[modalities.index(m) % len(have)], "gen:" + g, n)

            o, onr, w, wnr = share(synthetic)
            lines.append(f"| all `{g}` fakes | {n} | {pct(o)} | {pct(w)} | {pct(onr)} | {pct(wnr)} |")

    items = external_reals(lambda *_: None)
    frames = defaultdict(list)
    for label, _, im in items:
        frames[label.split("#")[0]].append(im)
    multi = {f: ims for f, ims in frames.items() if len(ims) > 1}
    ext = ["| real multi-frame file (outside medimg128) | frames | verdicts | old rule | new rule (p_chance) |",
           "|---|---|---|---|---|"]
    from medfake.detection.summary import chance

    for f, ims in sorted(multi.items()):
        vs = [p.verdict for p in predict_batched(det, ims)]
        k = sum(v in FAKE for v in vs)
        ext.append(f"| {f} | {len(vs)} | {dict(Counter(vs))} | {_old(vs)} | {_new(vs, rates)}"
                   + (f" ({chance(k, len(vs), fpr):.2g})" if k else "") + " |")
    body = (f"Detector `{args.detector}` (version {det.version}), per-image false-alarm rates {fpr:g} (fake) and "
            f"{rates[1]:g} (not real), its card's targets; {len(rows)} test images of `{manifest}`, "
            f"{args.trials} drawn series per row (modalities in turn: {', '.join(modalities)}).\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(ext))
    print(body)
    if not args.no_append:
        append("Per-series verdicts: the most serious image against alarms weighed by chance", body)


if __name__ == "__main__":
    main()
