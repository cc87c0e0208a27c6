#!/usr/bin/env bash
# The pipeline that produced the shipped detectors and the benchmark numbers in RESULTS.md on a 2-core CPU
# (no GPU was lent to this session). Step counts are cut for the CPU; the GPU variant is in the README.
# Needs ../shared/datasets/medimg128 and the shipped generators in models/.
set -euo pipefail
cd "$(dirname "$0")/.."
M=../shared/datasets/medimg128/manifest.csv
B=${BENCH_DIR:-data_cache/bench}
MED=.venv/bin/medfake

# 1. forensic data set: all 9,480 reals + 3 sampling generators + 5 manipulation methods (fewer slow diffusion edits
#    on a CPU)
time $MED dataset build --real $M --out $B --per-modality 100 --synthetic ddpm,ddim,dcgan \
    --count ddpm=40,ddim=40,repaint=6,repaint-ddim=25 --ddpm-steps 50 --ddim-steps 25 --repaint-steps 25 --workers 2

# 2. default detector (dual-stream spatial + SRM noise residual, with segmentation head): a base run, then a
#    fine-tune with the wider augmentation (the shipped base ran with the narrower augmentation of commit 5baaf27a)
time $MED train detector --config dual-srm --name detector-default --data $B/manifest.csv --out runs/detect-base \
    --steps ${DETECT_STEPS:-7000} --batch-size 32 --max-minutes ${DETECT_MINUTES:-58}
time $MED train detector --config dual-srm --name detector-default --data $B/manifest.csv --out runs/detect-ft1 \
    --steps 3000 --batch-size 32 --lr 3e-4 --init-from runs/detect-base/detector-default.json --max-minutes 22

# 2b. a third generator family: the KL autoencoder (shipped as models/vae, 25 min on 2 cores), whose reconstructions
#     of real images extend the data set (900 more images; the items built above stay as they are), then the
#     fine-tune that ships. The build reads the generators in models/: copy runs/vae/vae.* there to use this run.
time $MED train synth --model vae --data $M --out runs/vae --steps 1300 --batch-size 8 --ema 0.99 --lr 5e-4 \
    --ckpt-every 200 --max-minutes 25
time $MED dataset build --real $M --out $B --per-modality 100 --synthetic ddpm,ddim,dcgan,vae \
    --count ddpm=40,ddim=40,repaint=6,repaint-ddim=25,vae=150 --ddpm-steps 50 --ddim-steps 25 --repaint-steps 25 \
    --workers 2
time $MED train detector --config dual-srm --name detector-default --data $B/manifest.csv --out runs/detect \
    --steps 3000 --batch-size 32 --lr 3e-4 --init-from runs/detect-ft1/detector-default.json --max-minutes 22

# 2c. the shipped card: the same weights recalibrated (--steps 0), which also calibrates the copy-move cue
time $MED train detector --config dual-srm --name detector-default --data $B/manifest.csv --out runs/recal \
    --steps 0 --init-from runs/detect/detector-default.json

# 3. evaluation on the fixed test split (robustness + adversarial), HTML report: as medfake detect runs the card
#    (with its copy-move cue), and without the cue for comparison
time $MED eval --data $B/manifest.csv --out bench_out/eval --models-dir runs/recal --adversarial-max 64
time $MED eval --data $B/manifest.csv --out bench_out/eval_no_cm --models-dir runs/recal --adversarial-max 64 \
    --no-copy-move
time .venv/bin/python benchmarks/copy_move_cue.py --models-dir runs/recal
time .venv/bin/python benchmarks/external_reals.py --models-dir runs/recal

# 4. generalisation: leave-one-generator-out (short folds on a CPU), few-shot on the held-out DCGAN fold,
#    architecture comparison and the SupCon ablation (each appends to benchmarks/RESULTS.md)
time .venv/bin/python benchmarks/logo.py --data $B/manifest.csv --config dual-srm --steps 400 --out bench_out/logo
time .venv/bin/python benchmarks/detect_fewshot.py --data $B/manifest.csv --models-dir bench_out/logo/without_dcgan \
    --detector logo --holdout dcgan
time .venv/bin/python benchmarks/detect_compare.py --data $B/manifest.csv --minutes 3 --out bench_out/compare
