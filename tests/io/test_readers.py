from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from medfake.io import ImageReadError, ImageTooLargeError, iter_image_files, parse_window, read_image, read_images


def dcm(name: str) -> str:
    return get_testdata_file(name, download=False)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("CT_small.dcm", (128, 128)),  # uncompressed, signed, rescale slope/intercept
        ("MR_small.dcm", (64, 64)),
        ("MR_small_RLE.dcm", (64, 64)),  # RLE lossless
        ("JPEG2000.dcm", (1024, 256)),  # JPEG 2000
        ("JPGExtended.dcm", (1024, 256)),  # JPEG extended 12-bit
        ("SC_rgb_jpeg_dcmtk.dcm", (100, 100)),  # JPEG baseline, YBR_FULL colour
        ("US1_J2KR.dcm", (480, 640)),  # JPEG 2000 lossless, colour ultrasound
        ("MR_small_jpeg_ls_lossless.dcm", (64, 64)),  # JPEG-LS
    ],
)
def test_dicom_transfer_syntaxes(name, shape):
    img = read_image(dcm(name))
    assert img.shape == shape
    assert img.array.dtype == np.float32
    assert 0.0 <= img.array.min() < img.array.max() <= 1.0
    assert img.meta.format == "dicom" and img.meta.dicom is not None
    assert "PixelData" not in img.meta.dicom  # the meta copy never carries the pixels twice


def test_ct_rescale_and_windows():
    raw = read_image(dcm("CT_small.dcm"))
    assert raw.meta.extra["rescale_intercept"] == -1024.0
    lung = read_image(dcm("CT_small.dcm"), window="lung")
    bone = read_image(dcm("CT_small.dcm"), window="bone")
    explicit = read_image(dcm("CT_small.dcm"), window="40,400")
    assert lung.meta.window == (-600.0, 1500.0)
    assert explicit.meta.window == (40.0, 400.0)
    assert not np.allclose(lung.array, bone.array)
    # HU values: with the soft-tissue window, pixels of HU <= -160 are black
    import pydicom

    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.all(explicit.array[hu <= -160] == 0.0)
    assert np.all(explicit.array[hu >= 240] == 1.0)


def test_file_window_matches_dicom_voi_function():
    """MR_small.dcm carries a window (600/1600): our display equals pydicom's apply_windowing (DICOM's linear VOI
    function, what a viewer shows), rescaled from its signed 16-bit output range to [0, 1]."""
    import pydicom
    from pydicom.pixels import apply_windowing

    ds = pydicom.dcmread(dcm("MR_small.dcm"))
    img = read_image(dcm("MR_small.dcm"))
    assert img.meta.window == (600.0, 1600.0)
    viewer = (apply_windowing(ds.pixel_array.astype(np.float64), ds) + 32768.0) / 65535.0
    np.testing.assert_allclose(img.array, viewer, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    import pydicom

    ds = pydicom.dcmread(dcm("MR_small.dcm"))
    a = read_image(dcm("MR_small.dcm"), window="600,1200").array
    ds.PhotometricInterpretation = "MONOCHROME1"
    p = tmp_path / "m1.dcm"
    ds.save_as(p)
    b = read_image(p, window="600,1200").array
    np.testing.assert_allclose(a, 1.0 - b, atol=1e-6)


def test_multiframe_one_image_per_frame():
    imgs = read_images(dcm("emri_small.dcm"))
    assert len(imgs) == 10
    assert [i.meta.frame for i in imgs] == list(range(10))
    assert imgs[3].name.endswith("#3")
    assert len(read_images(dcm("emri_small.dcm"), frames=2)) == 1


def test_rgb_dicom_becomes_grey():
    img = read_image(dcm("SC_rgb.dcm"))
    assert img.array.ndim == 2 and img.meta.colour.shape == (100, 100, 3) and img.meta.colour.dtype == np.uint8
    frames = read_images(dcm("SC_rgb_rle_2frame.dcm"))
    assert len(frames) == 2 and frames[0].shape == (100, 100)
    assert read_image(dcm("CT_small.dcm")).meta.colour is None


def test_palette_dicom_is_read_as_the_colours_it_shows():
    """A PALETTE COLOR image's pixels are indices into its palette: it is read as the luminance of the colours a
    viewer shows (pydicom's apply_color_lut, 16-bit entries by their high byte), not as the indices."""
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(dcm("examples_palette.dcm"))
    img = read_image(dcm("examples_palette.dcm"))
    rgb = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)
    lum = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    lo, hi = img.meta.value_range
    np.testing.assert_allclose(img.array, (lum - lo) / (hi - lo), atol=1e-5)
    assert np.array_equal(img.meta.colour, rgb)
    indices = ds.pixel_array / ds.pixel_array.max()
    assert np.abs(img.array - indices).mean() > 0.05  # the indices are another picture
    upload = read_images("x.dcm", data=Path(dcm("examples_palette.dcm")).read_bytes())[0]
    assert img.meta.on_disk and not upload.meta.on_disk  # bytes under a name (an upload): no file to re-read


@pytest.mark.parametrize("mode, bits", [("L", 8), ("I;16", 16), ("RGB", 8), ("RGBA", 8)])
def test_raster_modes(tmp_path, mode, bits):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        arr = rng.integers(0, 65536, (40, 30), dtype=np.uint16)
        im = PILImage.fromarray(arr)
    elif mode == "L":
        arr = rng.integers(0, 256, (40, 30), dtype=np.uint8)
        im = PILImage.fromarray(arr, mode="L")
    else:
        arr = rng.integers(0, 256, (40, 30, len(mode)), dtype=np.uint8)
        im = PILImage.fromarray(arr, mode=mode)
    p = tmp_path / "x.png"
    im.save(p)
    img = read_image(p)
    assert img.shape == (40, 30)
    assert img.meta.bits == bits
    if mode == "I;16":
        np.testing.assert_allclose(img.array, arr / 65535.0, atol=1e-6)
    if mode == "L":
        np.testing.assert_allclose(img.array, arr / 255.0, atol=1e-6)
    assert (img.meta.colour is None) == (mode in ("L", "I;16"))
    if mode in ("RGB", "RGBA"):
        assert np.array_equal(img.meta.colour, arr)  # kept for colour-out edits


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "BMP"])
def test_other_raster_formats(tmp_path, fmt):
    p = tmp_path / f"x.{fmt.lower()}"
    PILImage.fromarray(np.full((20, 24), 100, np.uint8), mode="L").save(p, format=fmt)
    assert read_image(p).shape == (20, 24)


def test_nifti_slices(tmp_path):
    import nibabel as nib

    vol = np.arange(10 * 12 * 7, dtype=np.int16).reshape(10, 12, 7)
    p = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.9, 2.5, 1])), p)
    mid = read_image(p)
    assert mid.meta.extra == {"axis": 2, "slice": 3}
    assert mid.shape == (12, 10)  # rotated for display
    assert mid.meta.pixel_spacing == pytest.approx((0.8, 0.9))
    assert len(read_images(p, slice_index="all")) == 7
    assert read_images(p, axis=0, slice_index=2)[0].shape == (7, 12)
    with pytest.raises(ImageReadError, match="out of range"):
        read_images(p, slice_index=99)


def test_nifti_orientation_follows_the_affine(tmp_path):
    """A slice is shown as viewers show it whatever the file's voxel order: the same anatomy stored RAS and stored
    LPS (as DICOM/NRRD converters write it) reads to the same picture, axial with anterior up and the patient's
    right on the left, coronal with superior up; the slice index counts in that orientation (inferior → superior)."""
    import nibabel as nib

    vol = np.zeros((10, 12, 7), np.float32)  # x: left → right, y: posterior → anterior, z: inferior → superior
    vol[9, 11, 2] = 1.0  # right, anterior, slice 2
    vol[0, 0, 2] = 0.5  # left, posterior
    vol[4, 5, 6] = 0.25  # the top slice
    ras, lps = tmp_path / "ras.nii.gz", tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), ras)
    nib.save(nib.Nifti1Image(vol[::-1, ::-1].copy(), np.diag([-1.0, -1.0, 1.0, 1.0])), lps)
    for p in (ras, lps):
        ax = read_images(p, slice_index=2)[0].array
        assert ax.shape == (12, 10) and ax[0, 0] == 1.0 and ax[-1, -1] == 0.5, p.name  # anterior-right top left
        assert read_images(p, slice_index=6)[0].array.max() == 0.25
        cor = read_images(p, axis=1, slice_index=11)[0].array
        assert cor.shape == (7, 10) and cor[7 - 1 - 2, 0] == 1.0, p.name  # slice 2 of 7 from the bottom, right left
    assert np.array_equal(read_images(ras, slice_index="all")[2].array, read_images(lps, slice_index="all")[2].array)


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="bomb.png.*(exceeds|bomb)"):
        read_image(p)


def test_dicom_bomb_refused(tmp_path):
    import pydicom

    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    ds.Rows = ds.Columns = 60000
    p = tmp_path / "big.dcm"
    ds.save_as(p)
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        read_image(p)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"hello world, not an image at all", "unsupported"),
        (None, "cannot decode|not a readable|truncated"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    if content is None:  # truncated PNG
        good = tmp_path / "good.png"
        PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
        content = good.read_bytes()[:200]
        p = tmp_path / "trunc.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError) as e:
        read_image(p)
    assert str(p) in str(e.value)
    assert e.match(reason)


def test_truncated_dicom(tmp_path):
    data = open(dcm("CT_small.dcm"), "rb").read()
    p = tmp_path / "t.dcm"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.dcm"):
        read_image(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_nan_float_tiff(tmp_path):
    a = np.ones((8, 8), np.float32)
    a[2, 2] = np.nan
    p = tmp_path / "nan.tif"
    PILImage.fromarray(a, mode="F").save(p)
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(p)


def test_window_parsing():
    assert parse_window("brain") == (40.0, 80.0)
    assert parse_window("50,350") == (50.0, 350.0)
    with pytest.raises(ValueError, match="preset"):
        parse_window("bogus")
    with pytest.raises(ValueError, match="width"):
        parse_window((0, -5))


def test_gzip_nifti_named_plainly(tmp_path):
    import nibabel as nib

    p = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.float32), np.eye(4)), p)
    gz = tmp_path / "w.nii.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert read_image(gz).shape == (4, 4)


@pytest.mark.parametrize("version", [1, 2])
def test_gzip_nifti_with_header_extensions(tmp_path, version):
    """dcmstack and AFNI write NIfTI header extensions (JSON, XML) that run past the fixed header: a .nii.gz with
    one reads (its size check parses the fixed header alone), and every slice is as in the uncompressed file."""
    import nibabel as nib

    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(np.arange(8 * 9 * 5, dtype=np.int16).reshape(8, 9, 5), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"{" + b"x" * 3000 + b"}"))
    nib.save(img, tmp_path / "e.nii.gz")
    nib.save(img, tmp_path / "e.nii")
    a, b = read_images(tmp_path / "e.nii.gz", slice_index="all"), read_images(tmp_path / "e.nii", slice_index="all")
    assert len(a) == len(b) == 5 and all(np.array_equal(x.array, y.array) for x, y in zip(a, b))


def test_dicom_segmentation_and_dose_are_not_images():
    """pydicom's SEG (liver.dcm) and RT Dose have pixel data but are no picture: one clear error each, so a folder
    run lists them as errors instead of scoring a label map (the SEG masks `medfake manipulate` writes sit there)."""
    for name, what in (("liver.dcm", "Segmentation"), ("rtdose.dcm", "RT Dose")):
        with pytest.raises(ImageReadError, match=f"a DICOM {what}.*not an image"):
            read_image(dcm(name))


def test_folder_walk_finds_dicom_without_extension(tmp_path):
    """PACS exports and DICOM media name files IM000001 or by UID: a folder walk finds them by their magic bytes,
    leaves out the DICOMDIR index and files that are not DICOM, and keeps the extension rules for the rest."""
    import shutil

    from medfake.io import iter_image_files

    d = tmp_path / "export" / "SE1"
    d.mkdir(parents=True)
    shutil.copy(dcm("CT_small.dcm"), d / "IM000001")
    shutil.copy(dcm("MR_small.dcm"), d / "1.2.840.113619.2.55.3.4")
    shutil.copy(dcm("DICOMDIR"), tmp_path / "export" / "DICOMDIR")
    (d / "README").write_text("not an image")
    (d / "notes.txt").write_text("neither")
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(d / "shot.png")
    found = [p.name for p in iter_image_files([tmp_path / "export"])]
    assert found == ["1.2.840.113619.2.55.3.4", "IM000001", "shot.png"]
    assert read_image(d / "IM000001").meta.format == "dicom"


def test_folder_walk_leaves_out_what_medfake_wrote_beside_images(tmp_path):
    """The masks a manipulation sidecar lists and the maps a heat-map index lists are by-products, not images: a
    folder walk leaves them out (and reports them in `left_out`). Only those JSON files decide: a user's own
    `*_mask.png`, a JSON of another kind, a broken or oversized JSON and a sidecar naming a path outside the folder
    change nothing, and a file named on its own is always yielded."""
    import json

    from medfake.io import iter_image_files

    d = tmp_path / "out"
    (d / "heat").mkdir(parents=True)
    for name in ("scan_copy-move.png", "scan_copy-move_mask.png", "mine_mask.png", "other.png",
                 "heat/00000_scan_heatmap.png", "heat/00000_scan_mask.png"):
        PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(d / name)
    (d / "scan_copy-move.json").write_text(json.dumps({"kind": "manipulated", "method": "copy-move", "files": {
        "image": "scan_copy-move.png", "mask": "scan_copy-move_mask.png", "mask_seg": "../other.png"}}))
    (d / "heat" / "index.json").write_text(json.dumps({"kind": "detector-maps", "files": {
        "heatmap": ["00000_scan_heatmap.png"], "mask": ["00000_scan_mask.png"], "mask_seg": []}}))
    (d / "config.json").write_text(json.dumps({"kind": "settings", "files": {"mask": "other.png"}}))
    (d / "broken.json").write_text("{not json")
    (d / "big.json").write_text(json.dumps({"kind": "manipulated", "files": {"mask": "other.png"}, "pad": "x" * 10**6}))
    left: list = []
    found = [p.relative_to(d).as_posix() for p in iter_image_files([d], left)]
    assert found == ["mine_mask.png", "other.png", "scan_copy-move.png"]
    assert sorted(p.relative_to(d).as_posix() for p in left) == [
        "heat/00000_scan_heatmap.png", "heat/00000_scan_mask.png", "scan_copy-move_mask.png"]
    assert list(iter_image_files([d / "scan_copy-move_mask.png"])) == [d / "scan_copy-move_mask.png"]


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2"])
def test_nrrd_reads_like_the_same_nifti(tmp_path, encoding):
    """An NRRD (3D Slicer's format, written here by pynrrd) in LPS space reads to the same slices as the NIfTI of
    the same anatomy: orientation from its space directions, spacing, every slice; a 2-D NRRD is one image."""
    import nibabel as nib
    import nrrd

    vol = np.random.default_rng(0).integers(-1000, 2000, (10, 12, 7)).astype(np.int16)  # RAS voxel order
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.9, 2.5, 1])), tmp_path / "v.nii.gz")
    lps = vol[::-1, ::-1].copy()  # the same anatomy stored as DICOM-derived tools store it
    p = tmp_path / "v.nrrd"
    nrrd.write(str(p), lps, {"space": "left-posterior-superior", "encoding": encoding,
                             "space directions": np.diag([0.8, 0.9, 2.5]), "space origin": np.zeros(3)})
    a, b = read_images(p, slice_index="all"), read_images(tmp_path / "v.nii.gz", slice_index="all")
    assert len(a) == 7 and a[0].meta.format == "nrrd"
    for x, y in zip(a, b):
        assert np.array_equal(x.array, y.array)
    assert a[3].meta.pixel_spacing == pytest.approx((0.8, 0.9))
    assert [p.name for p in iter_image_files([tmp_path])] == ["v.nii.gz", "v.nrrd"]
    nrrd.write(str(tmp_path / "flat.nrrd"), vol[:, :, 0].copy())
    assert read_image(tmp_path / "flat.nrrd").shape == (12, 10)


def test_nrrd_bad_inputs_are_clear_errors(tmp_path):
    import nrrd

    nrrd.write(str(tmp_path / "d.nhdr"), np.zeros((4, 4, 2), np.uint8), detached_header=True)
    with pytest.raises(ImageReadError, match="detached NRRD header"):
        read_image(tmp_path / "d.nhdr")
    (tmp_path / "bad.nrrd").write_bytes(b"NRRD0004\ntype: int16\nsizes: 4 4\n")  # no dimension/encoding, no data
    with pytest.raises(ImageReadError, match="NRRD"):
        read_image(tmp_path / "bad.nrrd")
    (tmp_path / "big.nrrd").write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 5000 5000 5000\n"
                                        b"encoding: raw\n\n\0\0\0\0")
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        read_image(tmp_path / "big.nrrd")
    nrrd.write(str(tmp_path / "cut.nrrd"), np.ones((16, 16, 4), np.int16), {"encoding": "gzip"})
    data = (tmp_path / "cut.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[:-20])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image(tmp_path / "cut.nrrd")


def _sitk_volume():
    """A 3-D SimpleITK image with a non-trivial direction (axes swapped, z flipped), spacing and origin."""
    import SimpleITK as sitk

    arr = np.random.default_rng(1).integers(-1000, 2000, (7, 20, 30)).astype(np.int16)  # z, y, x
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((10.0, -5.0, 3.0))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    return img


@pytest.mark.parametrize("name, compress", [("v.mha", False), ("v.mha", True), ("v.mhd", False)])
def test_metaimage_reads_like_the_same_nifti(tmp_path, name, compress):
    """A MetaImage (.mha inline, zlib-compressed, or .mhd + .raw: LUNA16's format; written here by SimpleITK) reads
    to the same slices as the NIfTI SimpleITK writes of the same image, on every axis: orientation from its
    direction cosines in LPS, spacing, every slice. A 2-D one is one image; RGB becomes luminance."""
    import SimpleITK as sitk

    img = _sitk_volume()
    sitk.WriteImage(img, str(tmp_path / name), useCompression=compress)
    sitk.WriteImage(img, str(tmp_path / "v.nii.gz"))
    counts = []
    for axis in (0, 1, 2):
        a = read_images(tmp_path / name, slice_index="all", axis=axis)
        b = read_images(tmp_path / "v.nii.gz", slice_index="all", axis=axis)
        assert len(a) == len(b) and a[0].meta.format == "metaimage"
        counts.append(len(a))
        for x, y in zip(a, b):
            assert np.array_equal(x.array, y.array)
            assert x.meta.pixel_spacing == pytest.approx(y.meta.pixel_spacing)
    assert counts == [20, 30, 7]  # RAS+ after the direction: the stored y axis runs left-right, x front-back
    assert read_image(tmp_path / name).meta.original_dtype == "int16"
    found = [p.name for p in iter_image_files([tmp_path])]
    assert name in found and "v.raw" not in found  # an .mhd's data file is not an image of its own
    flat = sitk.GetImageFromArray(np.arange(120, dtype=np.float32).reshape(10, 12))
    sitk.WriteImage(flat, str(tmp_path / "flat.mha"))
    assert read_image(tmp_path / "flat.mha").shape == (10, 12)
    rgb = np.random.default_rng(2).integers(0, 256, (10, 12, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.mha"))
    grey = read_image(tmp_path / "rgb.mha").array
    expect = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert grey.shape == (10, 12) and np.corrcoef(grey.ravel(), expect.ravel())[0, 1] > 0.999


def test_metaimage_uploads_and_data_files_are_checked_before_itk_reads(tmp_path):
    """An upload (bytes) must be one .mha; on disk, an .mhd's data file must be a plain name beside it (a header
    can name any path, such as a server's files); declared sizes over the limit, truncations, NaN and junk are
    clear errors, and a compressed stream far longer than its declared size reads only what the header declares."""
    import SimpleITK as sitk

    from medfake.io import UnsupportedFormatError

    img = _sitk_volume()
    sitk.WriteImage(img, str(tmp_path / "v.mha"))
    sitk.WriteImage(img, str(tmp_path / "v.mhd"))
    up = read_images("upload.mha", data=(tmp_path / "v.mha").read_bytes())
    assert up[0].meta.format == "metaimage" and not up[0].meta.on_disk
    with pytest.raises(UnsupportedFormatError, match="detached MetaImage header"):
        read_images("v.mhd", data=(tmp_path / "v.mhd").read_bytes())
    header = (tmp_path / "v.mhd").read_text()
    secret = tmp_path / "sub" / "secret.raw"
    secret.parent.mkdir()
    secret.write_bytes((tmp_path / "v.raw").read_bytes())
    for i, where in enumerate((str(secret), "sub/secret.raw", "../v.raw", "LIST", "slice%03d.raw")):
        (tmp_path / f"e{i}.mhd").write_text(header.replace("ElementDataFile = v.raw", f"ElementDataFile = {where}"))
        with pytest.raises(UnsupportedFormatError, match="not a plain file name"):
            read_image(tmp_path / f"e{i}.mhd")
    (tmp_path / "gone.mhd").write_text(header.replace("v.raw", "gone.raw"))
    with pytest.raises(ImageReadError, match="not beside it"):
        read_image(tmp_path / "gone.mhd")
    (tmp_path / "short.raw").write_bytes((tmp_path / "v.raw").read_bytes()[:-10])
    (tmp_path / "short.mhd").write_text(header.replace("v.raw", "short.raw"))
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "short.mhd")
    data = (tmp_path / "v.mha").read_bytes()
    with pytest.raises(ImageReadError, match="truncated: 8300 of the 8400 bytes"):
        read_images("cut.mha", data=data[:-100])
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        read_images("big.mha", data=data.replace(b"DimSize = 30 20 7", b"DimSize = 5000 5000 5000"))
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        read_images("v.mha", data=data, max_pixels=4000)
    with pytest.raises(ImageReadError, match="not a MetaImage header"):
        read_images("junk.mha", data=b"hello world\x00\x01")
    with pytest.raises(ImageReadError, match="NDims"):
        read_images("junk.mha", data=b"ObjectType = Image\nNDims = 7\nElementDataFile = LOCAL\n")
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[1, np.nan], [2, 3]], np.float32)), str(tmp_path / "nan.mha"))
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(tmp_path / "nan.mha")
    sitk.WriteImage(img, str(tmp_path / "c.mha"), useCompression=True)
    comp = (tmp_path / "c.mha").read_bytes()
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_images("c.mha", data=comp[:-50])
    head = (b"ObjectType = Image\nNDims = 2\nDimSize = 8 8\nElementType = MET_UCHAR\nCompressedData = True\n")
    bomb = zlib.compress(bytes(50_000_000), 1)
    out = read_images("bomb.mha", data=head + b"CompressedDataSize = %d\nElementDataFile = LOCAL\n" % len(bomb) + bomb)
    assert out[0].shape == (8, 8)  # SimpleITK inflates the 64 declared bytes, not the 50 MB behind them


def test_compressed_volumes_inflate_no_further_than_their_declared_size(tmp_path):
    """A .nii.gz or gzip NRRD whose stream inflates far past what its header declares (a decompression bomb that
    fits an upload: 50 MB of zeros compress to 50 kB) is refused without inflating it: peak memory stays small."""
    import tracemalloc

    import nibabel as nib

    hdr = nib.Nifti1Image(np.zeros((8, 8, 1), np.uint8), np.eye(4))
    raw = hdr.to_bytes() + bytes(50_000_000)  # a valid 64-voxel header, then 50 MB nobody asked for
    (tmp_path / "bomb.nii.gz").write_bytes(gzip.compress(raw, 1))
    nrrd_bomb = (b"NRRD0004\ntype: uint8\ndimension: 2\nsizes: 8 8\nencoding: gzip\n\n"
                 + gzip.compress(bytes(50_000_000), 1))
    (tmp_path / "bomb.nrrd").write_bytes(nrrd_bomb)
    for name in ("bomb.nii.gz", "bomb.nrrd"):
        tracemalloc.start()
        with pytest.raises(ImageTooLargeError, match="decompression bomb"):
            read_image(tmp_path / name)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 5_000_000, (name, peak)
    # a declared size over the pixel limit is refused from the header alone
    big = nib.Nifti1Image(np.zeros((2, 2, 1), np.uint8), np.eye(4))
    big.header.set_data_shape((9000, 9000, 1))
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(big.header.binaryblock + b"\0" * 4))
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        read_image(tmp_path / "huge.nii.gz")


def test_siemens_mosaic_is_read_as_its_slices(siemens_mosaic):
    p = siemens_mosaic
    every = read_images(p, slice_index="all")
    assert len(every) == 48  # the grid's last cell (49th) holds no slice
    assert all(im.shape == (128, 128) and im.meta.original_shape == (128, 128) for im in every)
    assert [im.meta.frame for im in every] == list(range(48))
    # one range for the whole volume (0 .. 48), so slice k keeps its own level
    levels = [float(im.array.mean()) for im in every]
    assert levels == pytest.approx([(k + 1) / 48 for k in range(48)], abs=1e-6)
    assert all(float(np.ptp(im.array)) == 0 for im in every)
    mid = read_images(p)  # the default, as for a NIfTI volume: the middle slice, no frame number
    assert len(mid) == 1 and mid[0].meta.frame is None and mid[0].meta.extra["mosaic"] == {"slices": 48, "slice": 24}
    assert float(mid[0].array.mean()) == pytest.approx(25 / 48)
    assert float(read_images(p, slice_index=5)[0].array.mean()) == pytest.approx(6 / 48)
    with pytest.raises(ImageReadError, match="out of range"):
        read_images(p, slice_index=48)
    whole = read_images(p, mosaic=False)  # what manipulation reads: the picture as stored
    assert len(whole) == 1 and whole[0].shape == (896, 896) and "mosaic" not in whole[0].meta.extra


def test_mosaic_that_does_not_tile_is_read_as_stored(tmp_path):
    import nibabel

    src = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "0.dcm"  # 48 slices declared, 256 px cropped
    if not src.is_file():
        pytest.skip("nibabel's mosaic test file is not installed")
    imgs = read_images(src, slice_index="all")
    assert len(imgs) == 1 and imgs[0].shape == (256, 256) and "mosaic" not in imgs[0].meta.extra


def test_mosaic_type_without_siemens_header_is_one_picture(tmp_path):
    import pydicom

    ds = pydicom.dcmread(dcm("MR_small.dcm"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]  # says MOSAIC, but no CSA header gives a count
    p = tmp_path / "m.dcm"
    ds.save_as(p)
    assert [im.shape for im in read_images(p, slice_index="all")] == [(64, 64)]
