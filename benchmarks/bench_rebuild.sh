#!/usr/bin/env bash
# Rebuild data_cache/bench, the evaluation benchmark that RESULTS.md measures the detectors on (14,952 rows, 1,601
# of them test), from the weights in git. data_cache/ is not in git and a fresh
# checkout has none; this script makes each part with the generator and settings it was first made with:
#   1. the main build: every medimg128 real, the ε-prediction DDPM's `ddpm`/`ddim` fakes and RePaint edits (card
#      `ddpm-eps`, given to the builder as `ddpm`), the step-2,104 DCGAN's `dcgan` fakes (git: 7aa8485^), the
#      `vae` reconstructions and the classical edits; RePaint masks sharp and repaint-ddim at η = 0, as in 2026-11;
#   2. the shipped v-prediction `ddpm`'s rows, merged as ddpm-v/ddim-v/repaint-v/repaint-ddim-v (RePaint with the
#      defaults of `medfake manipulate`: repaint-ddim at η = 1, masks feathered by 2 px; since 2026-12-02 10:30);
#   3. the shipped `dcgan`'s rows, merged as dcgan-2;
#   4. the shipped `ddpm`'s DDIM fakes at its card's per-modality sampler settings, merged as ddim-card (2026-12-02).
# The script with step 2's masks sharp (`--feather 0`) reproduced the benchmark of 2026-12-02 08:08 exactly: the
# same 14,712 rows and the shipped detector's every figure in RESULTS.md (2026-12-02 10:20, bench_out/eval_ft6_rb).
# 10–27 min on 2 CPU cores (about 13 min on 2026-12-02 13:00; minutes on a GPU). Needs
# ../shared/datasets/medimg128. Resumable: rerun after an interruption (each build resumes; a finished merge is
# skipped). The builder draws the DDPM's fakes of steps 1–2 at the plain settings (η 0, guidance 1) whatever the
# card chose, so they stay the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MEDIMG:-../shared/datasets/medimg128/manifest.csv}
B=${BENCH_DIR:-data_cache/bench}
W=${B}_parts
MED=.venv/bin/medfake
PY=.venv/bin/python
mkdir -p "$W/gen_2026_11"

# generators of the main build
G=$W/gen_2026_11
git show 7aa8485^:models/dcgan.json > "$G/dcgan.json"
git show 7aa8485^:models/dcgan.safetensors > "$G/dcgan.safetensors"
cp models/vae.json models/vae.safetensors "$G/"
cp models/ddpm-eps.safetensors "$G/ddpm.safetensors"
$PY - "$G" <<'EOF'
import json, sys
card = json.load(open("models/ddpm-eps.json"))
card.update(name="ddpm", weights="ddpm.safetensors")
json.dump(card, open(f"{sys.argv[1]}/ddpm.json", "w"), indent=2)
EOF

# 1. the main build
time $MED dataset build --real "$M" --out "$B" --per-modality 100 --synthetic ddpm,ddim,dcgan,vae \
    --count ddpm=40,ddim=40,repaint=6,repaint-ddim=25,vae=150 --ddpm-steps 50 --ddim-steps 25 --repaint-steps 25 \
    --feather 0 --repaint-eta 0 --workers 2 --models-dir "$G"

merged() { [ -f "$B/merges.json" ] && grep -q "\"$1\"" "$B/merges.json"; }

# 2. the shipped v-prediction DDPM's rows
time $MED dataset build --real "$M" --out "$W/v" --synthetic ddpm,ddim --manipulated repaint,repaint-ddim \
    --count ddpm=40,ddim=40,repaint=6,repaint-ddim=25 --ddpm-steps 50 --ddim-steps 25 --repaint-steps 25 \
    --real-per-modality 30 --workers 2 --models-dir models
merged ddpm-v || $MED dataset merge "$W/v" --into "$B" \
    --rename ddpm=ddpm-v,ddim=ddim-v,repaint=repaint-v,repaint-ddim=repaint-ddim-v

# 3. the shipped DCGAN's rows
time $MED dataset build --real "$M" --out "$W/dcg" --synthetic dcgan --manipulated '' --per-modality 100 \
    --real-per-modality 30 --workers 2 --models-dir models
merged dcgan-2 || $MED dataset merge "$W/dcg" --into "$B" --rename dcgan=dcgan-2

# 4. the shipped DDPM's DDIM fakes with its card's sampler settings per modality (`medfake synth`'s default)
time $MED dataset build --real "$M" --out "$W/card" --synthetic ddim --manipulated '' --count ddim=40 \
    --real-per-modality 30 --sampling card --workers 2 --models-dir models
merged ddim-card || $MED dataset merge "$W/card" --into "$B" --rename ddim=ddim-card

$PY - "$B" <<'EOF'
import csv, sys
from collections import Counter
rows = list(csv.DictReader(open(f"{sys.argv[1]}/manifest.csv")))
print(f"{len(rows)} rows, {sum(r['split'] == 'test' for r in rows)} test "
      "(2026-12-02: 14,952 and 1,601; 14,712 and 1,576 before ddim-card)")
print(dict(sorted(Counter(r["generator"] for r in rows).items())))
EOF
