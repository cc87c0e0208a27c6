"""The shared crop → 128 px → paste-back path: unmasked pixels bit-identical, same size/dtype/format out, DICOM
derived copies with provenance, sidecar contents."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medfake.io import read_image
from medfake.manipulation import make_mask, manipulate, poisson_blend, save_result

from .conftest import native_pixels, smooth_scan

CLASSICAL = [("retouch", {}), ("retouch", {"mode": "noise", "noise_std": 0.2}), ("copy-move", {}),
             ("splice", {"blend": "alpha"}), ("splice", {"blend": "poisson"})]


def _donor(img):
    from medfake.io import Image

    d = Image(np.clip(smooth_scan((90, 70), 7)[::-1] * 0.6 + 0.3, 0, 1))
    d.meta.modality = img.meta.modality
    return d


@pytest.mark.parametrize("kind", ["png8", "png16", "ct", "mr"])
@pytest.mark.parametrize("method, params", CLASSICAL)
@pytest.mark.parametrize("feather", [0, 3])
def test_unmasked_pixels_bit_identical_same_size_and_dtype(inputs, tmp_path, kind, method, params, feather):
    path = inputs[kind]
    img = read_image(path)
    h, w = img.shape
    mask = make_mask(img.shape, ellipse=(w // 2, h // 2, w // 8, h // 10), feather=feather)
    donor = _donor(img) if method == "splice" else None
    res = manipulate(img, mask, method, donor=donor, seed=3, **params)
    files = save_result(res, tmp_path, "out")
    before = native_pixels(path)
    after = native_pixels(files["image"])
    assert files["image"].suffix == (".dcm" if kind in ("ct", "mr") else ".png")
    assert after.shape == before.shape and after.dtype == before.dtype
    assert np.array_equal(after, res.stored)
    assert np.array_equal(after[~res.mask], before[~res.mask])  # bit-identical outside the mask
    assert (after[res.mask] != before[res.mask]).mean() > 0.2  # and something really changed inside
    # ground truth = exactly the pixels that may differ: the drawn mask, dilated by the feather
    base = make_mask(img.shape, ellipse=(w // 2, h // 2, w // 8, h // 10))
    assert np.all(res.mask[base]) and (res.mask.sum() > base.sum()) == (feather > 0)
    saved_mask = native_pixels(files["mask"])
    assert saved_mask.shape == before.shape and set(np.unique(saved_mask)) <= {0, 255}
    assert np.array_equal(saved_mask == 255, res.mask)


def test_dicom_out_is_derived_copy_with_provenance(inputs, tmp_path):
    src = pydicom.dcmread(inputs["ct"])
    img = read_image(inputs["ct"])
    res = manipulate(img, make_mask(img.shape, rect=(40, 40, 70, 60)), "retouch", sigma=4)
    files = save_result(res, tmp_path, "ct")
    ds = pydicom.dcmread(files["image"])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "MANIPULATED" in ds.DerivationDescription and "retouch" in ds.DerivationDescription
    assert "mask_bounds=40,40,70,60" in ds.DerivationDescription
    assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.SeriesInstanceUID == src.SeriesInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # Hounsfield mapping preserved: same rescale, same signed 16-bit stored values
    assert float(ds.RescaleIntercept) == float(src.RescaleIntercept) == -1024.0
    assert ds.pixel_array.dtype == np.int16 and ds.PixelRepresentation == 1
    back = read_image(files["image"])  # and medfake reads it back
    assert back.shape == img.shape and back.meta.format == "dicom"


def test_sidecar_records_what_was_done(inputs, tmp_path):
    img = read_image(inputs["png16"])
    res = manipulate(img, make_mask(img.shape, rect=(20, 30, 60, 70)), "copy-move", offset=(-80, 10), seed=5)
    files = save_result(res, tmp_path, "s")
    rec = json.loads(files["sidecar"].read_text())
    assert rec["method"] == "copy-move" and rec["seed"] == 5 and rec["params"]["offset"] == [-80, 10]
    assert rec["mask_bounds"] == {"x1": 20, "y1": 30, "x2": 60, "y2": 70}
    assert rec["input"]["path"] == str(inputs["png16"]) and len(rec["input"]["sha256"]) == 64
    assert rec["output"] == {"format": "png", "dtype": "uint16", "bits": 16, "shape": [150, 210], "samples_per_pixel": 1}
    assert rec["model_version"] == "classical" and rec["timings_s"]["total"] >= 0
    assert rec["files"] == {"image": "s.png", "mask": "s_mask.png"}


def test_jpeg_in_gives_8bit_png_out(inputs, tmp_path):
    img = read_image(inputs["jpeg"])
    res = manipulate(img, make_mask(img.shape, rect=(5, 5, 40, 40)), "retouch")
    files = save_result(res, tmp_path, "j")
    assert files["image"].suffix == ".png" and native_pixels(files["image"]).dtype == np.uint8
    assert np.array_equal(native_pixels(files["image"])[~res.mask], img.to_uint8()[~res.mask])


def test_copy_move_source_offset_exact(inputs):
    img = read_image(inputs["png8"])
    res = manipulate(img, make_mask(img.shape, rect=(70, 70, 90, 90)), "copy-move", offset=(50, 40), min_side=128,
                     context=2.0)
    before = native_pixels(inputs["png8"]).astype(int)
    assert np.abs(res.stored[70:90, 70:90].astype(int) - before[30:50, 20:40]).max() <= 1


def test_large_and_tiny_images_round_trip(tmp_path):
    from medfake.io import Image

    for shape, rect in (((600, 400), (300, 500, 380, 590)), ((40, 48), (10, 10, 30, 30))):
        img = Image(smooth_scan(shape, 3).astype(np.float32))
        res = manipulate(img, make_mask(shape, rect=rect), "retouch", sigma=2)
        assert res.stored.shape == shape and res.image.shape == shape
        u = img.to_uint8()
        assert np.array_equal(res.stored[~res.mask], u[~res.mask]) and not np.array_equal(res.stored, u)


def test_poisson_blend_keeps_target_level_and_source_gradients():
    t = smooth_scan((64, 64), 4)
    s = np.clip(t * 0 + 0.2 + 0.3 * np.mgrid[:64, :64][1] / 64, 0, 1)  # a ramp
    region = np.zeros((64, 64), bool)
    region[20:40, 20:40] = True
    out = poisson_blend(t, s + 0.3, region)
    assert np.array_equal(out[~region], t[~region])
    # constant offsets of the source do not matter (only its gradients do)
    assert np.allclose(out, poisson_blend(t, s, region), atol=1e-9)
    # with the target's own gradients the solution is the target itself
    assert np.allclose(poisson_blend(t, t + 0.1, region), t, atol=1e-9)
    # the ramp's horizontal gradient is imported into the region
    g = np.diff(out[30, 22:38]).mean()
    assert abs(g - 0.3 / 64) < 0.5 * 0.3 / 64 + abs(np.diff(t[30, 22:38]).mean())


def test_windowed_ct_keeps_values_outside_the_window(inputs):
    """Read with a narrow brain window (most HU clipped in the display): stored values come from the file, so
    unmasked pixels stay bit-identical and the copy-move/retouch working range is the full HU range."""
    img = read_image(inputs["ct"], window="brain")
    assert img.array.min() == 0.0 and img.array.max() == 1.0  # heavily clipped display
    res = manipulate(img, make_mask(img.shape, rect=(40, 40, 70, 60)), "retouch")
    before = native_pixels(inputs["ct"])
    assert res.record["input"]["stored_source"] == "file"
    assert np.array_equal(res.stored[~res.mask], before[~res.mask])
    assert res.record["working_range"]["kind"] == "full" and res.record["working_range"]["lo"] == -896.0
    # blurring in HU keeps the inside within the image's own HU range
    assert before.min() <= res.stored[res.mask].min() and res.stored[res.mask].max() <= before.max()


def test_multiframe_dicom_frame_and_nifti(tmp_path):
    import nibabel as nib
    from pydicom.data import get_testdata_file

    f = get_testdata_file("emri_small.dcm")
    img = read_image(f, frames=2)
    res = manipulate(img, make_mask(img.shape, rect=(10, 10, 30, 30)), "retouch")
    frame = pydicom.dcmread(f).pixel_array[2]
    assert np.array_equal(res.stored[~res.mask], frame[~res.mask])
    ds = pydicom.dcmread(save_result(res, tmp_path, "mf")["image"])
    # the same (Enhanced MR) SOP class as a conformant one-frame instance, referencing the frame it came from
    src = pydicom.dcmread(f, stop_before_pixels=True)
    assert ds.pixel_array.shape == frame.shape and ds.NumberOfFrames == 1 and ds.SOPClassUID == src.SOPClassUID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert ds.SourceImageSequence[0].ReferencedFrameNumber == 3

    vol = (np.random.default_rng(0).random((60, 70, 5)) * 1000).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    img = read_image(tmp_path / "v.nii.gz")
    res = manipulate(img, make_mask(img.shape, rect=(5, 5, 30, 30)), "retouch")
    out = native_pixels(save_result(res, tmp_path, "v")["image"])
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert np.array_equal(out[~res.mask], np.round(img.array * 65535).astype(np.uint16)[~res.mask])


def test_multiframe_enhanced_ct_keeps_the_frames_position(tmp_path):
    """A frame of an Enhanced CT keeps that frame's per-frame functional groups (plane position), and a cine
    ultrasound frame that frame's value of the vector its Frame Increment Pointer names."""
    from pydicom.data import get_testdata_file

    f = get_testdata_file("eCT_Supplemental.dcm")
    src = pydicom.dcmread(f)
    img = read_image(f, frames=1)
    res = manipulate(img, make_mask(img.shape, rect=(100, 100, 200, 200)), "retouch")
    ds = pydicom.dcmread(save_result(res, tmp_path, "ect")["image"])
    pos = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert ds.NumberOfFrames == 1 and len(ds.PerFrameFunctionalGroupsSequence) == 1
    assert list(pos) == list(src.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient)
    assert np.array_equal(ds.pixel_array[~res.mask], src.pixel_array[1][~res.mask])
    us = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"), stop_before_pixels=True)
    pointer = us.FrameIncrementPointer
    us.NumberOfFrames, us[pointer].value = 3, [10.0, 20.0, 30.0]  # a frame-time vector, one value per frame
    from medfake.io.writers import _one_frame

    one = us.copy()
    _one_frame(one, us, 2)
    assert one.NumberOfFrames == 1 and float(one[pointer].value) == 30.0


@pytest.mark.parametrize("name, frame", [("emri_small.dcm", 3), ("eCT_Supplemental.dcm", 0),
                                         ("examples_ybr_color.dcm", 5), ("SC_rgb_2frame.dcm", 1)])
def test_multiframe_dicom_written_back_whole(tmp_path, name, frame):
    """`all_frames`: the whole multi-frame object comes back (grey or colour, with or without functional groups):
    every other frame as the file shows it, the edited frame outside its mask too, the same SOP class, functional
    groups and study, a new instance, and the frame number in its provenance. Its SEG is over the edited frame where
    highdicom can describe the frames, else the sidecar says why; the one-frame default is unchanged."""
    from pydicom.data import get_testdata_file

    from medfake.io import read_images
    from medfake.io.readers import dicom_colour

    f = get_testdata_file(name)
    src = pydicom.dcmread(f)
    n = int(src.NumberOfFrames)
    img = read_images(f, frames=frame)[0]
    h, w = img.shape
    res = manipulate(img, make_mask(img.shape, rect=(w // 4, h // 4, w // 2, h // 2)), "retouch", mode="noise")
    paths = save_result(res, tmp_path, "mf", all_frames=True)
    ds = pydicom.dcmread(paths["image"])
    shown = dicom_colour(src, src.pixel_array)
    shown = src.pixel_array if shown is None else shown
    out = ds.pixel_array
    assert ds.NumberOfFrames == n and out.shape == shown.shape and out.dtype == shown.dtype
    assert all(np.array_equal(out[i], shown[i]) for i in range(n) if i != frame)
    assert np.array_equal(out[frame][~res.mask], shown[frame][~res.mask])
    assert not np.array_equal(out[frame][res.mask], shown[frame][res.mask])
    assert ds.SOPClassUID == src.SOPClassUID and ds.SOPInstanceUID != src.SOPInstanceUID
    assert ds.StudyInstanceUID == src.StudyInstanceUID and "DERIVED" in ds.ImageType
    assert f"frame_number={frame + 1} of {n}" in ds.DerivationDescription
    assert ds.SourceImageSequence[0].ReferencedFrameNumber == frame + 1
    if "PerFrameFunctionalGroupsSequence" in src:
        assert ds.PerFrameFunctionalGroupsSequence == src.PerFrameFunctionalGroupsSequence
    np.testing.assert_allclose(read_images(paths["image"], frames=frame)[0].array, res.image.array, atol=0.02)
    rec = json.loads(paths["sidecar"].read_text())
    assert rec["output"]["frames"] == n and rec["output"]["edited_frame"] == frame
    if "mask_seg" in paths:
        import highdicom as hd

        seg = hd.seg.segread(paths["mask_seg"])
        ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert int(ref.ReferencedFrameNumber) == frame + 1 and seg.NumberOfFrames == 1
    else:
        assert "highdicom cannot describe" in rec["mask_seg_skipped"]
    assert pydicom.dcmread(save_result(res, tmp_path / "one", "mf")["image"]).NumberOfFrames == 1
    # writing never changes the source as read (Dataset.copy() shares its element dict): it can be written again
    assert "PixelData" in img.meta.dicom and "PixelData" in res.image.meta.dicom
    assert pydicom.dcmread(save_result(res, tmp_path / "again", "mf", all_frames=True)["image"]).NumberOfFrames == n


@pytest.mark.parametrize("axes, dtype", [
    (np.diag([1.0, 1.0, 2.0, 1.0]), np.int16),  # RAS+: stored as shown
    (np.diag([-0.8, -0.8, 2.5, 1.0]), np.int16),  # LPS, as DICOM converters write: two axes flipped
    (np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]]), np.float32),  # axes permuted
])
def test_nifti_volume_written_back_with_the_slice_edited(tmp_path, axes, dtype):
    """`all_frames` on a NIfTI slice: the volume comes back as stored (shape, dtype, affine), every voxel the file's
    own except the edited ones, which are exactly those the mask volume marks and lie on the slice read (mapped back
    through the reader's reorientation and display flip): read again, that slice is the edited image. Its header
    says it is manipulated (description and a comment extension)."""
    import nibabel as nib

    from medfake.io import read_images
    from medfake.io.readers import derived_files

    vol = (np.random.default_rng(3).random((30, 40, 8)) * 1000).astype(dtype)
    nib.save(nib.Nifti1Image(vol, axes), tmp_path / "v.nii.gz")
    img = read_images(tmp_path / "v.nii.gz", slice_index=2)[0]
    h, w = img.shape
    res = manipulate(img, make_mask(img.shape, rect=(2, 3, w // 2, h // 2)), "retouch", mode="noise")
    paths = save_result(res, tmp_path / "o", "v", all_frames=True)
    out, marks = nib.load(paths["image"]), nib.load(paths["mask_volume"])
    data, changed = np.asanyarray(out.dataobj), np.asanyarray(marks.dataobj).astype(bool)
    assert data.shape == vol.shape and out.get_data_dtype() == dtype and np.allclose(out.affine, axes, atol=1e-6)
    assert np.array_equal(data[~changed], vol[~changed]) and changed.sum() == res.mask.sum()
    assert (data[changed] != vol[changed]).mean() > 0.9
    again = read_images(paths["image"], slice_index=2)[0]
    np.testing.assert_allclose(again.array[res.mask], res.image.array[res.mask], atol=1e-3)
    assert np.array_equal(again.array[~res.mask], img.array[~res.mask])
    assert bytes(out.header["descrip"]).startswith(b"MEDFAKE MANIPULATED IMAGE: retouch")
    assert any(b"generator=retouch" in e.get_content() for e in out.header.extensions)
    rec = json.loads(paths["sidecar"].read_text())
    assert rec["output"]["format"] == "nifti" and rec["output"]["voxels_changed"] == int(res.mask.sum())
    assert {"v_mask.nii.gz", "v_mask.png"} <= derived_files(tmp_path / "o")  # `medfake detect` leaves them out


def test_nifti_volume_scaled_or_4d_written_back(tmp_path):
    """A scaled integer volume keeps its stored values and its slope and intercept (the edited voxels stored back
    through them); a volume with a trailing dimension of 1 is written back as the 3-D volume it is, a 2-D NIfTI as
    itself; several volumes (4-D) are refused with the reason before anything is written."""
    import nibabel as nib

    from medfake.io import read_images
    from medfake.io.writers import whole_object_problem

    raw = (np.arange(20 * 24 * 6, dtype=np.int16).reshape(20, 24, 6) % 700) * 3
    scaled = nib.Nifti1Image(raw, np.eye(4))
    scaled.header.set_slope_inter(0.5, -100)
    nib.save(scaled, tmp_path / "scaled.nii")
    img = read_images(tmp_path / "scaled.nii", slice_index=2)[0]
    res = manipulate(img, make_mask(img.shape, rect=(3, 3, 12, 12)), "retouch", mode="noise")
    out = nib.load(save_result(res, tmp_path / "o", "s", all_frames=True)["image"])
    changed = np.asanyarray(nib.load(tmp_path / "o" / "s_mask.nii.gz").dataobj).astype(bool)
    assert (float(out.dataobj.slope), float(out.dataobj.inter)) == (0.5, -100.0)
    stored = np.asanyarray(out.dataobj.get_unscaled())
    assert stored.dtype == np.int16 and np.array_equal(stored[~changed], raw[~changed]) and changed.sum() == 81
    again = read_images(tmp_path / "o" / "s.nii.gz", slice_index=2)[0]  # scaled values: within a stored step
    np.testing.assert_allclose(again.array[res.mask], res.image.array[res.mask], atol=0.5 / np.ptp(raw * 0.5) + 1e-6)

    nib.save(nib.Nifti1Image(raw[..., None].astype(np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    img = read_images(tmp_path / "one.nii.gz", slice_index=1)[0]
    assert whole_object_problem(img) == ""
    res = manipulate(img, make_mask(img.shape, rect=(3, 3, 12, 12)), "retouch", mode="noise")
    out = nib.load(save_result(res, tmp_path / "o1", "s", all_frames=True)["image"])
    assert out.shape == (20, 24, 6, 1) and (np.asanyarray(out.dataobj) != raw[..., None]).sum() == 81

    flat = raw[:, :, 0].astype(np.float32)  # a 2-D NIfTI: its one slice
    nib.save(nib.Nifti1Image(flat, np.diag([-1.0, 1.0, 1.0, 1.0])), tmp_path / "flat.nii.gz")
    img = read_images(tmp_path / "flat.nii.gz")[0]
    res = manipulate(img, make_mask(img.shape, rect=(3, 3, 12, 12)), "retouch", mode="noise")
    out = nib.load(save_result(res, tmp_path / "o2", "s", all_frames=True)["image"])
    got = np.asanyarray(out.dataobj)
    assert got.shape == flat.shape and (got != flat).sum() == 81
    assert np.array_equal(np.fliplr(np.rot90(got != flat)), res.mask)  # where the reader shows the edit

    nib.save(nib.Nifti1Image(np.ones((6, 7, 4, 2), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    img = read_images(tmp_path / "t.nii.gz")[0]
    assert "only 2-D images and 3-D volumes" in whole_object_problem(img)
    res = manipulate(img, make_mask(img.shape, rect=(1, 1, 3, 3)), "retouch", mode="noise")
    with pytest.raises(ValueError, match="back whole: a NIfTI of shape"):
        save_result(res, tmp_path / "bad", "t", all_frames=True)
    assert not (tmp_path / "bad").exists()
    assert save_result(res, tmp_path / "png", "t")["image"].suffix == ".png"  # without all_frames: the slice as PNG


@pytest.mark.parametrize("name", ["US1_UNCR.dcm", "SC_rgb.dcm", "examples_palette.dcm", "examples_ybr_color.dcm",
                                  "US1_J2KR.dcm"])
def test_colour_dicom_in_gives_colour_dicom_out(tmp_path, name):
    """Ultrasound and secondary captures are often colour (RGB, YBR, palette; raw or compressed): DICOM in stays DICOM
    out, in RGB, the unmasked pixels the colours the input shows (YBR decoded, palette applied); read back, it is
    the grey image the edit returned, and its mask has a DICOM SEG."""
    import highdicom as hd
    from pydicom.data import get_testdata_file

    from medfake.io import read_images
    from medfake.io.readers import dicom_colour

    f = get_testdata_file(name)
    img = read_images(f, frames=0)[0]
    h, w = img.shape
    res = manipulate(img, make_mask(img.shape, rect=(w // 4, h // 4, w // 2, h // 2), feather=2), "retouch")
    paths = save_result(res, tmp_path, "c")
    assert paths["image"].suffix == ".dcm" and res.record["output"]["format"] == "dicom"
    assert res.record["input"]["stored_source"] == "colour" and res.record["output"]["samples_per_pixel"] == 3
    ds = pydicom.dcmread(paths["image"])
    src = pydicom.dcmread(f)
    shown = src.pixel_array[0] if int(src.get("NumberOfFrames", 1) or 1) > 1 else src.pixel_array
    shown = dicom_colour(src, shown)
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated, ds.PlanarConfiguration) == \
        ("RGB", 3, 8, 0)
    assert "RedPaletteColorLookupTableData" not in ds and "RescaleSlope" not in ds
    assert ds.SOPClassUID == src.SOPClassUID and "MANIPULATED" in ds.DerivationDescription
    out = ds.pixel_array
    assert out.shape == (h, w, 3)
    assert np.array_equal(out[~res.mask], shown[~res.mask])
    np.testing.assert_allclose(read_image(paths["image"]).array, res.image.array, atol=1e-6)
    assert np.array_equal(hd.seg.segread(paths["mask_seg"]).pixel_array.astype(bool), res.mask)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_raster_in_gives_colour_png_out(tmp_path, mode):
    """An RGB/RGBA/palette/grey+alpha PNG comes out as colour PNG (palette as RGB, grey+alpha as RGBA): unmasked
    pixels those of the input, read back it is the grey image the edit returned (within PIL's integer luma)."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(1)
    rgb = (smooth_scan((70, 90), 3)[..., None] * [200, 150, 90] + rng.integers(0, 40, (70, 90, 3))).astype(np.uint8)
    im = PILImage.fromarray(rgb, "RGB")
    if mode == "RGBA":
        im = PILImage.fromarray(np.dstack([rgb, rng.integers(128, 256, (70, 90), dtype=np.uint8)]), "RGBA")
    elif mode == "P":
        im = im.convert("P")
    elif mode == "LA":
        im = im.convert("LA")
    im.save(tmp_path / "in.png")
    img = read_image(tmp_path / "in.png")
    for method in ("retouch", "copy-move"):
        res = manipulate(img, make_mask(img.shape, ellipse=(30, 30, 10, 8), feather=2), method)
        out = PILImage.open(save_result(res, tmp_path / method, "x")["image"])
        want = {"RGB": "RGB", "P": "RGB", "RGBA": "RGBA", "LA": "RGBA"}[mode]
        assert out.mode == want and out.size == (90, 70)
        src = np.asarray(PILImage.open(tmp_path / "in.png").convert(want))
        assert np.array_equal(np.asarray(out)[~res.mask], src[~res.mask])
        assert not np.array_equal(np.asarray(out)[res.mask], src[res.mask])
        np.testing.assert_allclose(read_image(out.filename).array, res.image.array, atol=1.0 / 255 + 1e-6)


def _sepia(grey: np.ndarray) -> np.ndarray:
    """A tinted ultrasound screen's colours for grey levels 0–255 (warm: R > G > B)."""
    return np.clip(np.stack([grey * 1.12 + 4, grey * 0.97, grey * 0.74], -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["png", "png-rgba", "dicom", "png-grey-rgb"])
def test_colour_edit_is_painted_in_the_tint_around_it(tmp_path, kind):
    """A tinted (sepia) ultrasound keeps its tint inside the edit: the masked pixels have the colour balance of the
    pixels around the mask (was: pure grey, a visible cue), and still read back as the grey image the edit returned;
    an image that is grey stored as RGB stays grey inside (R = G = B)."""
    from PIL import Image as PILImage
    from pydicom.data import get_testdata_file

    grey = np.clip(smooth_scan((96, 120), 5) * 230 + 10, 0, 255)
    rgb = _sepia(grey) if kind != "png-grey-rgb" else np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    if kind == "dicom":  # pydicom's RGB ultrasound, its pixels replaced by the tinted scan
        ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
        ds.Rows, ds.Columns = rgb.shape[:2]
        ds.PixelData = rgb.tobytes()
        path = tmp_path / "in.dcm"
        ds.save_as(path)
    else:
        im = PILImage.fromarray(rgb, "RGB")
        if kind == "png-rgba":
            im = PILImage.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
        path = tmp_path / "in.png"
        im.save(path)
    img = read_image(path)
    for method in ("retouch", "copy-move"):
        res = manipulate(img, make_mask(img.shape, ellipse=(60, 48, 16, 12), feather=2), method, seed=0)
        assert res.stored.ndim == 3 and np.array_equal(res.stored[~res.mask][:, :3], rgb[~res.mask])
        inside = res.stored[res.mask][:, :3].astype(np.float64)
        assert not np.array_equal(inside, rgb[res.mask])
        bright = inside[inside[:, 1] > 40]
        assert len(bright) > 50
        if kind == "png-grey-rgb":
            assert (inside[:, 0] == inside[:, 1]).all() and (inside[:, 1] == inside[:, 2]).all()
        else:  # the sepia balance on bright pixels: R/G ≈ 1.15, B/G ≈ 0.76 (grey would give 1 and 1)
            np.testing.assert_allclose(np.median(bright[:, 0] / bright[:, 1]), 1.12 / 0.97, atol=0.06)
            np.testing.assert_allclose(np.median(bright[:, 2] / bright[:, 1]), 0.74 / 0.97, atol=0.04)
        out = save_result(res, tmp_path / method, "t")["image"]
        np.testing.assert_allclose(read_image(out).array, res.image.array, atol=1.0 / 255 + 1e-6)


def test_colour_image_changed_in_memory_comes_out_grey(tmp_path):
    """Colours that no longer match the image (changed after reading) are not used: grey out, as before."""
    from pydicom.data import get_testdata_file

    img = read_image(get_testdata_file("SC_rgb.dcm"))
    img.array[:10] = 1.0 - img.array[:10]
    res = manipulate(img, make_mask(img.shape, rect=(40, 40, 60, 60)), "retouch")
    assert res.record["input"]["stored_source"] == "grey of colour" and res.stored.ndim == 2
    assert pydicom.dcmread(save_result(res, tmp_path, "g")["image"]).PhotometricInterpretation == "MONOCHROME2"


def test_dicom_out_has_its_mask_as_dicom_seg(tmp_path):
    """DICOM in: the mask also as a DICOM SEG over the written image (record lists it), also for a frame of a minimal
    Enhanced MR without functional groups (referenced by its true class); where highdicom cannot describe the image
    (a plane position without an orientation) the sidecar says why and the PNG mask is still there."""
    import highdicom as hd
    from pydicom.data import get_testdata_file

    img = read_image(get_testdata_file("CT_small.dcm"))
    res = manipulate(img, make_mask(img.shape, ellipse=(60, 60, 20, 12)), "copy-move")
    paths = save_result(res, tmp_path, "ct")
    rec = json.loads(paths["sidecar"].read_text())
    seg = hd.seg.segread(paths["mask_seg"])
    assert rec["files"]["mask_seg"] == "ct_mask.dcm" and "mask_seg_skipped" not in rec
    assert np.array_equal(seg.pixel_array.astype(bool), res.mask)
    image = pydicom.dcmread(paths["image"])
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == image.SOPInstanceUID
    img = read_image(get_testdata_file("emri_small.dcm"), frames=0)
    res = manipulate(img, make_mask(img.shape, rect=(10, 10, 30, 30)), "retouch")
    paths = save_result(res, tmp_path, "mr")
    seg, image = hd.seg.segread(paths["mask_seg"]), pydicom.dcmread(paths["image"])
    assert np.array_equal(seg.pixel_array.astype(bool), res.mask)
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPClassUID == image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR, as written
    odd = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del odd.ImageOrientationPatient  # a position in space, but no orientation: no geometry to describe
    odd.save_as(tmp_path / "odd.dcm")
    img = read_image(tmp_path / "odd.dcm")
    paths = save_result(manipulate(img, make_mask(img.shape, rect=(10, 10, 30, 30)), "retouch"), tmp_path, "odd")
    rec = json.loads(paths["sidecar"].read_text())
    assert "mask_seg" not in paths and "DICOM SEG" in rec["mask_seg_skipped"] and paths["mask"].is_file()
    from medfake.io import Image

    png = save_result(manipulate(Image(smooth_scan((40, 40), 3)), make_mask((40, 40), rect=(5, 5, 20, 20)), "retouch"),
                      tmp_path, "p")
    assert "mask_seg" not in png and "mask_seg_skipped" not in json.loads(png["sidecar"].read_text())


@pytest.mark.parametrize("name, what", [
    ("MR_small_bigendian.dcm", "retired Explicit VR Big Endian"),
    ("emri_small_big_endian.dcm", "a big-endian Enhanced MR frame"),
    ("SC_rgb_jpeg.dcm", "a file that declares explicit VR and is implicit VR"),
])
@pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR")  # what that file is
def test_dicom_in_any_byte_order_or_vr_gives_dicom_out(tmp_path, name, what):
    """The derived copy is written as Explicit VR Little Endian whatever the source was read as: every element
    decoded first (big-endian values swapped), the unmasked pixels those of the source, and its SEG."""
    from pydicom.data import get_testdata_file

    f = get_testdata_file(name, download=False)
    if f is None:
        pytest.skip(f"{name} ships with pydicom-data, which is not installed")
    img = read_image(f, frames=0)
    h, w = img.shape
    res = manipulate(img, make_mask(img.shape, rect=(w // 4, h // 4, w // 2, h // 2)), "retouch")
    paths = save_result(res, tmp_path, "out")
    out, src = pydicom.dcmread(paths["image"]), pydicom.dcmread(f)
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian, what
    before = src.pixel_array if int(src.get("NumberOfFrames", 1) or 1) == 1 else src.pixel_array[0]
    if before.ndim == 2:
        assert np.array_equal(out.pixel_array[~res.mask], before[~res.mask]), what
    assert np.array_equal(out.pixel_array[~res.mask], res.stored[~res.mask])
    assert out.StudyInstanceUID == src.get("StudyInstanceUID", out.StudyInstanceUID) and "mask_seg" in paths


def test_an_uploads_name_is_never_opened(tmp_path, monkeypatch):
    """Bytes read under a name (the service's uploads) carry no file: even when a file of that name exists where the
    process runs, the edit does not open it (a client must not make the server open its files): its sidecar hashes
    the upload's bytes, and it keeps the upload's own stored values."""
    import shutil

    from pydicom.data import get_testdata_file

    from medfake.io import read_images

    f = get_testdata_file("CT_small.dcm")
    shutil.copy(f, tmp_path / "ct.dcm")
    monkeypatch.chdir(tmp_path)
    on_disk = manipulate(read_image("ct.dcm"), make_mask((128, 128), rect=(10, 10, 40, 40)), "retouch")
    upload = read_images("ct.dcm", data=open(f, "rb").read(), frames=0)[0]
    res = manipulate(upload, make_mask(upload.shape, rect=(10, 10, 40, 40)), "retouch")
    assert on_disk.record["input"]["stored_source"] == "file" and len(on_disk.record["input"]["sha256"]) == 64
    assert res.record["input"]["stored_source"] == "file"
    assert res.record["input"]["sha256"] == on_disk.record["input"]["sha256"]  # the upload's bytes': the same file
    assert np.array_equal(res.stored, on_disk.stored)
    (tmp_path / "ct.dcm").write_bytes(b"not a DICOM any more")  # what the name points at plays no part
    again = manipulate(upload, make_mask(upload.shape, rect=(10, 10, 40, 40)), "retouch")
    assert np.array_equal(again.stored, res.stored)
    twice = manipulate(res.image, make_mask(upload.shape, rect=(60, 60, 90, 90)), "retouch")  # an edit of an edit
    assert twice.record["input"]["stored_source"] == "file"  # starts from the first edit's stored values
    assert np.array_equal(twice.stored[~twice.mask], res.stored[~twice.mask])


def test_slab_masks_are_an_ellipsoids_cross_sections():
    from medfake.manipulation import ManipulationError, slab_masks

    m = make_mask((64, 64), ellipse=(30, 28, 12, 9))
    got = dict(slab_masks(m, 2))
    assert sorted(got) == [-2, -1, 0, 1, 2] and got[0] is m
    area = m.sum()
    for d in (1, 2):  # area scales as s² = 1 − (d / 3)²
        assert got[d].sum() == got[-d].sum()
        assert abs(got[d].sum() / area - (1 - (d / 3) ** 2)) < 0.08
        ys, xs = np.nonzero(got[d])
        assert abs(ys.mean() - 28) < 1 and abs(xs.mean() - 30) < 1  # about the same centre
    alpha = make_mask((64, 64), ellipse=(30, 28, 12, 9), feather=2)
    soft = dict(slab_masks(alpha, 1))
    assert soft[1].dtype == alpha.dtype and 0 < soft[1].max() <= 1
    assert [d for d, _ in slab_masks(make_mask((64, 64), rect=(10, 10, 12, 12)), 8)][0] > -8  # tiny ends vanish
    with pytest.raises(ManipulationError, match="depth must be"):
        slab_masks(m, -1)
    with pytest.raises(ManipulationError, match="empty mask"):
        slab_masks(np.zeros((8, 8), bool), 1)


def test_slab_written_into_one_enhanced_ct_with_its_seg(tmp_path):
    """Two frames of an Enhanced CT edited and written into one object: both replaced, the SEG over both frames;
    a slab from another file, a frame edited twice, or a slab without all_frames is refused before writing."""
    import highdicom as hd
    from pydicom.data import get_testdata_file

    from medfake.io import read_images

    f = get_testdata_file("eCT_Supplemental.dcm")
    frames = read_images(f)
    res = [manipulate(im, make_mask(im.shape, rect=(100 + 20 * k, 100, 200, 200)), "retouch", seed=k)
           for k, im in enumerate(frames)]
    paths = save_result(res[0], tmp_path / "o", "ct", all_frames=True, slab=[res[1]])
    src, ds = pydicom.dcmread(f), pydicom.dcmread(paths["image"])
    for k in (0, 1):
        assert np.array_equal(ds.pixel_array[k][~res[k].mask], src.pixel_array[k][~res[k].mask])
        assert np.array_equal(ds.pixel_array[k][res[k].mask], res[k].stored[res[k].mask])
    seg = hd.seg.segread(paths["mask_seg"])
    refs = sorted(int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                  for item in seg.PerFrameFunctionalGroupsSequence)
    assert refs == [1, 2] and "frame_number=1,2 of 2" in ds.DerivationDescription
    other = manipulate(read_images(f)[1], res[1].mask, "retouch")  # the same file read again: another object
    for slab, kw, words in [([other], {"all_frames": True}, "same file"), ([res[0]], {"all_frames": True},
                                                                             "each frame once"),
                            ([res[1]], {}, "need all_frames")]:
        with pytest.raises(ValueError, match=words):
            save_result(res[0], tmp_path / "bad", "ct", slab=slab, **kw)
    assert not (tmp_path / "bad").exists()
