"""Data-set builder throughput on medimg128: reals + classical manipulations (the parts that need no shipped
generator), and the shortcut audit. Appends a line to benchmarks/RESULTS.md.

    python benchmarks/build_speed.py [--real-per-modality 20] [--per-modality 10] [--workers 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, append  # noqa: E402

from medfake.evaluation import build_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real-per-modality", type=int, default=20)
    ap.add_argument("--per-modality", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--methods", default="copy-move,splice,retouch")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    manifest = SHARED
    if not manifest.exists():
        sys.exit(f"{manifest} not present")
    out = a.out or Path(tempfile.mkdtemp(prefix="medfake-build-bench-"))
    t0 = time.perf_counter()
    s = build_dataset(manifest, out, synthetic=[], manipulated=a.methods.split(","), per_modality=a.per_modality,
                      real_per_modality=a.real_per_modality, workers=a.workers, seed=0)
    dt_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    s2 = build_dataset(manifest, out, synthetic=[], manipulated=a.methods.split(","), per_modality=a.per_modality,
                       real_per_modality=a.real_per_modality, workers=a.workers, seed=0)
    resume_s = time.perf_counter() - t1
    body = (f"| images | methods | workers | build s (incl. audit) | img/s | audit AUC | resume s (skipped) |\n"
            f"|---|---|---|---|---|---|---|\n"
            f"| {s['n']} | {a.methods} | {a.workers} | {dt_s:.1f} | {s['n'] / dt_s:.1f} | {s['audit']['auc']:.3f} | "
            f"{resume_s:.1f} ({s2['resumed']}) |\n\nReals re-written canonically + classical manipulations, "
            f"{a.real_per_modality} reals and {a.per_modality} per method per modality; machine shared with other "
            f"jobs (two trainings running).")
    append("Data-set builder throughput (reals + classical manipulations)", body)
    if a.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
