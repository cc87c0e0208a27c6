"""Fixtures for detection tests: a tiny generated data set (real = smooth random blobs; synthetic = blobs with a
high-frequency checkerboard; manipulated = real with a checkerboard patch inside a square mask) written as PNGs with
a manifest in the evaluation builder's format, and tiny detectors trained on it for a few steps."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medfake.data.modalities import MODALITY_NAMES

TINY = {
    "dual-srm": {"stem": 4, "widths": [8, 16, 16], "seg_channels": 4},
    "spatial-cnn": {"stem": 4, "widths": [8, 16, 16], "seg_channels": 4},
    "manip-supcon": {"stem": 4, "widths": [8, 16, 16], "seg_channels": 4},
    "resnet18-12": {"block_inplanes": [8, 8, 16, 16], "layers": [1, 1, 1, 1]},
    "effnet-attn": {"width_coefficient": 0.25, "depth_coefficient": 0.25},
}


def blobs(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.random((size, size)), sigma=8)
    a = (a - a.min()) / (a.max() - a.min() + 1e-8)
    return (0.15 + 0.7 * a).astype(np.float32)


def checker(size: int = 128, amp: float = 0.12) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (((x + y) % 2) * 2 - 1).astype(np.float32) * amp


def make_example(kind: str, rng: np.random.Generator, size: int = 128):
    a = blobs(rng, size)
    mask = None
    if kind == "synthetic":
        a = a + checker(size)
    elif kind == "manipulated":
        s = int(rng.integers(size // 4, size // 2))
        y0, x0 = (int(v) for v in rng.integers(0, size - s, 2))
        mask = np.zeros((size, size), bool)
        mask[y0:y0 + s, x0:x0 + s] = True
        a = np.where(mask, a + checker(size), a)
    return np.clip(a, 0, 1), mask


def write_dataset(root: Path, n_per_kind: dict[str, int], seed: int = 0) -> Path:
    """root/manifest.csv + PNGs; splits: 2/3 train, 1/3 val per kind."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, n in n_per_kind.items():
        for i in range(n):
            a, mask = make_example(kind, rng)
            mod = MODALITY_NAMES[i % len(MODALITY_NAMES)]
            rel = Path(kind) / f"{i:03d}.png"
            (root / kind).mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(root / rel)
            mrel = ""
            if mask is not None:
                mrel = str(Path("masks") / f"{i:03d}.png")
                (root / "masks").mkdir(exist_ok=True)
                PILImage.fromarray(mask.astype(np.uint8) * 255).save(root / mrel)
            rows.append({"path": str(rel), "modality": mod, "label": "", "split": "train" if i % 3 else "val",
                         "kind": kind, "generator": "checker" if kind != "real" else "", "mask": mrel})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("detds"), {"real": 24, "synthetic": 18, "manipulated": 18})


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, tiny_dataset) -> Path:
    """A models folder holding a tiny dual-srm trained a few steps, also published as detector-default."""
    import shutil

    from medfake.detection import train_detector

    out = tmp_path_factory.mktemp("models")
    train_detector("dual-srm", tiny_dataset, out, name="tiny-dual", config=TINY["dual-srm"], steps=40,
                   batch_size=12, lr=3e-3, device="cpu", seed=0, bank_size=30)
    for suffix in (".safetensors", ".bank.safetensors", ".anomaly.safetensors"):
        shutil.copy(out / f"tiny-dual{suffix}", out / f"detector-default{suffix}")
    import json

    card = json.loads((out / "tiny-dual.json").read_text())
    card.update(name="detector-default", weights="detector-default.safetensors")
    card["retrieval"]["file"] = "detector-default.bank.safetensors"
    card["anomaly"]["file"] = "detector-default.anomaly.safetensors"
    (out / "detector-default.json").write_text(json.dumps(card))
    return out
