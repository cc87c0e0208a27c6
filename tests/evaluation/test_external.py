"""The outside-real list: every listed file is installed and readable, frames are counted, nothing is a test pattern."""

from __future__ import annotations

import numpy as np

from medfake.evaluation.external import DICOM_FILES, external_reals


def test_every_listed_outside_real_reads():
    skipped = []
    items = external_reals(log=skipped.append)
    assert skipped == []  # pydicom-data, matplotlib and nibabel are pinned dependencies: all of it must read
    files = {label.split("#")[0] for label, _, _ in items}
    assert {name for name, _ in DICOM_FILES} <= files
    assert {"matplotlib/s1045.ima", "nibabel/anatomical.nii", "nibabel/example4d.nii.gz"} <= files
    assert len(files) == len(DICOM_FILES) + 3 and len(items) >= len(files)
    # multi-frame files count every frame
    assert sum(label.startswith("color3d_jpeg_baseline.dcm#") for label, _, _ in items) == 120
    for label, kind, im in items:
        a = im.array
        assert a.ndim == 2 and min(a.shape) >= 32 and np.isfinite(a).all(), label
        assert a.std() > 0.01, label  # an image, not a blank (nibabel's zero-filled DICOMs are left out)
