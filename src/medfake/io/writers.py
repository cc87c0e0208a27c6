"""Writers: PNG (8/16-bit) and DICOM (Secondary Capture for synthetic images; derived copies of a source
DICOM for manipulated ones; DICOM SEG for their masks). Every DICOM written here carries provenance, and
`declared_provenance` reads it back."""

from __future__ import annotations

import copy
import datetime as _dt
import io as _io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from .image import Image, to_uint

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Provenance:
    """What made an image: written into every DICOM (and JSON sidecars) the project produces."""

    kind: str  # "synthetic" | "manipulated"
    generator: str  # e.g. "ddpm", "dcgan", "repaint"
    model_version: str = "unknown"
    details: dict = field(default_factory=dict)

    def description(self) -> str:
        extra = "; ".join(f"{k}={v}" for k, v in self.details.items())
        text = f"MEDFAKE {self.kind.upper()} IMAGE: generator={self.generator} model={self.model_version} medfake={__version__}"
        if extra:
            text += "; " + extra
        return text[:1024]  # Derivation Description is ST (≤ 1024 chars)


def declared_provenance(ds) -> str:
    """What a DICOM says about its own making, for a detection row: "medfake synthetic: generator=… model=…" or
    "medfake manipulated: …" for the marks `_mark` writes, "derived: <Derivation Description>" for another tool's
    DERIVED image, "secondary capture" for an SC without one, "" for an original (or a file that says nothing).
    A self-declaration, not evidence: an attacker strips it, so the detector's verdict never depends on it."""
    if ds is None:
        return ""
    desc = str(ds.get("DerivationDescription", "") or "").strip()
    if desc.upper().startswith("MEDFAKE "):
        kind, _, rest = desc[len("MEDFAKE "):].partition(" IMAGE:")
        return f"medfake {kind.lower()}:{rest}"[:200]
    image_type = ds.get("ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)  # VM 1 comes back as a str
    if [str(v).upper() for v in image_type[:1]] == ["DERIVED"]:
        return f"derived: {desc}"[:200] if desc else "derived"
    if str(ds.get("SOPClassUID", "")) == SC_IMAGE_STORAGE:
        return "secondary capture"
    return ""


def png_bytes(image: Image | np.ndarray, bits: int = 8) -> bytes:
    from PIL import Image as PILImage

    arr = image.array if isinstance(image, Image) else np.asarray(image, dtype=np.float32)
    if bits not in (8, 16):
        raise ValueError(f"PNG bit depth must be 8 or 16, got {bits}")
    u = to_uint(arr, bits)
    im = PILImage.fromarray(u, mode="L") if bits == 8 else PILImage.fromarray(u.astype(np.uint16))
    buf = _io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_png(image: Image | np.ndarray, path: str | Path, bits: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image, bits))
    return path


def _now():
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _mark(ds, prov: Provenance) -> None:
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = prov.description()
    ds.ImageComments = f"{prov.kind.upper()} by medfake {__version__} ({prov.generator}, {prov.model_version})"[:10240]
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = "medfake"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "SYN" if prov.kind == "synthetic" else "WSD"


def dicom_secondary_capture(image: Image, prov: Provenance, *, bits: int = 8, patient_id: str = "MEDFAKE-SYNTHETIC"):
    """A new DICOM Secondary Capture dataset holding `image` (for synthetic images)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if bits not in (8, 16):
        raise ValueError(f"DICOM bit depth must be 8 or 16, got {bits}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    date, time = _now()
    ds.SOPClassUID = SC_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "SYNTHETIC^MEDFAKE"
    ds.PatientID = patient_id
    # type 2 attributes of the Patient, General Study and SC Equipment modules: present, empty when unknown
    ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ds.AccessionNumber = ""
    ds.StudyDate = ds.ContentDate = ds.SeriesDate = date
    ds.StudyTime = ds.ContentTime = ds.SeriesTime = time
    ds.Modality = "OT"
    ds.SeriesDescription = f"medfake synthetic {image.meta.modality or ''} {image.meta.label or ''}".strip()[:64]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    # the full stored range as the window, so that readers (ours, pydicom's apply_windowing, PACS viewers) show
    # stored value v as v / (2^bits − 1), as the PNG of the same image, instead of stretching each image's own
    # min..max: under DICOM's linear VOI function, centre 2^(bits−1) and width 2^bits map 0 → black, 2^bits − 1 → white
    ds.WindowCenter, ds.WindowWidth = 1 << (bits - 1), 1 << bits
    _mark(ds, prov)
    ds.PixelData = to_uint(image.array, bits).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    return ds


_COLOUR_ONLY = ("PlanarConfiguration", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter",
                "WindowWidth", "WindowCenterWidthExplanation", "VOILUTSequence", "VOILUTFunction", "ICCProfile",
                "ColorSpace", "PixelPaddingValue", "SmallestImagePixelValue", "LargestImagePixelValue")


def _drop_colour(ds, keep_profile: bool = False) -> None:
    """A colour source's attributes that do not hold for its 8-bit grey rendering: photometric, planar
    configuration, palette tables (group 0028, elements 1101–12FF), rescale, VOI, colour profile (kept with
    `keep_profile`, for RGB out: the profile says what its colours mean)."""
    ds.PhotometricInterpretation = "MONOCHROME2"
    for kw in _COLOUR_ONLY:
        if kw in ds and not (keep_profile and kw in ("ICCProfile", "ColorSpace")):
            delattr(ds, kw)
    for tag in [t for t in ds.keys() if t.group == 0x0028 and 0x1101 <= t.element <= 0x12FF]:
        del ds[tag]


def _one_frame(ds, src, frame: int) -> None:
    """Make `ds` (a copy of the multi-frame `src`) a one-frame instance of the same SOP class, frame `frame`
    (0-based): NumberOfFrames 1, that frame's item of the per-frame functional groups (its position, orientation,
    timing), and that frame's value of each vector the Frame Increment Pointer names. Dropping the multi-frame
    attributes instead would leave an Enhanced MR/CT or a cine ultrasound object without attributes its IOD
    requires."""
    from pydicom.sequence import Sequence

    n = int(src.get("NumberOfFrames", 1) or 1)
    ds.NumberOfFrames = 1
    per_frame = src.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame):
        ds.PerFrameFunctionalGroupsSequence = Sequence([per_frame[min(frame, len(per_frame) - 1)]])
    pointer = src.get("FrameIncrementPointer")
    tags = [] if pointer is None else [pointer] if isinstance(pointer, int) else list(pointer)  # AT: a tag or tags
    for tag in tags:
        if tag in ds and ds[tag].VM == n and n > 1:
            ds[tag].value = ds[tag].value[frame]


_BINARY_WORD = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}  # binary VRs whose bytes follow the byte order


def _as_explicit_little(ds) -> None:
    """A copy of a source dataset made writable as Explicit VR Little Endian (what every derived copy is written
    as), whatever it was read as: each element decoded (a raw element still holds the bytes as read, and has no VR
    when the file was implicit VR, e.g. one that declares explicit VR and is not), from the retired Explicit VR Big
    Endian syntax the bytes of word-sized binary values swapped, and each (nested) dataset's original encoding set
    to explicit little endian, which is what pydicom checks before it agrees to write another byte order."""
    big = ds.original_encoding[1] is False
    for elem in ds.iterall():  # iterating decodes every raw element as it was read
        size = _BINARY_WORD.get(elem.VR) if big else None
        if size and isinstance(elem.value, bytes) and len(elem.value) % size == 0 and elem.keyword != "PixelData":
            elem.value = np.frombuffer(elem.value, dtype=f">u{size}").astype(f"<u{size}").tobytes()

    def relabel(d) -> None:
        d.set_original_encoding(False, True, d.original_character_set)
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    relabel(item)

    relabel(ds)


def whole_object_problem(image: Image) -> str:
    """Why `image` (a frame or slice read by `io.read_images`) cannot be written back as its whole object ("" when
    it can): a multi-frame DICOM (`dicom_derived(all_frames=True)`) or a 3-D NIfTI volume (`nifti_with_edit`).
    Refused: anything else (a Siemens mosaic is written whole anyway; NRRD), the frames' pixel data not kept,
    colour frames that are not 8-bit (medfake writes such a frame as an 8-bit grey rendering, which the other
    frames would not match), a NIfTI of several volumes (4-D)."""
    m = image.meta
    if m.format == "nifti":
        return _nifti_problem(m)
    n = int(m.extra.get("number_of_frames", 1) or 1)
    if m.dicom is None or n < 2 or "mosaic" in m.extra:
        return (f"it is neither a multi-frame DICOM nor a NIfTI volume ({m.format or 'unknown format'}, {n} "
                f"frame{'s' * (n != 1)})")
    if "PixelData" not in m.dicom:
        return "its frames' pixel data were not kept (read it with medfake.io.read_images)"
    photometric = str(m.dicom.get("PhotometricInterpretation", ""))
    colour_file = int(m.dicom.get("SamplesPerPixel", 1) or 1) > 1 or photometric == "PALETTE COLOR"
    if colour_file and m.colour is None:
        return (f"its colour frames are {int(m.dicom.get('BitsAllocated', 8))}-bit: the edited frame can only be "
                "written as an 8-bit grey rendering, as a one-frame instance")
    return ""


def _nifti_problem(m) -> str:
    vol = m.volume
    if vol is None:
        return "the volume it was read from was not kept (read it with medfake.io.read_images)"
    if len(vol.shape) < 2 or any(int(n) != 1 for n in vol.shape[3:]):
        return f"a NIfTI of shape {tuple(vol.shape)}: only 2-D images and 3-D volumes are written back"
    if not hasattr(vol.dataobj, "get_unscaled"):
        return "its voxels are not those of a file (no stored values to keep)"
    return ""


def nifti_with_edit(image: Image, mask: np.ndarray, prov: Provenance,
                    more: Sequence[tuple[Image, np.ndarray]] = ()):
    """(volume, mask volume): the NIfTI the slice `image` was read from (Meta.volume), as stored, with the masked
    voxels of that slice replaced by the edited image's values and every other voxel the file's own, and a uint8
    volume of the same geometry that is 1 on exactly the voxels changed. The edit is mapped back, voxel by voxel,
    through the reader's display orientation and its reorientation to RAS+ (nibabel's io_orientation); the values
    through the reader's range (Meta.value_range) and back through the file's scale slope and intercept, rounded
    and clipped to an integer data type. Every other stored value is the file's, and so is its scaling. The header
    is the file's, its description the provenance. `more`: (edited slice, mask) pairs of other slices of the same
    volume, read on the same axis (a lesion over several slices)."""
    import nibabel as nib

    m = image.meta
    why = whole_object_problem(image) if m.format == "nifti" else "it was not read from a NIfTI file"
    if why:
        raise ValueError(f"cannot write {m.source} back as a volume: {why}")
    src = m.volume
    axis = int(m.extra["axis"])
    # the voxels as stored (before the file's scale slope and intercept), which are kept as they are
    data = np.array(src.dataobj.get_unscaled(), dtype=np.dtype(src.get_data_dtype()), copy=True)
    changed = np.zeros(src.shape, np.uint8)
    for im, mk in [(image, mask), *more]:
        if im.meta.volume is not src or int(im.meta.extra.get("axis", -1)) != axis:
            raise ValueError("every edited slice must come from the same volume, read on the same axis")
        where, values = _slice_voxels(im, mk, src)
        where = where + (np.zeros_like(where[0]),) * (data.ndim - len(where))  # trailing dimensions of size 1
        data[where] = values
        changed[where] = 1
    header = src.header.copy()
    # the description field holds 80 bytes: the kind and generator there, the whole provenance in a comment extension
    header["descrip"] = f"MEDFAKE {prov.kind.upper()} IMAGE: {prov.generator} {prov.model_version}"[:79].encode(
        "ascii", "replace")
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", prov.description().encode("utf-8")))
    out = type(src)(data, src.affine, header)
    out.set_data_dtype(data.dtype)
    slope, inter = float(src.dataobj.slope), float(src.dataobj.inter)
    if (slope, inter) != (1.0, 0.0):  # the stored values keep the file's scaling (nibabel resets it on a new image)
        out.header.set_slope_inter(slope, inter)
    mask_header = src.header.copy()
    mask_header.set_data_dtype(np.uint8)
    mask_header["descrip"] = b"medfake: voxels changed"
    mask_img = type(src)(changed, src.affine, mask_header)
    return out, mask_img


def _slice_voxels(image: Image, mask, src) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The stored-order voxel indices of a NIfTI slice's masked pixels and their stored values (before the file's
    scale slope and intercept) in its data type."""
    from nibabel import orientations as no

    m = image.meta
    axis, index = int(m.extra["axis"]), int(m.extra["slice"])
    lo, hi = m.value_range
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape:
        raise ValueError(f"mask {mask.shape} does not match the slice {image.shape}")
    # the slice's pixels in the reader's canonical (RAS+) voxel grid: it shows np.fliplr(np.rot90(slice))
    ys, xs = np.nonzero(np.rot90(np.fliplr(mask), k=-1))
    canon = [ys, xs]
    canon.insert(axis, np.full(ys.shape, index))
    # back to the stored voxel order: stored axis a is canonical axis ornt[a, 0], reversed where ornt[a, 1] < 0
    # (nibabel's io_orientation, which the reader's as_closest_canonical applied)
    if len(src.shape) == 2:  # a 2-D image: read as it is stored (no reorientation), its one slice
        where = (canon[0], canon[1])
    else:
        ornt = no.io_orientation(src.affine)
        where = tuple(canon[int(o)] if f > 0 else n - 1 - canon[int(o)] for (o, f), n in zip(ornt, src.shape))
    units = np.rot90(np.fliplr(image.array.astype(np.float64) * (hi - lo) + lo), k=-1)[ys, xs]
    units = (units - float(src.dataobj.inter)) / float(src.dataobj.slope)  # the values as stored
    dtype = np.dtype(src.get_data_dtype())
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        units = np.clip(np.round(units), info.min, info.max)
    return where, units.astype(dtype)


def _all_frames(src, edits: dict[int, np.ndarray]) -> np.ndarray:
    """Every frame of the multi-frame `src` as written back: its stored values (or, for colour frames, the RGB each
    frame shows: YBR decoded, palette applied), each frame of `edits` (frame → stored values) replaced."""
    from .readers import dicom_colour

    if "PixelData" not in src:
        raise ValueError("the source's pixel data were not kept (read a multi-frame DICOM with medfake.io.read_images "
                         "to write it back whole)")
    stored = next(iter(edits.values()))
    frames = src.pixel_array  # decoded as the reader decoded it (the reader set a missing transfer syntax)
    if stored.ndim == 3:
        frames = dicom_colour(src, frames)
        if frames is None or frames.dtype != np.uint8 or frames.shape[-1] != 3:
            raise ValueError("a colour frame in a multi-frame DICOM whose frames are not shown as 8-bit RGB")
    frames = np.array(frames, copy=True)  # pydicom's array may be read-only
    for frame, stored in edits.items():
        if frames.shape[1:] != stored.shape or frames.dtype != stored.dtype:
            raise ValueError(f"the edited frame ({stored.dtype} {stored.shape}) does not match the file's frames "
                             f"({frames.dtype} {frames.shape[1:]})")
        if not 0 <= frame < len(frames):
            raise ValueError(f"frame {frame} out of range (0..{len(frames) - 1})")
        frames[frame] = stored
    return frames


def dicom_derived(image: Image, prov: Provenance, stored: np.ndarray | None = None, *, all_frames: bool = False,
                  more: dict[int, np.ndarray] | None = None):
    """A copy of the source DICOM (image.meta.dicom) with new pixel data, same geometry and study/series
    context, a new SOP Instance UID and provenance marking it derived (manipulated).

    A frame of a multi-frame file becomes a one-frame instance of the same SOP class (`_one_frame`), or, with
    `all_frames`, the whole object again: every frame as in the file (same functional groups and frame vectors),
    the edited one replaced, and its frame number in the provenance; `more` (frame → stored values) replaces more
    frames of it (a lesion over several slices). The transfer syntax is the source's where that loses nothing
    (`_keep_transfer_syntax`), else Explicit VR Little Endian."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = image.meta.dicom
    if src is None:
        raise ValueError("dicom_derived needs an image read from DICOM")
    if stored is None:
        stored = native_stored_values(image)
    frame = image.meta.frame
    n_frames = int(src.get("NumberOfFrames", 1) or 1)
    whole = all_frames and n_frames > 1 and "mosaic" not in image.meta.extra
    if whole and whole_object_problem(image):
        raise ValueError(f"cannot write {image.meta.source} back whole: {whole_object_problem(image)}")
    if more and not whole:
        raise ValueError("more edited frames need all_frames (the whole multi-frame object)")
    edits = {**(more or {}), frame or 0: stored}
    frames = _all_frames(src, edits) if whole else None
    # a real copy: Dataset.copy() shares the source's element dict itself, so setting or deleting an element of
    # such a copy would change the source (and every frame read from its file); the pixel data bytes are shared
    ds = copy.deepcopy(src)
    if "PixelData" in ds:
        del ds.PixelData
    _as_explicit_little(ds)
    if "NumberOfFrames" in ds and not whole:
        _one_frame(ds, src, frame or 0)
    if whole:
        numbers = ",".join(str(k + 1) for k in sorted(edits))
        prov = Provenance(prov.kind, prov.generator, prov.model_version,
                          {**prov.details, "frame_number": f"{numbers} of {n_frames}"})
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ref = Dataset()  # the image this one was derived from (not the source's own sources, which it may list)
    ref.ReferencedSOPClassUID = src.get("SOPClassUID", SC_IMAGE_STORAGE)
    ref.ReferencedSOPInstanceUID = src.get("SOPInstanceUID", "")
    if n_frames > 1:  # the frame it was derived from (the whole object: the frame that was edited)
        ref.ReferencedFrameNumber = (frame or 0) + 1
    ds.SourceImageSequence = Sequence([ref])
    if "StudyInstanceUID" not in ds:  # type 1, left out by some files: this instance's own study then
        ds.StudyInstanceUID = generate_uid()
    if "SeriesInstanceUID" not in ds:
        ds.SeriesInstanceUID = generate_uid()
    if "ImagePositionPatient" in ds and "FrameOfReferenceUID" not in ds:
        # the Image Plane module's position means nothing without a frame of reference, which the source's IOD
        # requires and the source lacks: a new one says "this instance's own frame" (and lets a SEG describe it)
        ds.FrameOfReferenceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    photometric = str(src.get("PhotometricInterpretation", ""))
    colour = stored.ndim == 3
    if colour and (stored.dtype != np.uint8 or stored.shape[2] != 3):
        raise ValueError(f"colour DICOM pixels must be H×W×3 uint8, got {stored.dtype} {stored.shape}")
    if int(src.get("SamplesPerPixel", 1)) != 1 or photometric.startswith(("RGB", "YBR", "PALETTE")):
        # colour in: RGB out (its colours as shown: YBR decoded, palette applied), or the 8-bit grey rendering;
        # either way without the palette, rescale or VOI
        _drop_colour(ds, keep_profile=colour)
    elif photometric not in ("MONOCHROME1", "MONOCHROME2"):
        ds.PhotometricInterpretation = "MONOCHROME2"
    if colour:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0  # colour-by-pixel, as numpy holds it
    ds.SamplesPerPixel = 3 if colour else 1
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = int(src.get("BitsStored", ds.BitsAllocated)) if ds.BitsAllocated > 8 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.InstanceCreationDate, ds.InstanceCreationTime = _now()
    _mark(ds, prov)
    pixels = stored if frames is None else frames
    ds.PixelData = np.ascontiguousarray(pixels, dtype=stored.dtype.newbyteorder("<")).tobytes()  # as the file is
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    if "LossyImageCompression" in src:
        ds.LossyImageCompression = src.LossyImageCompression
    _keep_transfer_syntax(ds, src)
    return ds


def _keep_transfer_syntax(ds, src) -> None:
    """Write the derived copy in the source's transfer syntax where that loses nothing, so that the file does not
    announce its edit: Implicit VR and Deflated Explicit VR Little Endian as they are; RLE, JPEG-LS lossless and
    JPEG 2000 lossless compressed again, with pydicom's encoders. Everything else stays Explicit VR Little Endian,
    uncompressed: a lossy source, because encoding it again would change the unmasked pixels; JPEG Lossless
    (process 14) and big endian, because pydicom cannot write them. An encoder that fails leaves it uncompressed."""
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                             JPEG2000Lossless, JPEGLSLossless, RLELossless)

    ts = getattr(src, "file_meta", None) and src.file_meta.get("TransferSyntaxUID")
    if ts in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = ts
    elif ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        raw, photometric = ds.PixelData, ds.PhotometricInterpretation
        try:
            ds.compress(ts, generate_instance_uid=False)
        except Exception:  # an encoder missing or refusing these pixels: uncompressed, as before
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.PixelData, ds.PhotometricInterpretation = raw, photometric
            ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"


def native_stored_values(image: Image) -> np.ndarray:
    """Invert the reader's mapping: [0, 1] → modality-LUT units → stored pixel values in the source dtype."""
    m = image.meta
    lo, hi = m.value_range or (0.0, 255.0)
    a = image.array
    if m.photometric == "MONOCHROME1":
        a = 1.0 - a
    vals = a.astype(np.float64) * (hi - lo) + lo
    slope = float(m.extra.get("rescale_slope", 1.0))
    inter = float(m.extra.get("rescale_intercept", 0.0))
    stored = (vals - inter) / slope
    signed = int(m.extra.get("pixel_representation", 0)) == 1
    bits = int(m.bits or 8)
    dtype = np.dtype(m.original_dtype) if m.original_dtype and m.original_dtype.startswith(("int", "uint")) else None
    if dtype is None:
        dtype = np.int16 if signed else (np.uint8 if bits <= 8 else np.uint16)
    info = np.iinfo(dtype)
    smin = -(2 ** (bits - 1)) if signed else 0
    smax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return np.clip(np.round(stored), max(info.min, smin), min(info.max, smax)).astype(dtype)


def write_dicom(image: Image, path: str | Path, prov: Provenance, *, bits: int = 8, stored: np.ndarray | None = None,
                all_frames: bool = False, more: dict[int, np.ndarray] | None = None) -> Path:
    """Derived copy when the image came from DICOM (a frame of a multi-frame file: a one-frame instance, or with
    `all_frames` the whole object with that frame replaced), else a new Secondary Capture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.meta.dicom is not None:
        ds = dicom_derived(image, prov, stored, all_frames=all_frames, more=more)
    else:
        ds = dicom_secondary_capture(image, prov, bits=bits)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_bytes(image: Image, prov: Provenance, *, bits: int = 8) -> bytes:
    buf = _io.BytesIO()
    ds = dicom_derived(image, prov) if image.meta.dicom is not None else dicom_secondary_capture(image, prov, bits=bits)
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


DIFFUSION_METHODS = ("repaint", "repaint-ddim")


# classic multi-frame IODs (no functional groups) → the single-frame IOD of the same images
SINGLE_FRAME_COUNTERPART = {
    "1.2.840.10008.5.1.4.1.1.3.1": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Multi-frame → Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.7.1": SC_IMAGE_STORAGE,  # Multi-frame Single Bit SC → SC
    "1.2.840.10008.5.1.4.1.1.7.2": SC_IMAGE_STORAGE,  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3": SC_IMAGE_STORAGE,  # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4": SC_IMAGE_STORAGE,  # Multi-frame True Color SC
    # retired ultrasound IODs (1990s files), which highdicom does not know: the current ultrasound image IOD
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image (Retired)
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Multi-frame (Retired)
}
# enhanced IODs → the classic IOD of the same modality, for a one-frame instance that lacks the functional groups
# the enhanced IOD requires (a minimal file such as pydicom's emri_small.dcm): no geometry to read from them
ENHANCED_WITHOUT_GROUPS = {
    "1.2.840.10008.5.1.4.1.1.4.1": "1.2.840.10008.5.1.4.1.1.4",  # Enhanced MR → MR Image
    "1.2.840.10008.5.1.4.1.1.2.1": "1.2.840.10008.5.1.4.1.1.2",  # Enhanced CT → CT Image
}


def _restore_class(ds, instance_uid: str, sop_class: str) -> None:
    """Every reference to `instance_uid` inside `ds` (nested sequences too) names `sop_class`."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                if str(item.get("ReferencedSOPInstanceUID", "")) == instance_uid and "ReferencedSOPClassUID" in item:
                    item.ReferencedSOPClassUID = sop_class
                _restore_class(item, instance_uid, sop_class)


def dicom_seg(mask: np.ndarray, source, prov: Provenance, *, segment_label: str = "Manipulated region",
              content_label: str = "MANIPULATED", description: str | None = None, frame: int = 0,
              more: dict[int, np.ndarray] | None = None):
    """A DICOM Segmentation (highdicom, BINARY, one segment) of `mask` over `source`, the DICOM the mask belongs
    to (a pydicom Dataset: the manipulated image as written; of a multi-frame one, over its frame `frame`, 0-based,
    and the frames of `more` (frame → mask), which highdicom allows where the frames have a frame of reference):
    same study and frame of reference, a new
    series, the segment "Manipulated region" with the method and model version as its algorithm, and the
    provenance in its content description. Viewers that show SEG overlays (OHIF, 3D Slicer) draw the ground truth
    on the fake. A detector's predicted region uses the same writer (`prov.kind` "detected", its own segment and
    content labels and description). Raises ValueError when highdicom cannot describe the source (a plane position
    without an orientation, an incomplete pixel measures sequence, a character set it does not know; see
    `save_result`). Before it is shown to highdicom, a copy of the source gets what some files leave out or write
    in the older ACR-NEMA style: empty type-2 patient/study attributes, times without colons."""
    import highdicom as hd
    from pydicom.multival import MultiValue
    from pydicom.sr.codedict import codes

    src = copy.deepcopy(source)
    _as_explicit_little(src)  # a source read big endian or with no VRs (a detector's region over the input file)
    for kw in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
               "ReferringPhysicianName", "StudyDate", "StudyTime"):
        if kw not in src:  # type 2 in every image IOD, left out by some files (a palette US, a secondary capture):
            setattr(src, kw, "")  # highdicom copies them into the SEG and needs them present, empty or not
    for kw in ("StudyTime", "SeriesTime", "ContentTime", "AcquisitionTime", "InstanceCreationTime"):
        if ":" in str(src.get(kw, "")):  # ACR-NEMA style "11:20:00" → DICOM's "112000"
            setattr(src, kw, str(src.get(kw)).replace(":", ""))
    charset = src.get("SpecificCharacterSet")
    if isinstance(charset, (list, MultiValue)) and len(charset) > 1 and not str(charset[0]):
        # an empty first value is the default repertoire with ISO 2022 extensions (Japanese files): by its name
        src.SpecificCharacterSet = ["ISO 2022 IR 6", *[str(c) for c in charset[1:]]]
    spacing = src.get("PixelSpacing")
    if spacing is not None and (len(spacing) != 2 or min(float(v) for v in spacing) <= 0):
        del src.PixelSpacing  # e.g. a CR's "0\0": no spacing is better than an invalid one
    elif spacing is not None and "SliceThickness" not in src and "ImagePositionPatient" not in src:
        del src.PixelSpacing  # a 2-D image (e.g. a secondary capture): highdicom's pixel measures need a thickness
    true_class = str(src.get("SOPClassUID", ""))
    counterpart = SINGLE_FRAME_COUNTERPART.get(true_class)
    groups = {"SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"}
    if counterpart is None and not groups & set(src.dir()):
        counterpart = ENHANCED_WITHOUT_GROUPS.get(true_class)
    if counterpart is not None and int(src.get("NumberOfFrames", 1) or 1) == 1:
        # a one-frame instance of a classic multi-frame IOD (a frame `medfake manipulate` wrote), or of an enhanced
        # one without functional groups: highdicom reads multi-frame IODs through functional groups these have none
        # of, so it gets the single-frame counterpart, and the SEG's references are given the true class back below
        src.SOPClassUID = counterpart
        for k in ("NumberOfFrames", "FrameIncrementPointer", "FrameTime", "FrameTimeVector"):
            if k in src:
                delattr(src, k)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (int(src.Rows), int(src.Columns)):
        raise ValueError(f"mask {mask.shape} does not match the image {int(src.Rows)}×{int(src.Columns)}")
    n_frames = int(src.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < n_frames:
        raise ValueError(f"frame {frame} out of range (0..{n_frames - 1})")
    stack = np.zeros((n_frames, *mask.shape), np.uint8)  # a whole multi-frame object: the mask on its frame(s)
    for k, mk in {**(more or {}), frame: mask}.items():  # (highdicom leaves the empty frames out)
        if not 0 <= k < n_frames or np.shape(mk) != mask.shape:
            raise ValueError(f"a mask for frame {k} of {n_frames} frames of {mask.shape}")
        stack[k] = np.asarray(mk, dtype=bool)
    learned = prov.generator in DIFFUSION_METHODS or prov.kind == "detected"
    family = codes.DCM.ArtificialIntelligence if learned else codes.DCM.ImageProcessing
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment_label[:64],
        segmented_property_category=codes.SCT.PhysicalObject,
        segmented_property_type=hd.sr.CodedConcept("MANIPULATED", "99MEDFAKE", "Manipulated region"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=f"medfake {prov.generator}"[:64], version=str(prov.model_version)[:64] or "unknown", family=family),
    )
    try:
        with warnings.catch_warnings():  # the source's patient name is copied as it is, whatever highdicom thinks
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
            seg = hd.seg.Segmentation(
                source_images=[src], pixel_array=stack,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
                series_instance_uid=hd.UID(), series_number=9001, sop_instance_uid=hd.UID(), instance_number=1,
                manufacturer="medfake", manufacturer_model_name=f"medfake {prov.generator}"[:64],
                software_versions=__version__, device_serial_number="none",
                content_label=content_label[:16], content_description=(description or prov.description())[:64],
                series_description=("medfake: suspected manipulation" if prov.kind == "detected"
                                    else f"medfake ground truth: {prov.kind} region")[:64],
            )
        if str(src.SOPClassUID) != true_class:
            _restore_class(seg, str(src.SOPInstanceUID), true_class)
        # what highdicom writes it must also read (a source with partial pixel measures gives a SEG it rejects)
        hd.seg.Segmentation.from_dataset(copy.deepcopy(seg), copy=False)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"highdicom cannot describe this image in a DICOM SEG ({type(e).__name__}: {e})") from None
    return seg
