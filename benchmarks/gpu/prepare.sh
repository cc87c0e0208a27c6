#!/usr/bin/env bash
# Make this checkout fit one call of the device tool (a lent H100/H200, docs/gpu.md), here, before the call.
#
# The tool sends the working tree (tracked files and untracked files git does not ignore) plus the carried paths,
# 64 MiB at most. git tracks ~87 MB, 76 MB of it models/, so as committed NO call can go out. This script:
#   1. takes the shipped weights the GPU session does not use (the two baselines and ddpm-eps: ~64 MB) out
#      of git's index (git rm --cached; the files stay on disk) and ignores them in .git/info/exclude, so they do
#      not travel; benchmarks/gpu/restore.sh puts both back. Commit nothing in between;
#   2. downloads the Python 3.12 wheels the device's image lacks (MONAI; pydicom for the tests) into gpu_carry/wheels;
#   3. copies as much of the medimg128 train split as the rest of the 64 MiB holds into gpu_carry/medimg, a
#      seeded sample stratified by (modality, label), with its manifest (all 7,420 PNGs are 66 MiB: they never fit).
# gpu_carry/ is git-ignored. Then call the tool as the last lines printed say.
set -euo pipefail
cd "$(dirname "$0")/../.."
C=gpu_carry
BUDGET_MIB=${BUDGET_MIB:-63}  # under the tool's 64 MiB
M=${MEDIMG:-../shared/datasets/medimg128/manifest.csv}
PY=${PY:-.venv/bin/python}
HEAVY=(models/resnet18-12.json models/resnet18-12.safetensors models/resnet18-12.bank.safetensors
       models/resnet18-12.anomaly.safetensors models/effnet-attn.json models/effnet-attn.safetensors
       models/effnet-attn.bank.safetensors models/effnet-attn.anomaly.safetensors models/ddpm-eps.json
       models/ddpm-eps.safetensors)
MARK="# medfake benchmarks/gpu/prepare.sh (undo: benchmarks/gpu/restore.sh)"

[ -f "$M" ] || { echo "no medimg128 manifest at $M (set MEDIMG)" >&2; exit 2; }
if ! grep -qxF "$MARK" .git/info/exclude 2>/dev/null && ! git diff --cached --quiet -- models/; then
    # restore.sh resets models/ in the index to HEAD: staged work there would be unstaged
    echo "changes under models/ are staged: commit or unstage them first (restore.sh resets models/ to HEAD)" >&2
    exit 2
fi
if ! grep -qxF "$MARK" .git/info/exclude 2>/dev/null; then
    mkdir -p .git/info
    { echo "$MARK"; printf '/%s\n' "${HEAVY[@]}"; echo "$MARK end"; } >> .git/info/exclude
fi
for f in "${HEAVY[@]}"; do
    if git ls-files --error-unmatch "$f" >/dev/null 2>&1; then git rm -q --cached "$f"; fi
done

rm -rf "$C/wheels" && mkdir -p "$C/wheels"
if [ -z "${SKIP_WHEELS:-}" ]; then  # SKIP_WHEELS=1: the test of this script, which may not reach a registry
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$C/wheels" monai==1.6.1 pydicom==3.0.2 typer==0.29.2 pydantic==2.14.3 pydantic-core==2.50.4 \
        annotated-types==0.8.0 typing-inspection==0.4.5 2>&1 | grep -v '^WARNING' || true
    ls "$C"/wheels/monai-*.whl "$C"/wheels/pydicom-*.whl >/dev/null
fi

rm -rf "$C/medimg"
"$PY" - "$M" "$C" "$BUDGET_MIB" <<'PYEOF'
import csv, random, shutil, subprocess, sys
from collections import defaultdict
from pathlib import Path

manifest, carry, budget_mib = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
tree = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True,
                      check=True).stdout.decode().split("\0")
def blk(n: int) -> int:  # the tool counts space on disk (4 KiB blocks): apparent sizes let a 62 MiB tree be refused
    return -(-n // 4096) * 4096


tree_bytes = sum(blk(Path(f).stat().st_size) for f in tree if f and Path(f).is_file())
wheels = sum(blk(p.stat().st_size) for p in (carry / "wheels").glob("*.whl"))
room = budget_mib * 2**20 - tree_bytes - wheels - 2**20  # 1 MiB for the manifest and slack
rows = [r for r in csv.DictReader(manifest.open()) if r["split"] == "train"]
size = {r["path"]: blk((manifest.parent / r["path"]).stat().st_size) for r in rows}
frac = min(1.0, room / sum(size.values()))
by_class = defaultdict(list)
for r in rows:
    by_class[r["modality"], r["label"]].append(r)
rng, keep = random.Random(0), []
for key in sorted(by_class):
    group = sorted(by_class[key], key=lambda r: r["path"])
    rng.shuffle(group)
    keep += group[:max(1, int(frac * len(group)))]
out = carry / "medimg"
for r in keep:
    dst = out / r["path"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest.parent / r["path"], dst)
with (out / "manifest.csv").open("w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(keep)
used = sum(size[r["path"]] for r in keep)
print(f"tree {tree_bytes / 2**20:.1f} MiB + wheels {wheels / 2**20:.1f} MiB + train images {used / 2**20:.1f} MiB "
      f"({len(keep)} of {len(rows)}, {len(keep) / len(rows):.0%}, every (modality, label) kept in proportion) = "
      f"{(tree_bytes + wheels + used) / 2**20:.1f} MiB of the tool's 64")
PYEOF
cat <<'TXT'
Ready. One call of the device tool (~9.5 minutes, inside the limit of one call; the DDPM trains for what is left):
  run(command="bash benchmarks/gpu/session.sh", carry=["gpu_carry"], timeout_s=600)
Its files come back: session.log, infer_speed.md, manipulation_speed.md, synthesis_speed.md, ddpm.json,
ddpm.safetensors, ddpm_grid.png. Then, here:
  benchmarks/gpu/restore.sh      # models back in git's index, the exclude lines removed
TXT
