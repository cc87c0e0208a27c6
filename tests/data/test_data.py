from __future__ import annotations

import numpy as np
import pytest

from medfake.data import (
    HEALTHY, MODALITIES, check_label, filter_records, read_folder, read_manifest, to_canonical, write_canonical,
    write_manifest,
)
from medfake.data.datasets import ImageDataset, train_transforms
from medfake.io import Image, read_image


def test_modalities_and_healthy_labels():
    assert set(MODALITIES) == {"brain_mri", "chest_xray", "lung_ct", "kidney_ct", "breast_us", "knee_xray"}
    for m, h in HEALTHY.items():
        assert h in MODALITIES[m]
    with pytest.raises(ValueError, match="choose one of"):
        check_label("kidney_ct", "tumour")


def test_folder_layout_and_dataset(tiny_folder):
    recs = read_folder(tiny_folder)
    assert len(recs) == 12 and {r.modality for r in recs} == {"brain_mri", "chest_xray"}
    ds = ImageDataset(recs, train_transforms(augment=True))
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 128, 128)
    assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["cls"] >= 0


def test_manifest_round_trip(tmp_path, tiny_folder):
    rows = [{"path": str(r.path.relative_to(tiny_folder)), "modality": r.modality, "label": r.label,
             "split": "train" if i % 2 else "test"} for i, r in enumerate(read_folder(tiny_folder))]
    m = write_manifest(tiny_folder / "m.csv", rows)
    recs = read_manifest(m)
    assert len(recs) == 12 and recs[0].path.exists()
    assert len(filter_records(recs, "test")) == 6
    assert len(filter_records(recs, limit_per_class=1)) == 4


def test_canonical_output_path(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((300, 200)).astype(np.float32)
    c = to_canonical(Image(a))
    assert c.shape == (128, 128) and c.dtype == np.float32
    np.testing.assert_array_equal(np.round(c * 255) / 255, c)  # 8-bit quantised
    p = write_canonical(Image(a), tmp_path / "x.png")
    back = read_image(p)
    assert back.shape == (128, 128) and back.meta.bits == 8
    np.testing.assert_allclose(back.array, c, atol=1e-6)


def test_real_manifest_reads(shared_manifest):
    recs = read_manifest(shared_manifest)
    assert len(recs) == 9480
    assert {r.split for r in recs} == {"train", "val", "test"}
    assert all(r.label in MODALITIES[r.modality] for r in recs)
    assert read_image(recs[0].path).shape == (128, 128)
