"""Fixtures for the manipulation tests: small real input files (8/16-bit PNG, pydicom's CT/MR test DICOMs) and a
tiny real class-conditional DDPM trained 2 steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# cheap architecture: no attention, 8 groups
MANIP_DDPM = {"channels": [16, 16, 32], "attention_levels": [False, False, False], "norm_num_groups": 8,
              "num_head_channels": 8}


def smooth_scan(shape, seed=0) -> np.ndarray:
    """A smooth 'scan' in [0, 1] with structure (disc + gradient + mild texture)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    disc = (((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2 < 1).astype(np.float64)
    from scipy import ndimage

    tex = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), 2) * 0.2
    return np.clip(0.1 + 0.5 * disc + 0.2 * xx / w + tex, 0, 1)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """name → input file: png8 (128×128), png16 (150×210), ct (CT_small.dcm int16 HU), mr (MR_small.dcm)."""
    from PIL import Image as PILImage
    from pydicom.data import get_testdata_file

    d = tmp_path_factory.mktemp("manip_inputs")
    a = smooth_scan((128, 128), 1)
    PILImage.fromarray(np.round(a * 255).astype(np.uint8), mode="L").save(d / "scan8.png")
    b = smooth_scan((150, 210), 2)
    PILImage.fromarray(np.round(b * 65535).astype(np.uint16)).save(d / "scan16.png")
    PILImage.fromarray(np.round(b * 255).astype(np.uint8), mode="L").save(d / "scan.jpg", quality=90)
    return {"png8": d / "scan8.png", "png16": d / "scan16.png", "jpeg": d / "scan.jpg",
            "ct": Path(get_testdata_file("CT_small.dcm")), "mr": Path(get_testdata_file("MR_small.dcm"))}


def native_pixels(path: Path) -> np.ndarray:
    """The file's exact stored pixels (PNG via Pillow, DICOM via pydicom)."""
    if path.suffix == ".dcm":
        import pydicom

        return pydicom.dcmread(path).pixel_array
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="session")
def tiny_ddpm_dir(tmp_path_factory) -> Path:
    """models dir with a real tiny 'ddpm' (MONAI DiffusionModelUNet) trained 2 steps on generated PNGs."""
    from PIL import Image as PILImage

    from medfake.data import read_folder
    from medfake.synthesis.train import train_generator

    root = tmp_path_factory.mktemp("manip_train")
    for mod, lab in (("brain_mri", "glioma"), ("brain_mri", "notumor"), ("lung_ct", "COVID")):
        for i in range(2):
            p = root / mod / lab / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(np.round(smooth_scan((128, 128), i) * 255).astype(np.uint8), mode="L").save(p)
    out = tmp_path_factory.mktemp("manip_models")
    train_generator("ddpm", read_folder(root), out, config=MANIP_DDPM, steps=2, batch_size=4, ckpt_every=100,
                    log_every=1)
    return out
