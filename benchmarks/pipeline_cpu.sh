#!/usr/bin/env bash
# The pipeline that produced the shipped detectors and the benchmark numbers in RESULTS.md on a 2-core CPU
# (no GPU was lent to this session). Step counts are cut for the CPU; the GPU variant is in the README.
# Needs ../shared/datasets/medimg128 and the shipped generators in models/.
set -euo pipefail
cd "$(dirname "$0")/.."
M=../shared/datasets/medimg128/manifest.csv
B=${BENCH_DIR:-data_cache/bench}
MED=.venv/bin/medfake

# 1. forensic data set: all 9,480 reals + 3 generators + 5 manipulation methods (fewer slow diffusion edits on a CPU)
time $MED dataset build --real $M --out $B --per-modality 100 \
    --count ddpm=40,ddim=40,repaint=6,repaint-ddim=25 --ddpm-steps 50 --ddim-steps 25 --repaint-steps 25 --workers 2

# 2. default detector (dual-stream spatial + SRM noise residual, with segmentation head)
time $MED train detector --config dual-srm --name detector-default --data $B/manifest.csv --out runs/detect \
    --steps ${DETECT_STEPS:-3000} --batch-size 32 --max-minutes ${DETECT_MINUTES:-12}

# 3. evaluation on the fixed test split (robustness + adversarial), HTML report
time $MED eval --data $B/manifest.csv --out bench_out/eval --models-dir runs/detect --adversarial-max 128
