from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_windowing

from medfake.io import Image, Meta, Provenance, native_stored_values, read_image, write_dicom, write_png


def test_png_16bit_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    u16 = rng.integers(0, 65536, (33, 47), dtype=np.uint16)
    img = Image(u16 / 65535.0)
    p = write_png(img, tmp_path / "a.png", bits=16)
    back = read_image(p)
    assert back.meta.bits == 16
    np.testing.assert_array_equal(np.round(back.array * 65535).astype(np.uint16), u16)


def test_png_8bit_round_trip(tmp_path):
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    p = write_png(Image(u8 / 255.0), tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(p).to_uint8(), u8)


@pytest.mark.parametrize("bits", [8, 16])
def test_secondary_capture_carries_provenance(tmp_path, bits):
    img = Image(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64), Meta(modality="brain_mri", label="glioma"))
    prov = Provenance("synthetic", "ddpm", "ddpm-test", {"sampler": "ddim"})
    p = write_dicom(img, tmp_path / "s.dcm", prov, bits=bits)
    ds = pydicom.dcmread(p)
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in ds.DerivationDescription and "ddpm-test" in ds.DerivationDescription
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.BitsAllocated == bits
    back = read_image(p)
    assert back.shape == (64, 64)
    top = 2**bits - 1
    np.testing.assert_allclose(back.array, np.round(img.array * top) / top, atol=1.5 / top)
    # two writes → distinct UIDs
    ds2 = pydicom.dcmread(write_dicom(img, tmp_path / "t.dcm", prov))
    assert ds2.SOPInstanceUID != ds.SOPInstanceUID and ds2.SeriesInstanceUID != ds.SeriesInstanceUID


@pytest.mark.parametrize("bits", [8, 16])
def test_secondary_capture_reads_back_like_its_png(tmp_path, bits):
    """An image that does not span 0..1 is not stretched on reading: the DICOM and the PNG give the same pixels, in
    our reader and under pydicom's implementation of DICOM windowing (what a viewer shows)."""
    img = Image(np.linspace(0.1, 0.7, 64 * 64, dtype=np.float32).reshape(64, 64), Meta(modality="lung_ct"))
    path = write_dicom(img, tmp_path / "s.dcm", Provenance("synthetic", "ddpm", "ddpm-test", {}), bits=bits)
    d = read_image(path)
    png = read_image(write_png(img, tmp_path / "s.png", bits=bits))
    assert d.meta.window == (2 ** (bits - 1), 2**bits)
    np.testing.assert_allclose(d.array, png.array, atol=1e-6)
    ds = pydicom.dcmread(path)
    viewer = apply_windowing(ds.pixel_array.astype(np.float64), ds) / (2**bits - 1)  # unsigned: y in 0..2^bits − 1
    np.testing.assert_allclose(viewer, png.array, atol=1e-6)
    assert 0.09 < d.array.min() < 0.11 and 0.69 < d.array.max() < 0.71


def test_derived_dicom_keeps_geometry_and_stored_values(tmp_path):
    src = get_testdata_file("CT_small.dcm", download=False)
    img = read_image(src)
    orig = pydicom.dcmread(src)
    stored = native_stored_values(img)
    np.testing.assert_array_equal(stored, orig.pixel_array)  # exact inverse of the reader's mapping
    p = write_dicom(img, tmp_path / "d.dcm", Provenance("manipulated", "copy-move", "n/a", {"mask_bounds": "1,2,3,4"}))
    ds = pydicom.dcmread(p)
    assert ds.StudyInstanceUID == orig.StudyInstanceUID
    assert ds.SOPInstanceUID != orig.SOPInstanceUID
    assert ds.PixelSpacing == orig.PixelSpacing and ds.Rows == orig.Rows
    assert "MANIPULATED" in ds.DerivationDescription and "mask_bounds=1,2,3,4" in ds.DerivationDescription
    np.testing.assert_array_equal(ds.pixel_array, orig.pixel_array)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == orig.SOPInstanceUID
    # the in-memory source is untouched (pydicom's Dataset.copy shares elements), so a second write is the same
    assert img.meta.dicom.SOPInstanceUID == orig.SOPInstanceUID
    assert list(img.meta.dicom.ImageType) == list(orig.ImageType)
    again = pydicom.dcmread(write_dicom(img, tmp_path / "e.dcm", Provenance("manipulated", "retouch", "n/a")))
    assert again.SourceImageSequence[0].ReferencedSOPInstanceUID == orig.SOPInstanceUID


@pytest.mark.parametrize("name, kept", [
    ("MR_small_RLE.dcm", True), ("MR_small_jpeg_ls_lossless.dcm", True), ("MR_small_jp2klossless.dcm", True),
    ("MR_small_implicit.dcm", True), ("image_dfl.dcm", True), ("SC_rgb_rle.dcm", True), ("emri_small_RLE.dcm", True),
    ("JPEG-LL.dcm", False),  # JPEG Lossless (process 14): pydicom has no encoder
    ("MR_small_bigendian.dcm", False),  # retired; pydicom writes no big endian from a little endian copy
    ("SC_rgb_jpeg_lossy_gdcm.dcm", False),  # lossy: encoding again would change the unmasked pixels
])
def test_derived_dicom_keeps_a_lossless_transfer_syntax(tmp_path, name, kept):
    """A derived copy is written in its source's transfer syntax where that loses nothing (an uncompressed copy of a
    compressed file would tell the edit by its encoding), else as Explicit VR Little Endian; either way it decodes
    to the stored values written."""
    from pydicom.uid import ExplicitVRLittleEndian

    src = get_testdata_file(name, download=False)
    orig = pydicom.dcmread(src)
    img = read_image(src)
    stored = native_stored_values(img) if img.array.ndim == 2 else None
    if stored is not None:
        stored = stored.copy()
        stored[5:15, 5:20] = stored[5:15, 5:20] // 2  # an edit
    ds = pydicom.dcmread(write_dicom(img, tmp_path / "d.dcm", Provenance("manipulated", "retouch", "n/a"),
                                     stored=stored))
    want = orig.file_meta.TransferSyntaxUID if kept else ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == want, (ds.file_meta.TransferSyntaxUID.name, want.name)
    assert "MANIPULATED" in ds.DerivationDescription
    if stored is not None:
        np.testing.assert_array_equal(ds.pixel_array, stored)


def test_derived_dicom_falls_back_to_uncompressed_when_the_encoder_fails(tmp_path, monkeypatch):
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    def broken(self, *args, **kwargs):
        self.PhotometricInterpretation = "YBR_RCT"  # a half-done encode
        raise RuntimeError("encoder refused")

    monkeypatch.setattr(Dataset, "compress", broken)
    src = get_testdata_file("MR_small_RLE.dcm", download=False)
    img, stored = read_image(src), pydicom.dcmread(src).pixel_array
    ds = pydicom.dcmread(write_dicom(img, tmp_path / "d.dcm", Provenance("manipulated", "retouch", "n/a"),
                                     stored=stored))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and ds.PhotometricInterpretation == "MONOCHROME2"
    np.testing.assert_array_equal(ds.pixel_array, stored)


def test_image_rejects_bad_arrays():
    with pytest.raises(ValueError, match="NaN"):
        Image(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="2-D"):
        Image(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Image(np.full((2, 2), 3.0))


def test_declared_provenance_reads_back_what_was_written(tmp_path):
    from medfake.io.writers import declared_provenance, dicom_secondary_capture

    img = read_image(get_testdata_file("CT_small.dcm", download=False))
    assert declared_provenance(img.meta.dicom) == "" and declared_provenance(None) == ""
    man = pydicom.dcmread(write_dicom(img, tmp_path / "m.dcm", Provenance("manipulated", "splice", "v3")))
    assert declared_provenance(man).startswith("medfake manipulated: generator=splice model=v3")
    syn = dicom_secondary_capture(Image(np.zeros((8, 8), np.float32)), Provenance("synthetic", "ddpm", "s1"))
    assert declared_provenance(syn).startswith("medfake synthetic: generator=ddpm model=s1")
    other = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    other.ImageType, other.DerivationDescription = ["DERIVED", "SECONDARY"], "MPR from axial"
    assert declared_provenance(other) == "derived: MPR from axial"
    other.ImageType = "DERIVED"  # one value: pydicom gives a str, not a list
    assert declared_provenance(other) == "derived: MPR from axial"
    other.ImageType = ["ORIGINAL", "PRIMARY"]
    assert declared_provenance(other) == ""


def test_dicom_seg_of_a_manipulated_ct(tmp_path):
    """The ground-truth mask as a DICOM SEG (highdicom) over the manipulated image: read back, same pixels, the
    study and frame of reference of the image, a new series, the image as its source, the method as algorithm."""
    import highdicom as hd

    from medfake.io.writers import dicom_seg

    img = read_image(get_testdata_file("CT_small.dcm", download=False))
    prov = Provenance("manipulated", "repaint", "v7", {"mask_bounds": "10,20,40,50"})
    src = pydicom.dcmread(write_dicom(img, tmp_path / "m.dcm", prov))
    mask = np.zeros(img.shape, bool)
    mask[20:50, 10:40] = True
    dicom_seg(mask, src, prov).save_as(tmp_path / "m_seg.dcm")
    seg = hd.seg.segread(tmp_path / "m_seg.dcm")
    assert np.array_equal(seg.pixel_array.astype(bool), mask)
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.SeriesInstanceUID != src.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    desc = seg.SegmentSequence[0]
    assert desc.SegmentLabel == "Manipulated region" and desc.SegmentAlgorithmName == "medfake repaint"
    assert "MANIPULATED" in seg.ContentDescription and seg.Manufacturer == "medfake"
    with pytest.raises(ValueError, match="does not match"):
        dicom_seg(mask[:-1], src, prov)


@pytest.mark.parametrize("name, frame, what", [
    ("color3d_jpeg_baseline.dcm", 7, "a frame of a classic multi-frame ultrasound (no functional groups)"),
    ("JPEG-LL.dcm", None, "a secondary capture with a pixel spacing and no slice thickness"),
    ("693_UNCR.dcm", None, "a CT with a plane position and no frame of reference"),
    ("emri_small.dcm", 2, "a frame of a minimal Enhanced MR without functional groups"),
    ("color-pl.dcm", None, "an ultrasound without a patient ID, its times written 11:20:00 (ACR-NEMA style)"),
    ("chrH31.dcm", None, "a Japanese character set whose first value is empty"),
    ("SC_rgb_jls_lossy_line.dcm", None, "a secondary capture without a study instance UID"),
])
def test_dicom_seg_over_irregular_geometries(tmp_path, name, frame, what):
    """Images highdicom cannot take as they are still get their SEG: a one-frame Ultrasound Multi-frame (or minimal
    Enhanced MR) instance is shown to highdicom as its single-frame IOD and the SEG references it under its true SOP
    class; a 2-D image's spacing without thickness is left out of the SEG; a CT position without a frame of
    reference gets a new frame of reference in the derived image (the SEG shares it); an image without a study UID
    gets one; missing type-2 patient attributes, colon-separated times and an empty first character set value are
    filled in or spelled out in the copy highdicom sees."""
    import highdicom as hd

    from medfake.io.writers import dicom_seg

    from pydicom.data import get_charset_files

    path = get_testdata_file(name, download=False) or next(iter(get_charset_files(name)), None)
    if path is None:
        pytest.skip(f"{name} ships with pydicom-data, which is not installed")
    img = read_image(path, frames=frame) if frame is not None else read_image(path)
    prov = Provenance("manipulated", "retouch", "n/a")
    src = pydicom.dcmread(write_dicom(img, tmp_path / "e.dcm", prov))
    source_class = pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID
    assert src.SOPClassUID == source_class  # the written image keeps its source's IOD
    mask = np.zeros(img.shape, bool)
    mask[5:25, 8:30] = True
    dicom_seg(mask, src, prov).save_as(tmp_path / "e_seg.dcm")
    seg = hd.seg.segread(tmp_path / "e_seg.dcm")
    assert np.array_equal(seg.pixel_array.astype(bool), mask), what
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID) == (src.SOPInstanceUID, src.SOPClassUID)
    if "FrameOfReferenceUID" in src:
        assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    if name == "693_UNCR.dcm":
        assert "FrameOfReferenceUID" in src and "FrameOfReferenceUID" not in pydicom.dcmread(path)


def test_dicom_seg_refuses_what_it_cannot_describe(tmp_path):
    """A plane position without an orientation: a clear ValueError, no half-written SEG."""
    from medfake.io.writers import dicom_seg

    odd = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    del odd.ImageOrientationPatient
    odd.save_as(tmp_path / "odd.dcm")
    img = read_image(tmp_path / "odd.dcm")
    prov = Provenance("manipulated", "retouch", "n/a")
    src = pydicom.dcmread(write_dicom(img, tmp_path / "e.dcm", prov))
    with pytest.raises(ValueError, match="cannot describe this image in a DICOM SEG"):
        dicom_seg(np.ones(img.shape, bool), src, prov)
