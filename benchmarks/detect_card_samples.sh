#!/usr/bin/env bash
# Does the shipped detector catch what `medfake synth` draws? n samples per modality at the DDPM card's own
# per-modality settings (the default) and at its best DDIM settings (`--sampler ddim`: the demo's and the
# service's default), then `medfake detect` on each set; prints the verdicts per modality.
#   benchmarks/detect_card_samples.sh [OUT=bench_out/detect_card_samples] [N=16] [SEED=11]
# ~20 min on 2 CPU cores (ancestral DDPM-1000: 8-16 s per image there). Appends nothing: copy the table to RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_out/detect_card_samples}; N=${2:-16}; SEED=${3:-11}
for m in brain_mri chest_xray lung_ct kidney_ct breast_us knee_xray; do
  .venv/bin/medfake synth -m "$m" -n "$N" --seed "$SEED" --out "$OUT/card/$m"
  .venv/bin/medfake synth -m "$m" -n "$N" --seed "$SEED" --sampler ddim --out "$OUT/ddim/$m"
done
for k in card ddim; do .venv/bin/medfake detect "$OUT/$k" --out "$OUT/$k.csv"; done
.venv/bin/python - "$OUT" <<'PY'
import collections, csv, sys
out = sys.argv[1]
print("| modality | card settings: real / synthetic / manipulated / uncertain | best DDIM: the same |")
print("|---|---|---|")
tab = {}
for k in ("card", "ddim"):
    for r in csv.DictReader(open(f"{out}/{k}.csv")):
        tab.setdefault(r["path"].split("/")[-2], {}).setdefault(k, collections.Counter())[r["verdict"]] += 1
tot = {k: collections.Counter() for k in ("card", "ddim")}
for m, d in tab.items():
    cells = []
    for k in ("card", "ddim"):
        tot[k].update(d[k])
        cells.append(" / ".join(str(d[k][v]) for v in ("real", "synthetic", "manipulated", "uncertain")))
    print(f"| {m} | " + " | ".join(cells) + " |")
print("| all | " + " | ".join(" / ".join(str(tot[k][v]) for v in ("real", "synthetic", "manipulated", "uncertain"))
                           for k in ("card", "ddim")) + " |")
PY
