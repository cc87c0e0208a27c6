#!/usr/bin/env bash
# Undo benchmarks/gpu/prepare.sh: the weights it took out of git's index go back (from HEAD; the files never left
# the disk) and its lines leave .git/info/exclude. gpu_carry/ stays (git-ignored; delete it when done).
set -euo pipefail
cd "$(dirname "$0")/../.."
MARK="# medfake benchmarks/gpu/prepare.sh (undo: benchmarks/gpu/restore.sh)"
if [ -f .git/info/exclude ]; then
    awk -v m="$MARK" '$0 == m {skip = 1; next} $0 == m " end" {skip = 0; next} !skip' .git/info/exclude \
        > .git/info/exclude.tmp && mv .git/info/exclude.tmp .git/info/exclude
fi
git reset -q HEAD -- models/
git status --short -- models/
echo "restored: git tracks $(git ls-files models | wc -l) files under models/"
