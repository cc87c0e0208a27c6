"""More *training* fakes of the shipped v-prediction DDPM (stop 48): the fakes the default missed most (test: 10 of
the 75 `ddim-card`, `ddim-v` and `ddpm-v` images caught in stop 46) had 188 training images per set. This builds
960 more of each with a seed the benchmark does not use (48) and appends them, as training rows under the
benchmark's generator names, to a training manifest:

    python benchmarks/train_fakes_build.py [--base data_cache/bench_extra.csv] [--out data_cache/bench_v48x.csv]

1. `medfake dataset build ... --synthetic ddpm,ddim --count ddpm=160,ddim=160 --ddpm-steps 50 --ddim-steps 25
   --seed 48` (the benchmark's `ddpm-v`/`ddim-v` settings; 4.5 min on 2 CPU cores) into data_cache/vx48;
2. the same for `ddim --sampling card` (the benchmark's `ddim-card`; 8 min) into data_cache/vc48;
3. --out: --base's rows, then every synthetic row of the two builds with split `train` (class-conditional samples
   of their own seeds: none is derived from a val or test image) and generator renamed ddpm → ddpm-v, ddim → ddim-v
   (vx48) and ddim → ddim-card (vc48); paths made relative to --out's folder.

The builds resume when rerun. --base is the benchmark plus the other sources' reals
(`train_reals_fetch.py --merge data_cache/bench/manifest.csv --merged data_cache/bench_extra.csv`). Needs
../shared/datasets/medimg128 (the builds' real rows are one per modality and are not used) and the shipped `ddpm`.
git-ignored output, never committed.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

BUILDS = {  # folder: (extra `medfake dataset build` options, generator renames)
    "vx48": (["--synthetic", "ddpm,ddim", "--count", "ddpm=160,ddim=160", "--ddpm-steps", "50", "--ddim-steps", "25"],
             {"ddpm": "ddpm-v", "ddim": "ddim-v"}),
    "vc48": (["--synthetic", "ddim", "--count", "ddim=160", "--sampling", "card"], {"ddim": "ddim-card"}),
}
SEED = 48


def read_rows(manifest: Path) -> tuple[list[str], list[dict]]:
    with open(manifest, newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames), list(r)


def write_rows(manifest: Path, cols: list[str], rows: list[dict]) -> None:
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)


def train_rows(manifest: Path, renames: dict[str, str], out: Path, cols: list[str],
               kind: str = "synthetic") -> list[dict]:
    """The `kind` rows of a build's manifest as training rows of `out` (image and mask paths relative to its folder,
    generators renamed). A synthetic row is a class-conditional sample of its own seed; a manipulated row must come
    from a training real already (its split is the source's), else this stops: no val or test image may leak."""
    rows = []
    with open(manifest, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["kind"] != kind:
                continue
            if kind != "synthetic" and r["split"] != "train":
                raise SystemExit(f"{manifest}: a {kind} row of split {r['split']!r}; its source must be a training "
                                 "real")
            r = {c: r.get(c, "") for c in cols}
            for c in ("path", "mask"):
                if r[c]:
                    r[c] = os.path.relpath(manifest.parent / r[c], out.parent)
            r["generator"] = renames.get(r["generator"], r["generator"])
            r["split"] = "train"
            rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=Path("data_cache/bench_extra.csv"))
    ap.add_argument("--out", type=Path, default=Path("data_cache/bench_v48x.csv"))
    ap.add_argument("--real", default="../shared/datasets/medimg128/manifest.csv")
    ap.add_argument("--root", type=Path, default=Path("data_cache"), help="where the two builds go")
    ap.add_argument("--models-dir", default="models")
    args = ap.parse_args()
    medfake = str(Path(sys.executable).parent / "medfake")
    cols, rows = read_rows(args.base)
    n = len(rows)
    for folder, (opts, renames) in BUILDS.items():
        subprocess.run([medfake, "dataset", "build", "--real", args.real, "--out", str(args.root / folder),
                        "--manipulated", "", "--real-per-modality", "1", "--seed", str(SEED), "--workers", "2",
                        "--models-dir", args.models_dir, *opts], check=True)
        rows += train_rows(args.root / folder / "manifest.csv", renames, args.out, cols)
    write_rows(args.out, cols, rows)
    print(f"{args.out}: {n} rows of {args.base} and {len(rows) - n} training fakes "
          f"{dict(sorted(Counter(r['generator'] for r in rows[n:]).items()))}")


if __name__ == "__main__":
    main()
