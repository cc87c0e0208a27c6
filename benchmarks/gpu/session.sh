#!/usr/bin/env bash
# One call of the device tool, on the lent GPU machine (after benchmarks/gpu/prepare.sh here; docs/gpu.md):
#   run(command="bash benchmarks/gpu/session.sh", carry=["gpu_carry"], timeout_s=600)
# Steps, each bounded so that one failure leaves the others' results (all logged to $OUT/session.log):
#   1. the CUDA tests (the copy-move cue on the GPU against the CPU; `medfake detect --device`; the stochastic
#      samplers on CUDA);
#   2. detector inference speed on the GPU (issue #5's >= 5,000 img/s target), fp32 and bf16 autocast; seconds per
#      RePaint (paper setting, 250 steps, jump 10x10) and RePaint-DDIM edit (issue #3); samples per second of
#      DDIM-50, DDPM-1000 and the DCGAN (issue #2);
#   3. the DDPM continued from the shipped weights at batch 64 (bf16) on the carried train images, for MINUTES
#      minutes (default: what is left of the call, ~4);
#   4. a DDIM-50 sample grid of the new weights (6 modalities x 8).
# Files back in $OUT: session.log, infer_speed.md, manipulation_speed.md, synthesis_speed.md, ddpm.json,
# ddpm.safetensors, ddpm_grid.png.
# Dry run on a CPU (no GPU steps' numbers, checks the plumbing): PY=.venv/bin/python DEVICE=cpu MINUTES=0.2
#   OUT=/tmp/gpu_out bash benchmarks/gpu/session.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set by the device tool}
MINUTES=${MINUTES:-auto}  # DDPM training minutes; auto: what the call's CALL_S seconds leave after the other steps
CALL_S=${CALL_S:-570}  # one call may run 600 s
DEVICE=${DEVICE:-cuda}
LR=${LR:-2e-4}
PY=${PY:-python3}
C=gpu_carry
exec > >(tee -a "$OUT/session.log") 2>&1
t0=$(date +%s)
stamp() { echo "=== $(( $(date +%s) - t0 )) s: $*"; }

stamp "set-up"
if [ "$PY" = python3 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$C"/wheels/*.whl || { echo "wheel install failed"; exit 3; }
    export PYTHONPATH="$PWD/src:/tmp/site"
else
    export PYTHONPATH="$PWD/src"
fi
export PYTHONUNBUFFERED=1 MEDFAKE_DEVICE="$DEVICE"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
                                   'monai', monai.__version__)"

stamp "1. CUDA tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/detection/test_copymove.py tests/detection/test_cli.py \
    tests/synthesis/test_synthesis.py -k "gpu or device" || echo "tests failed or timed out (exit $?)"

stamp "2. inference speed"
for amp in off bf16; do
    timeout 150 "$PY" benchmarks/infer_speed.py --device "$DEVICE" --batch-sizes 256,1024,4096 --amp $amp \
        --seconds 3 --threads 8 --no-append | tee -a "$OUT/infer_speed.md" || echo "infer_speed ($amp) failed"
done

stamp "2b. manipulation speed (issue #3: seconds per RePaint / RePaint-DDIM edit on a GPU)"
timeout 150 "$PY" benchmarks/manipulation_speed.py --paper --repeats 1 --no-append \
    | tee -a "$OUT/manipulation_speed.md" || echo "manipulation_speed failed or timed out"

stamp "2c. synthesis speed (issue #2: DDIM-50, DDPM-1000, DCGAN samples/s on a GPU)"
timeout 150 "$PY" benchmarks/synthesis_speed.py --device "$DEVICE" --n-ddim 256 --n-ddpm 64 --n-dcgan 4096 \
    --chunk 256 --no-append | tee -a "$OUT/synthesis_speed.md" || echo "synthesis_speed failed or timed out"

if [ "$MINUTES" = auto ]; then  # what is left of one call's CALL_S seconds, less ~90 s for loading, grid and copies
    MINUTES=$("$PY" -c "print(max(0.5, round(($CALL_S - $(( $(date +%s) - t0 )) - 90) / 60, 1)))")
fi
stamp "3. DDPM training, $MINUTES min"
total=$("$PY" -c "import json, sys; c = json.load(open('models/ddpm.json')); print(c['training_minutes'] + $MINUTES)")
steps=$("$PY" -c "import json; print(json.load(open('models/ddpm.json'))['steps'] + 1000000)")
timeout $(( ${MINUTES%.*} * 60 + 150 )) "$PY" -m medfake train synth --model ddpm --data "$C/medimg/manifest.csv" \
    --out /tmp/runs/ddpm --init-from models/ddpm.json --device "$DEVICE" --batch-size 64 --lr "$LR" \
    --steps "$steps" --max-minutes "$total" --ckpt-every 2000 --no-resume || echo "training failed (exit $?)"
cp /tmp/runs/ddpm/ddpm.json /tmp/runs/ddpm/ddpm.safetensors "$OUT"/ 2>/dev/null || echo "no trained weights"

stamp "4. sample grid"
[ -f /tmp/runs/ddpm/ddpm.json ] && timeout 120 "$PY" - <<'PYEOF' || echo "grid failed"
import os
import numpy as np
from PIL import Image
from medfake.data import MODALITY_NAMES
from medfake.synthesis import load_generator

g = load_generator("ddpm", "/tmp/runs/ddpm", device=os.environ["MEDFAKE_DEVICE"])
rows = [np.concatenate([im.array for im in g.sample(m, n=8, sampler="ddim", steps=50, seed=0)], axis=1)
        for m in MODALITY_NAMES]
Image.fromarray(np.round(np.concatenate(rows) * 255).astype(np.uint8)).save(os.environ["OUT"] + "/ddpm_grid.png")
print("grid written: rows", ", ".join(MODALITY_NAMES))
PYEOF
stamp "done"
ls -la "$OUT"
