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


def test_fetched_second_set_layout_and_slices(tmp_path):
    """MORE_SOURCES names archives by sha256 and members under one folder per package; a volume contributes its
    middle slices, a missing file is logged and left out, and nothing in the list is a mask or label map."""
    import nibabel as nib

    from medfake.evaluation.external import MIDDLE_FRACTION, MORE_SOURCES, external_reals_more, more_files

    for pkg, archive, sha, licence, members in MORE_SOURCES:
        assert len(sha) == 64 and archive and licence and members, pkg
        for member, what, tier in members:
            assert tier in ("acquired", "processed") and "label" not in member and "mask" not in member, member
    files = more_files(tmp_path)
    assert len({f for f, *_ in files}) == len(files)  # no two members land on one path
    path, pkg, what, tier = next(f for f in files if f[0].name.endswith(".nii.gz"))
    path.parent.mkdir(parents=True)
    vol = np.random.default_rng(0).random((32, 32, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    log: list = []
    items = external_reals_more(tmp_path, log=log.append)
    cut = int(10 * (1 - MIDDLE_FRACTION) / 2)
    assert [label for label, _, _ in items] == [f"{pkg}/{path.name}#{k}" for k in range(cut, 10 - cut)]
    assert all(kind == f"{tier}: {what}" for _, kind, _ in items)
    assert len(log) == len(files) - 1 and all("not fetched" in m for m in log)


def test_each_fetched_file_gets_its_series_verdict(group_rule):
    """A volume's slices are one group, judged by `medfake detect --summary`'s rule at the detector's card rates:
    3 of 37 slices called manipulated is a manipulated volume at 1 % per image, 1 of 37 is uncertain."""
    from types import SimpleNamespace

    from medfake.evaluation.external import _file_verdicts

    plan = {"a.nrrd": ["manipulated"] * 3 + ["real"] * 34, "b.nrrd": ["manipulated"] + ["real"] * 36,
            "c.dcm": ["synthetic"], "d.nii.gz": ["real"] * 10}
    items, preds = [], []
    for name, verdicts in plan.items():
        for k, v in enumerate(verdicts):
            items.append((f"pkg/{name}#{k}" if len(verdicts) > 1 else f"pkg/{name}", "acquired: x", None))
            preds.append(SimpleNamespace(verdict=v))
    got = {f["file"]: f for f in _file_verdicts(items, preds, {"target_fpr": 0.01, "uncertain_factor": 1.5})}
    for name, verdicts in plan.items():
        f = got[f"pkg/{name}"]
        assert f["images"] == len(verdicts) and f["verdict"] == group_rule[1](verdicts, 0.01, 0.015), name
    assert got["pkg/a.nrrd"]["verdict"] == "manipulated" and got["pkg/b.nrrd"]["verdict"] == "uncertain"
