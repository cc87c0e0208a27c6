"""Shared fixtures: the real data set (skipped when absent) and tiny real generators trained in the test."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "medimg128"
TINY_DDPM = {"channels": [16, 16, 32], "attention_levels": [False, False, True], "norm_num_groups": 8,
             "num_head_channels": 8}
TINY_DCGAN = {"ngf": 8, "ndf": 8}
TINY_VAE = {"channels": [8, 8, 16], "norm_num_groups": 8}


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark():
    """name → the module of benchmarks/<name>.py (the scripts import their sibling _common, so the folder is on
    sys.path while each one loads)."""
    import importlib.util
    import sys

    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            sys.path.remove(str(BENCHMARKS))
        return mod

    return load


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed term by term (independent of the scipy call under test)."""
    return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))


def expected_group_verdict(verdicts: list[str], fpr: float = 0.01, uncertain_fpr: float = 0.015) -> str:
    """detection.summary's group rule written out again for the tests: a group is called fake only when more of
    its images are called fake than chance explains at the per-image rate `fpr`, uncertain when it holds any image
    called fake or more alarms than chance explains at `uncertain_fpr`, or when some of its files are unreadable."""
    n = sum(v != "error" for v in verdicts)
    if n == 0:
        return "error"
    k = sum(v in ("manipulated", "synthetic") for v in verdicts)
    j = k + verdicts.count("uncertain")
    tol = 1 + 1e-9
    if k and binomial_tail(k, n, fpr) <= fpr * tol:
        return "manipulated" if "manipulated" in verdicts else "synthetic"
    if k or (j and binomial_tail(j, n, uncertain_fpr) <= uncertain_fpr * tol) or "error" in verdicts:
        return "uncertain"
    return "real"


@pytest.fixture(scope="session")
def group_rule():
    """(binomial_tail, expected_group_verdict) for the tests of per-series verdicts (CLI, demo, service, web)."""
    return binomial_tail, expected_group_verdict


@pytest.fixture(scope="session")
def tiny_configs() -> dict:
    """Architecture overrides that make generators tiny: {"ddpm": {...}, "dcgan": {...}, "vae": {...}}."""
    return {"ddpm": TINY_DDPM, "dcgan": TINY_DCGAN, "vae": TINY_VAE}


@pytest.fixture(scope="session")
def shared_manifest() -> Path:
    m = SHARED / "manifest.csv"
    if not m.exists():
        pytest.skip("../shared/datasets/medimg128 not present (a fresh clone has no ../shared)")
    return m


def blob_image(rng: np.random.Generator, size: int = 128, label_shift: float = 0.0) -> np.ndarray:
    """A smooth synthetic 'scan': a bright disc with texture, values in [0, 1]."""
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = 0.5 + rng.normal(0, 0.05, 2)
    r = 0.3 + rng.normal(0, 0.03)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)
    tex = rng.normal(0, 0.05, (size, size)).astype(np.float32)
    return np.clip(0.15 + 0.6 * disc + label_shift * 0.2 * xx + tex, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """root/<modality>/<label>/*.png with 3 images per class for two modalities."""
    from medfake.io import write_png

    root = tmp_path_factory.mktemp("tinyreal")
    rng = np.random.default_rng(0)
    for mod, labels in {"brain_mri": ["glioma", "notumor"], "chest_xray": ["NORMAL", "PNEUMONIA"]}.items():
        for j, lab in enumerate(labels):
            for i in range(3):
                write_png(blob_image(rng, label_shift=j), root / mod / lab / f"{lab}_{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_folder) -> Path:
    """A models dir holding tiny real 'ddpm', 'dcgan' and 'vae' trained a few steps (card + safetensors)."""
    from medfake.data import read_folder
    from medfake.synthesis.train import train_generator

    out = tmp_path_factory.mktemp("tinymodels")
    recs = read_folder(tiny_folder)
    train_generator("ddpm", recs, out, config=TINY_DDPM, steps=3, batch_size=4, ckpt_every=100, log_every=1)
    train_generator("dcgan", recs, out, config=TINY_DCGAN, steps=3, batch_size=4, ckpt_every=100, log_every=1)
    train_generator("vae", recs, out, config=TINY_VAE, steps=3, batch_size=4, ckpt_every=100, log_every=1)
    return out


@pytest.fixture(scope="session")
def siemens_mosaic(tmp_path_factory) -> Path:
    """nibabel's Siemens diffusion mosaic (48 slices of 128 px on a 7×7 grid; its pixel data are zero-filled), with
    tile k (row-major on the grid) set to k + 1 so that each slice is recognisable; its window removed; deflated."""
    import gzip

    import nibabel
    import pydicom

    src = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    if not src.is_file():
        pytest.skip("nibabel's Siemens mosaic test file is not installed")
    ds = pydicom.dcmread(gzip.open(src))
    for kw in ("WindowCenter", "WindowWidth"):
        if kw in ds:
            delattr(ds, kw)
    arr = np.zeros((896, 896), np.uint16)
    for k in range(48):
        arr[(k // 7) * 128:(k // 7 + 1) * 128, (k % 7) * 128:(k % 7 + 1) * 128] = k + 1
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian  # 1.6 MB → a few kB (uploads)
    p = tmp_path_factory.mktemp("mosaic") / "mosaic.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p
