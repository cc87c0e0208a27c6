"""`medfake manipulate` end to end, and every bad input: one clear error, exit code 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medfake.cli import app
from medfake.io import ImageReadError, read_image
from medfake.manipulation import ManipulationError, make_mask, manipulate

runner = CliRunner()


def _run(args):
    res = runner.invoke(app, [str(a) for a in args])
    text = (res.output or "") + (getattr(res, "stderr", "") or "")
    return res.exit_code, " ".join(text.split())


def test_cli_end_to_end_dicom_copy_move(inputs, tmp_path):
    out = tmp_path / "out"
    code, text = _run(["manipulate", inputs["ct"], "--rect", "30,30,50,55", "--method", "copy-move",
                       "--offset", "-40,20", "--feather", "2", "--seed", "4", "--out", out, "--stem", "ct"])
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["ct.dcm", "ct.json", "ct_mask.dcm", "ct_mask.png"]
    assert "ct_mask.dcm (DICOM SEG)" in text
    ds = pydicom.dcmread(out / "ct.dcm")
    before = pydicom.dcmread(inputs["ct"]).pixel_array
    mask = np.asarray(PILImage.open(out / "ct_mask.png")) == 255
    assert mask[30:55, 30:50].all() and mask.sum() > 20 * 25  # feathered: support grew
    assert np.array_equal(ds.pixel_array[~mask], before[~mask])
    rec = json.loads((out / "ct.json").read_text())
    assert rec["method"] == "copy-move" and rec["params"]["offset"] == [-40, 20] and rec["seed"] == 4
    assert rec["feathered"] is True


@pytest.mark.parametrize("method, extra, feathered", [
    ("repaint-ddim", [], True),  # the diffusion methods' default: 2 px (no seam, benchmarks/manipulation_seams.py)
    ("repaint-ddim", ["--feather", "0"], False),  # an explicit 0: exactly the drawn mask
    ("retouch", [], False),  # classical methods: no feather unless asked
])
def test_cli_default_feather_per_method(inputs, tiny_ddpm_dir, tmp_path, method, extra, feathered):
    from medfake.manipulation import default_feather

    out = tmp_path / "o"
    args = ["manipulate", inputs["png8"], "--rect", "40,40,70,60", "--method", method, "--out", out, "--stem", "r"]
    if method == "repaint-ddim":
        args += ["--modality", "brain_mri", "--label", "glioma", "--steps", "4", "--jump-length", "2",
                 "--jump-n-sample", "2", "--models-dir", tiny_ddpm_dir]
    code, text = _run(args + extra)
    assert code == 0, text
    mask = np.asarray(PILImage.open(out / "r_mask.png")) == 255
    drawn = np.zeros_like(mask)
    drawn[40:60, 40:70] = True
    assert mask[drawn].all()
    # the written mask is the support that may differ: the drawn rect grown by the feather, or the rect itself
    assert bool(mask.sum() > drawn.sum()) is feathered and bool(mask.sum() == drawn.sum()) is (not feathered)
    rec = json.loads((out / "r.json").read_text())
    assert rec["feathered"] is feathered and rec["feather_px"] == (2.0 if feathered else 0.0)
    assert default_feather(method) == (2.0 if method == "repaint-ddim" else 0.0)


def test_cli_png16_retouch(inputs, tmp_path):
    code, text = _run(["manipulate", inputs["png16"], "--polygon", "50,50,120,60,80,120", "--method", "retouch",
                       "--mode", "noise", "--out", tmp_path / "o"])
    assert code == 0, text
    out = np.asarray(PILImage.open(tmp_path / "o" / "scan16_retouch.png"))
    assert out.dtype == np.uint16 and out.shape == (150, 210)


@pytest.fixture
def bad_files(tmp_path, inputs):
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    PILImage.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "small_mask.png")
    PILImage.fromarray(np.zeros((128, 128), np.uint8)).save(tmp_path / "empty_mask.png")
    return tmp_path


@pytest.mark.parametrize(
    "args, words",
    [
        (["{png8}", "--rect", "100,100,140,120", "--method", "retouch"], "outside the image"),
        (["{png8}", "--rect", "10,10,10,20", "--method", "retouch"], "empty mask"),
        (["{png8}", "--mask", "{tmp}/empty_mask.png", "--method", "retouch"], "empty mask"),
        (["{png8}", "--mask", "{tmp}/small_mask.png", "--method", "retouch"], "does not match the image size 128×128"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "repaint-ddim", "--modality", "kidney_ct", "--label",
          "glioma"], "unknown label 'glioma' for kidney_ct; choose one of: Cyst, Normal, Stone, Tumor"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "repaint", "--label", "glioma"], "pass --modality"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "splice", "--donor", "{png16}", "--modality", "brain_mri",
          "--donor-modality", "lung_ct"], "same modality"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "splice"], "needs --donor"),
        (["{tmp}/garbage.png", "--rect", "10,10,30,30", "--method", "retouch"], "garbage.png"),
        (["{tmp}/missing.dcm", "--rect", "10,10,30,30", "--method", "retouch"], "file not found"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "smudge"], "unknown method 'smudge'"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "copy-move", "--offset", "500,0"], "outside the image"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "retouch", "--modality", "spleen"], "unknown modality"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "retouch", "--frame", "2"], "holds one image, so it has no "
                                                                                    "frame 2"),
        (["{png8}", "--rect", "10,10,30,30", "--method", "retouch", "--all-frames"],
         "neither a multi-frame DICOM nor a NIfTI volume (png, 1 frame)"),
        (["{rgb16x2}", "--rect", "10,10,30,30", "--method", "retouch", "--all-frames"], "colour frames are 16-bit"),
        (["{ct}", "--rect", "10,10,30,30", "--method", "retouch", "--frame", "1"], "frame 1 out of range (0..0)"),
    ],
)
def test_cli_bad_input_one_error_nothing_written(inputs, bad_files, args, words):
    out = bad_files / "out"
    from pydicom.data import get_testdata_file

    fmt = {"png8": inputs["png8"], "png16": inputs["png16"], "ct": inputs["ct"], "tmp": bad_files,
           "rgb16x2": get_testdata_file("SC_rgb_16bit_2frame.dcm")}
    code, text = _run(["manipulate", *[a.format(**fmt) for a in args], "--out", out])
    assert code == 2, text
    assert "error:" in text and words in text, text
    assert not out.exists()


def test_api_bad_inputs(inputs, tmp_path):
    img = read_image(inputs["png8"])
    mask = make_mask(img.shape, rect=(10, 10, 30, 30))
    with pytest.raises(ManipulationError, match="does not match the image size"):
        manipulate(img, np.ones((5, 5), bool), "retouch")
    with pytest.raises(ManipulationError, match="empty mask"):
        manipulate(img, np.zeros(img.shape, bool), "retouch")
    donor = read_image(inputs["png16"])
    img.meta.modality, donor.meta.modality = "brain_mri", "chest_xray"
    with pytest.raises(ManipulationError, match="same modality"):
        manipulate(img, mask, "splice", donor=donor)
    with pytest.raises(ManipulationError, match="unknown method"):
        manipulate(img, mask, "blur")
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "nothing.png")
    assert list(tmp_path.iterdir()) == []


def test_cli_siemens_mosaic_is_edited_whole(siemens_mosaic, tmp_path):
    """`medfake detect` reads a mosaic as its slices; `medfake manipulate` edits the file as stored (coordinates in
    the mosaic's own pixels) and writes the whole mosaic back; the Python API refuses a single slice of one."""
    from medfake.io import read_image
    from medfake.manipulation import ManipulationError, make_mask, manipulate

    out = tmp_path / "out"
    code, text = _run(["manipulate", siemens_mosaic, "--rect", "300,300,340,350", "--method", "retouch",
                       "--out", out, "--stem", "m"])
    assert code == 0, text
    before = pydicom.dcmread(siemens_mosaic).pixel_array
    ds = pydicom.dcmread(out / "m.dcm")
    assert ds.pixel_array.shape == before.shape == (896, 896)
    mask = np.asarray(PILImage.open(out / "m_mask.png")) == 255
    assert mask.shape == (896, 896) and mask[300:350, 300:340].all()
    assert np.array_equal(ds.pixel_array[~mask], before[~mask])
    tile = read_image(siemens_mosaic)
    with pytest.raises(ManipulationError, match="mosaic=False"):
        manipulate(tile, make_mask(tile.shape, rect=(10, 10, 30, 30)), "retouch")


def test_cli_frame_of_a_multiframe_dicom_written_back_whole(tmp_path):
    """`--frame N --all-frames`: the chosen frame (0-based, as detect's rows path#N) is edited and the whole
    Enhanced CT comes back: every other frame as in the file, the mask's DICOM SEG over the edited frame."""
    import highdicom as hd
    from pydicom.data import get_testdata_file

    f = get_testdata_file("eCT_Supplemental.dcm")
    out = tmp_path / "o"
    code, text = _run(["manipulate", f, "--rect", "100,100,200,200", "--method", "retouch", "--frame", "1",
                       "--all-frames", "--out", out, "--stem", "ct"])
    assert code == 0, text
    assert "the whole object: 2 frames, frame 1 edited" in text, text
    src, ds = pydicom.dcmread(f), pydicom.dcmread(out / "ct.dcm")
    mask = np.asarray(PILImage.open(out / "ct_mask.png")) == 255
    assert ds.NumberOfFrames == 2 and np.array_equal(ds.pixel_array[0], src.pixel_array[0])
    assert np.array_equal(ds.pixel_array[1][~mask], src.pixel_array[1][~mask])
    assert not np.array_equal(ds.pixel_array[1][mask], src.pixel_array[1][mask])
    seg = hd.seg.segread(out / "ct_mask.dcm")
    refs = [item.DerivationImageSequence[0].SourceImageSequence[0] for item in seg.PerFrameFunctionalGroupsSequence]
    assert [(r.ReferencedSOPInstanceUID, int(r.ReferencedFrameNumber)) for r in refs] == [(ds.SOPInstanceUID, 2)]
    assert np.array_equal(seg.pixel_array.astype(bool).reshape(mask.shape), mask)
    rec = json.loads((out / "ct.json").read_text())
    assert rec["input"]["frame"] == 1 and rec["output"]["frames"] == 2 and rec["output"]["edited_frame"] == 1
    # without --all-frames: that frame alone, as a one-frame instance (the default)
    code, text = _run(["manipulate", f, "--rect", "100,100,200,200", "--method", "retouch", "--frame", "1",
                       "--out", tmp_path / "one", "--stem", "ct"])
    assert code == 0, text
    assert pydicom.dcmread(tmp_path / "one" / "ct.dcm").NumberOfFrames == 1


def test_cli_slice_of_a_volume(tmp_path):
    """`--frame N` picks a NIfTI volume's axial slice N (its sidecar says which); out of range is one error."""
    import nibabel as nib

    vol = (np.random.default_rng(1).random((40, 50, 6)) * 1000).astype(np.int16)
    vol[:, :, 4] = np.arange(40)[:, None] * 20  # slice 4 alone is a smooth ramp: the edit must have read that one
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    code, text = _run(["manipulate", tmp_path / "v.nii.gz", "--rect", "5,5,20,20", "--method", "retouch",
                       "--mode", "noise", "--frame", "4", "--out", tmp_path / "o", "--stem", "v"])
    assert code == 0, text
    rec = json.loads((tmp_path / "o" / "v.json").read_text())
    assert rec["input"]["volume_slice"] == {"axis": 2, "index": 4}
    out = np.asarray(PILImage.open(tmp_path / "o" / "v.png"))
    mask = np.asarray(PILImage.open(tmp_path / "o" / "v_mask.png")) == 255
    assert out.shape == (50, 40) and len(np.unique(out[~mask])) <= 40 < len(np.unique(out[mask]))
    # --all-frames: the volume back, only that slice's masked voxels changed, and those voxels as a mask volume
    code, text = _run(["manipulate", tmp_path / "v.nii.gz", "--rect", "5,5,20,20", "--method", "retouch",
                       "--mode", "noise", "--frame", "4", "--all-frames", "--out", tmp_path / "vol", "--stem", "v"])
    assert code == 0, text
    assert "v_mask.nii.gz (the voxels changed; the volume's slice 4 edited)" in text, text
    assert sorted(p.name for p in (tmp_path / "vol").iterdir()) == ["v.json", "v.nii.gz", "v_mask.nii.gz",
                                                                    "v_mask.png"]
    back = np.asanyarray(nib.load(tmp_path / "vol" / "v.nii.gz").dataobj)
    changed = np.asanyarray(nib.load(tmp_path / "vol" / "v_mask.nii.gz").dataobj).astype(bool)
    assert back.dtype == np.int16 and np.array_equal(back[~changed], vol[~changed])
    assert changed[:, :, 4].sum() == changed.sum() == mask.sum() and (back[changed] != vol[changed]).any()
    code, text = _run(["manipulate", tmp_path / "v.nii.gz", "--rect", "5,5,20,20", "--method", "retouch",
                       "--frame", "6", "--out", tmp_path / "bad"])
    assert code == 2 and "slice 6 out of range (0..5)" in text, text
    assert not (tmp_path / "bad").exists()


def test_cli_slab_of_frames_in_a_multiframe_dicom(tmp_path):
    """`--frame 4 --depth 2 --all-frames`: frames 2–6 are edited (one seed and copy-move offset for all), the mask
    shrinking away from frame 4 as an ellipsoid's cross-sections; every other frame and every unmasked pixel stay
    the file's; each frame's mask is written and listed (so `medfake detect` leaves them out)."""
    from pydicom.data import get_testdata_file

    from medfake.io.readers import derived_files

    f = get_testdata_file("emri_small.dcm")
    out = tmp_path / "o"
    code, text = _run(["manipulate", f, "--ellipse", "32,32,12,10", "--method", "copy-move", "--frame", "4",
                       "--depth", "2", "--all-frames", "--out", out, "--stem", "s"])
    assert code == 0, text
    assert "a slab of 5 frames (2, 3, 4, 5, 6)" in text, text
    src, ds = pydicom.dcmread(f), pydicom.dcmread(out / "s.dcm")
    rec = json.loads((out / "s.json").read_text())
    assert "frame_number=3,4,5,6,7 of 10" in ds.DerivationDescription
    sizes = {}
    for k in range(10):
        if k in (2, 3, 4, 5, 6):
            name = "s_mask.png" if k == 4 else f"s_mask_{k}.png"
            mask = np.asarray(PILImage.open(out / name)) == 255
            sizes[k] = int(mask.sum())
            assert np.array_equal(ds.pixel_array[k][~mask], src.pixel_array[k][~mask])
            assert not np.array_equal(ds.pixel_array[k][mask], src.pixel_array[k][mask]), k
        else:
            assert np.array_equal(ds.pixel_array[k], src.pixel_array[k]), k
    assert sizes[4] > sizes[3] == sizes[5] > sizes[2] == sizes[6] > 0
    assert sorted(v["frame"] for v in rec["slab"]) == [2, 3, 5, 6] and {v["seed"] for v in rec["slab"]} == {0}
    assert {"s_mask.png", "s_mask_2.png", "s_mask_6.png"} <= derived_files(out)
    for args, words in [(["--depth", "1"], "add --all-frames"),
                        (["--depth", "5", "--all-frames"], "needs frames -1–9; "),
                        (["--depth", "2", "--all-frames", "--frame", "8"], "needs frames 6–10")]:
        code, text = _run(["manipulate", f, "--ellipse", "32,32,12,10", "--method", "retouch", "--frame", "4",
                           *args, "--out", tmp_path / "bad"])
        assert code == 2 and words in text, text
        assert not (tmp_path / "bad").exists()


def test_cli_slab_of_slices_in_a_volume(tmp_path):
    """A NIfTI slab: the mask volume marks exactly the masks of slices 2–4, and no other voxel changed."""
    import nibabel as nib

    vol = (np.random.default_rng(2).random((40, 50, 7)) * 1000).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([-1.0, 1.0, 2.0, 1.0])), tmp_path / "v.nii.gz")
    code, text = _run(["manipulate", tmp_path / "v.nii.gz", "--ellipse", "20,25,9,9", "--method", "retouch",
                       "--mode", "noise", "--frame", "3", "--depth", "1", "--all-frames", "--out", tmp_path / "o",
                       "--stem", "v"])
    assert code == 0, text
    back = np.asanyarray(nib.load(tmp_path / "o" / "v.nii.gz").dataobj)
    changed = np.asanyarray(nib.load(tmp_path / "o" / "v_mask.nii.gz").dataobj).astype(bool)
    per_slice = changed.sum(axis=(0, 1))
    masks = {k: np.asarray(PILImage.open(tmp_path / "o" / ("v_mask.png" if k == 3 else f"v_mask_{k}.png"))) > 0
             for k in (2, 3, 4)}
    assert [int(v) for v in per_slice] == [0, 0, int(masks[2].sum()), int(masks[3].sum()), int(masks[4].sum()), 0, 0]
    assert np.array_equal(back[~changed], vol[~changed]) and (back[changed] != vol[changed]).mean() > 0.9


def _write_series(folder, n=7, series_uid=None, shuffle=True):
    """A CT series of n single-frame files (pydicom's CT_small.dcm, slice k its pixels + 10·k at z = 5·k), named and
    numbered out of order so that only the positions give the slice order. Returns the SOP Instance UIDs in order."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    uids = []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PixelData = (ds.pixel_array + 10 * k).astype(ds.pixel_array.dtype).tobytes()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        ds.InstanceNumber = n - k  # reversed: the position decides
        name = f"IM{(k * 5) % n:04d}" if shuffle else f"IM{k:04d}"  # no extension, as PACS exports name them
        ds.save_as(folder / name)
        uids.append(ds.SOPInstanceUID)
    return uids


def test_cli_slab_in_a_dicom_series_folder(tmp_path):
    """A folder holding one series (a file per slice): `--frame 3 --depth 1` edits the 3rd–5th slices in position
    order, each written as a derived DICOM of its own, referencing the slice it came from, its unmasked pixels that
    slice's; a folder of two series, or --all-frames on a folder, is one clear error."""
    from medfake.io.readers import dicom_series

    uids = _write_series(tmp_path / "ct")
    assert [pydicom.dcmread(f).SOPInstanceUID for f in dicom_series(tmp_path / "ct")] == uids
    out = tmp_path / "o"
    code, text = _run(["manipulate", tmp_path / "ct", "--ellipse", "64,64,20,16", "--method", "retouch", "--mode",
                       "noise", "--frame", "3", "--depth", "1", "--out", out, "--stem", "s"])
    assert code == 0, text
    assert "series slice 3 of 7, and slices 2, 4 as s_<N>.dcm" in text, text
    sizes = {}
    for k in (2, 3, 4):
        ds = pydicom.dcmread(out / f"s_{k}.dcm")
        src = pydicom.dcmread([f for f in (tmp_path / "ct").iterdir()
                               if pydicom.dcmread(f).SOPInstanceUID == uids[k]][0])
        mask = np.asarray(PILImage.open(out / f"s_{k}_mask.png")) == 255
        sizes[k] = int(mask.sum())
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == uids[k]
        assert ds.SeriesInstanceUID == src.SeriesInstanceUID and "MANIPULATED" in ds.DerivationDescription
        assert np.array_equal(ds.pixel_array[~mask], src.pixel_array[~mask])
        assert not np.array_equal(ds.pixel_array[mask], src.pixel_array[mask])
        assert (out / f"s_{k}_mask.dcm").exists()  # each slice's SEG
    assert sizes[3] > sizes[2] == sizes[4] > 0
    assert sorted(p.name for p in out.glob("*.dcm")) == ["s_2.dcm", "s_2_mask.dcm", "s_3.dcm", "s_3_mask.dcm",
                                                          "s_4.dcm", "s_4_mask.dcm"]
    _write_series(tmp_path / "two" / "a", n=2)
    _write_series(tmp_path / "two" / "b", n=2)
    for args, words in [([tmp_path / "two"], "holds 2 DICOM series"),
                        ([tmp_path / "ct", "--all-frames"], "a series folder comes back as its edited slices"),
                        ([tmp_path / "ct", "--frame", "6", "--depth", "1"], "needs frames 5–7; "),
                        ([tmp_path / "ct", "--frame", "7"], "slice 7 out of range (0..6)"),
                        ([tmp_path], "holds 3 DICOM series")]:
        code, text = _run(["manipulate", *args, "--ellipse", "64,64,20,16", "--method", "retouch", "--out",
                           tmp_path / "bad"])
        assert code == 2 and words in text, text
        assert not (tmp_path / "bad").exists()


def test_cli_series_slab_written_all_or_nothing(tmp_path, monkeypatch):
    """A write that fails on the 2nd of 3 slices leaves no slice written, neither in a new folder (removed) nor
    beside files already in an existing one (kept as they were); a run that succeeds leaves no staging folder."""
    import medfake.manipulation as mp

    _write_series(tmp_path / "ct")
    real_save, calls = mp.save_result, []

    def failing_save(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise ValueError("no space left on device (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(mp, "save_result", failing_save)
    keep = tmp_path / "old"
    keep.mkdir()
    (keep / "earlier.txt").write_text("x")
    for out in (tmp_path / "new", keep):
        calls.clear()
        code, text = _run(["manipulate", tmp_path / "ct", "--ellipse", "64,64,20,16", "--method", "retouch",
                           "--frame", "3", "--depth", "1", "--out", out, "--stem", "s"])
        assert code == 2 and "no space left on device (simulated)" in text, text
        assert len(calls) == 2
    assert not (tmp_path / "new").exists()
    assert [p.name for p in keep.iterdir()] == ["earlier.txt"]
    monkeypatch.setattr(mp, "save_result", real_save)
    code, text = _run(["manipulate", tmp_path / "ct", "--ellipse", "64,64,20,16", "--method", "retouch",
                       "--frame", "3", "--depth", "1", "--out", keep, "--stem", "s"])
    assert code == 0, text
    names = sorted(p.name for p in keep.iterdir())
    assert "s_2.dcm" in names and "s_4.json" in names and not [n for n in names if n.startswith(".")]
