"""benchmarks/gpu/prepare.sh and restore.sh on a clone of this repository: the weights the GPU session does not use
leave git's index (and stay on disk), a stratified train sample with its manifest fits the device tool's 64 MiB
with the rest of the tree, and restore.sh puts the index back exactly. Run on a throwaway clone, so this checkout's
index is never touched; the wheel download is skipped (SKIP_WHEELS=1: no registry needed)."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture()
def clone(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and this project's git checkout")
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(repo)], check=True)
    for script in ("prepare.sh", "restore.sh"):  # the scripts as they are in this working tree
        shutil.copy(ROOT / "benchmarks" / "gpu" / script, repo / "benchmarks" / "gpu" / script)
    _git(repo, "add", "benchmarks/gpu")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "scripts")
    return repo


def _tiny_medimg(root: Path) -> Path:
    """A manifest in medimg128's format: 2 classes × 30 train PNGs of noise (≈ 16 KB each), 5 test rows."""
    rng = np.random.default_rng(0)
    rows = []
    for (modality, label), n in {("brain_mri", "glioma"): 30, ("knee_xray", "0"): 30}.items():
        for split, count in (("train", n), ("test", 5)):
            for i in range(count):
                rel = f"{modality}/{split}/{label}_{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                PILImage.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8)).save(root / rel)
                rows.append({"path": rel, "modality": modality, "label": label, "split": split, "source": "test",
                             "sha256_pixels": "0"})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def test_prepare_fits_the_call_and_restore_undoes_it(clone, tmp_path):
    manifest = _tiny_medimg(tmp_path / "medimg")
    tracked_before = _git(clone, "ls-files", "models").split()
    heavy = ("models/resnet18-12", "models/effnet-attn", "models/ddpm-eps")
    def blk(n):  # prepare.sh counts space on disk, in 4 KiB blocks, as the tool does
        return -(-n // 4096) * 4096

    trimmed_mib = sum(blk((clone / f).stat().st_size) for f in _git(clone, "ls-files").split()
                      if not f.startswith(heavy)) / 2**20
    train_mib = sum(blk(p.stat().st_size) for p in manifest.parent.glob("*/train/*.png")) / 2**20
    # a budget that holds the trimmed tree, the script's 1 MiB slack and about half of the 60 train images
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SKIP_WHEELS": "1", "PY": sys.executable,
           "MEDIMG": str(manifest), "BUDGET_MIB": f"{trimmed_mib + 1 + train_mib / 2:.3f}"}
    r = subprocess.run(["bash", "benchmarks/gpu/prepare.sh"], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    tracked = _git(clone, "ls-files", "models").split()
    assert {"models/ddpm.safetensors", "models/dcgan.safetensors", "models/detector-default.safetensors"} <= set(tracked)
    assert not any(f.startswith(heavy) for f in tracked)
    assert (clone / "models" / "resnet18-12.safetensors").exists()  # out of the index, not off the disk
    status = _git(clone, "status", "--porcelain", "--untracked-files=all")
    assert "?? models/" not in status  # ignored, so the tool does not send them
    with (clone / "gpu_carry" / "medimg" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["split"] == "train" and (clone / "gpu_carry" / "medimg" / r["path"]).exists() for r in rows)
    per_class = Counter(r["modality"] for r in rows)
    assert 20 <= len(rows) <= 40, len(rows)  # about half: what the budget holds, not all
    assert per_class["brain_mri"] == per_class["knee_xray"]  # stratified: each class in proportion
    m = re.search(r"= ([\d.]+) MiB of the tool's 64", r.stdout)
    assert m and float(m.group(1)) <= 64, r.stdout
    r = subprocess.run(["bash", "benchmarks/gpu/restore.sh"], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _git(clone, "ls-files", "models").split() == tracked_before
    assert _git(clone, "status", "--porcelain") == ""  # gpu_carry/ is git-ignored
    assert "prepare.sh" not in (clone / ".git" / "info" / "exclude").read_text()
    # staged work under models/ would be unstaged by restore.sh: prepare.sh refuses to start
    (clone / "models" / "vae.json").write_text("{}")
    _git(clone, "add", "models/vae.json")
    r = subprocess.run(["bash", "benchmarks/gpu/prepare.sh"], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "staged" in r.stderr
    assert _git(clone, "ls-files", "models").split() == tracked_before
