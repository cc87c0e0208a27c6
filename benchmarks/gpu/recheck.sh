#!/usr/bin/env bash
# A short second call of the device tool, after session.sh (docs/gpu.md), for what the first call found broken:
#   run(command="bash benchmarks/gpu/recheck.sh", carry=["gpu_carry"], timeout_s=300)
# On 2026-12-04 session.sh on the lent H200 found two GPU-only faults, fixed here since: every DDPM chain failed
# ("Expected a 'cuda' device type for generator": MONAI's schedulers draw step noise on the model's device), and
# the copy-move cue's score of a copy differed from the CPU's by 0.023 (float rounding picked other tied windows;
# not TF32). This reruns their CUDA tests, the synthesis speed that the first fault stopped, and the detector's
# inference speed with and without the copy-move cue (where the ≥ 5,000 img/s of issue #5 was lost; its shifts are
# indexed on a GPU since). ~4 minutes with the start: timeout_s=300 above leaves room. The tests need ~60 s on the
# H200 (a tiny DDPM's 1,000-step chain, 34 s, and its fixture, 19 s); in stop 43 a 70 s limit cut them off.
# Files back: recheck.log, synthesis_speed.md, infer_speed_copy-move.md, infer_speed_no-copy-move.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set by the device tool}
C=gpu_carry
exec > >(tee -a "$OUT/recheck.log") 2>&1
t0=$(date +%s)
stamp() { echo "=== $(( $(date +%s) - t0 )) s: $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$C"/wheels/*.whl || { echo "wheel install failed"; exit 3; }
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 MEDFAKE_DEVICE=cuda
stamp "CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/detection/test_copymove.py \
    tests/synthesis/test_synthesis.py -k gpu || echo "tests failed or timed out (exit $?)"
stamp "synthesis speed"
timeout 70 python3 benchmarks/synthesis_speed.py --device cuda --n-ddim 256 --n-ddpm 64 --n-dcgan 4096 --chunk 256 \
    --no-append | tee "$OUT/synthesis_speed.md" || echo "synthesis_speed failed or timed out"
for cue in copy-move no-copy-move; do
    stamp "inference speed, --$cue"
    timeout 45 python3 benchmarks/infer_speed.py --device cuda --batch-sizes 1024,4096 --amp bf16 --seconds 2 \
        --threads 8 --$cue --no-append | tee "$OUT/infer_speed_$cue.md" || echo "infer_speed failed"
done
stamp "done"
