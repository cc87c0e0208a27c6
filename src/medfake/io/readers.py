"""Readers: DICOM (pydicom + pylibjpeg), NIfTI (nibabel), NRRD (pynrrd), MetaImage (SimpleITK), raster (Pillow).
Every reader returns Image(s).

Each failure is one ImageReadError naming the file and the reason. Declared sizes are checked against the
pixel limit before any pixel data is decoded, and compressed volumes (.nii.gz, gzip/bzip2 NRRD, zlib MetaImage)
are inflated no further than their declared size needs (decompression-bomb guard).
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import re
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ImageReadError, ImageTooLargeError, NotAnImageError, UnsupportedFormatError
from .image import Image, Meta

DEFAULT_MAX_PIXELS = 64_000_000

# CT window presets: (centre, width) in Hounsfield units
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

RASTER_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_EXT = {".dcm", ".dicom", ".ima"}
NIFTI_EXT = {".nii", ".nii.gz"}
NRRD_EXT = {".nrrd"}
METAIMAGE_EXT = {".mha", ".mhd"}
# formats read as volumes (a slice per Image; `frames`/`slice_index` pick one) and those with several images
VOLUME_FORMATS = frozenset({"nifti", "nrrd", "metaimage"})
MULTI_IMAGE_FORMATS = VOLUME_FORMATS | {"dicom"}


def parse_window(window) -> tuple[float, float] | None:
    """`None`, a preset name, 'C,W' or a (centre, width) tuple → (centre, width)."""
    if window is None or window == "":
        return None
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key in WINDOW_PRESETS:
            return WINDOW_PRESETS[key]
        try:
            c, w = (float(v) for v in window.split(","))
        except ValueError:
            raise ValueError(
                f"window {window!r}: use a preset ({', '.join(WINDOW_PRESETS)}) or 'CENTRE,WIDTH'"
            ) from None
    else:
        c, w = (float(v) for v in window)
    if w <= 0:
        raise ValueError(f"window width must be > 0, got {w}")
    return c, w


def window_bounds(centre: float, width: float) -> tuple[float, float]:
    """The values a window (centre, width) shows as black and as white: DICOM's linear VOI function (PS3.3
    C.11.2.1.2.1, what pydicom's ``apply_windowing`` and PACS viewers apply), y = (x − (c − 0.5)) / (w − 1) + 0.5
    clipped to [0, 1]. A width ≤ 1 is a threshold at c − 0.5."""
    half = max(width - 1.0, 1e-6) / 2.0
    return centre - 0.5 - half, centre - 0.5 + half


def sniff_format(path: Path, head: bytes) -> str:
    name = path.name.lower()
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"NRRD000") or name.endswith(".nrrd") or name.endswith(".nhdr"):
        return "nrrd"
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == 348:
        return "nifti"
    if name.endswith((".mha", ".mhd")) or head.lstrip().startswith((b"ObjectType", b"NDims")):
        return "metaimage"
    if path.suffix.lower() in DICOM_EXT:
        return "dicom"  # DICOM without preamble; pydicom will judge
    return "unknown"


def read_images(
    path: str | Path,
    *,
    window=None,
    frames: str | int = "all",
    axis: int = 2,
    slice_index: int | str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
    mosaic: bool = True,
) -> list[Image]:
    """Read one file into one or more Images (multi-frame DICOM: one per frame; NIfTI, NRRD and Siemens mosaic
    DICOM: the chosen slice(s), `slice_index` None/"middle", "all" or a number).

    `data` lets a caller pass bytes already in memory (uploads); `path` is then only a name. `mosaic=False` reads
    a Siemens mosaic as the one picture it is stored as (what manipulation needs to write the file back).
    """
    path = Path(path)
    on_disk = data is None
    try:
        if data is None:
            if not path.exists():
                raise ImageReadError(path, "file not found")
            if path.is_dir():
                raise ImageReadError(path, "is a folder, not a file")
            data = path.read_bytes()
        if len(data) == 0:
            raise ImageReadError(path, "empty file")
        fmt = sniff_format(path, data[:132])
        win = parse_window(window)
        if fmt == "dicom":
            out = _read_dicom(path, data, win, frames, max_pixels, slice_index if mosaic else False)
        elif fmt == "nifti":
            out = _read_nifti(path, data, win, axis, slice_index, max_pixels)
        elif fmt == "nrrd":
            out = _read_nrrd(path, data, win, axis, slice_index, max_pixels)
        elif fmt == "metaimage":
            out = _read_metaimage(path, data, win, axis, slice_index, max_pixels, on_disk)
        elif fmt in ("png", "jpeg", "tiff", "bmp"):
            out = [_read_raster(path, data, fmt, max_pixels)]
        else:
            raise UnsupportedFormatError(
                path, "unsupported or unrecognised format (expected DICOM, NIfTI, NRRD, MetaImage, PNG, JPEG, TIFF or "
                "BMP)"
            )
        digest = hashlib.sha256(data).hexdigest()  # of the bytes read: the file, or the upload
        for im in out:
            im.meta.on_disk = on_disk
            im.meta.sha256 = digest
        return out
    except ImageReadError:
        raise
    except ValueError as e:  # bad options
        raise ImageReadError(path, str(e)) from None
    except Exception as e:  # noqa: BLE001 - any decoder failure becomes one clear error
        raise ImageReadError(path, f"cannot decode ({type(e).__name__}: {e})") from None


def read_image(path: str | Path, **kwargs) -> Image:
    """Read a file and return its first image (first frame / chosen slice)."""
    return read_images(path, **kwargs)[0]


def _is_dicom_part10(f: Path) -> bool:
    """The DICM magic at byte 128: a DICOM file whatever its name (PACS exports and DICOM media name files
    IM000001 or by UID, without an extension)."""
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# what medfake writes beside an image that is not an image to score: `kind` of a JSON index → its `files` keys
# that name such files (None: every file it lists)
DERIVED_INDEX = {"manipulated": ("mask", "mask_seg", "mask_volume", "mask_slab"), "detector-maps": None}
_MAX_INDEX_BYTES = 1_000_000


def derived_files(folder: str | Path) -> set[str]:
    """Names of the files in `folder` that medfake itself wrote as by-products, not images: the masks (PNG, DICOM
    SEG) that `medfake manipulate`'s JSON sidecars list, and the heat maps and masks that `medfake detect
    --heatmaps` lists in its `index.json`. Recognised by those JSON files only (kind and file list), never by name
    alone: a user's own `*_mask.png` is still an image."""
    import json

    out: set[str] = set()
    for j in Path(folder).glob("*.json"):
        try:
            if not j.is_file() or j.stat().st_size > _MAX_INDEX_BYTES:
                continue
            rec = json.loads(j.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or rec.get("kind") not in DERIVED_INDEX or not isinstance(rec.get("files"), dict):
            continue
        keys = DERIVED_INDEX[rec["kind"]]
        for k, names in rec["files"].items():
            if keys is None or k in keys:
                out.update(n for n in (names if isinstance(names, list) else [names])
                           if isinstance(n, str) and Path(n).name == n)
    return out


def iter_image_files(paths: Iterable[str | Path], left_out: list | None = None) -> Iterator[Path]:
    """Files as given, and folders searched recursively (sorted) for image files: by extension, and DICOM files
    without one by their magic bytes. A DICOMDIR (the index of DICOM media, no image) is left out, and so are the
    masks and heat maps medfake wrote beside images (`derived_files`); those are appended to `left_out` when given.
    A file named on its own is always yielded."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            derived: dict[Path, set[str]] = {}
            for f in sorted(p.rglob("*")):
                n = f.name.lower()
                if not f.is_file() or n == "dicomdir":
                    continue
                by_name = (f.suffix.lower() in RASTER_EXT | DICOM_EXT | NRRD_EXT | METAIMAGE_EXT
                           or n.endswith((".nii", ".nii.gz")))
                if not (by_name or _is_dicom_part10(f)):
                    continue
                if f.parent not in derived:
                    derived[f.parent] = derived_files(f.parent)
                if f.name in derived[f.parent]:
                    if left_out is not None:
                        left_out.append(f)
                    continue
                yield f
        else:
            yield p


# ---------------------------------------------------------------- raster
def dicom_series(folder: str | Path) -> list[Path]:
    """The single-frame DICOM files of the one series in `folder` (searched recursively, as `medfake detect` finds
    them; the masks and maps medfake wrote left out), in slice order: along the slice normal of their Image
    Orientation / Position (Patient), else by Instance Number. This is how CT and MR series are stored (a file per
    slice), and what CT-GAN tampered with. Headers only are read. A folder with no DICOM image, with files of
    several series, or slices of different sizes is one clear ImageReadError."""
    import pydicom

    folder = Path(folder)
    files, headers = [], []
    for f in iter_image_files([folder]):
        if not _is_dicom_part10(f):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not a DICOM file after all: not a slice of the series
            continue
        if "Rows" not in ds or NOT_IMAGES.get(str(ds.get("SOPClassUID", ""))):
            continue  # a SEG, a structured report, a DICOMDIR-like file: not a slice
        files.append(f)
        headers.append(ds)
    if not files:
        raise ImageReadError(folder, "no DICOM image in this folder")
    series = sorted({str(h.get("SeriesInstanceUID", "")) for h in headers})
    if len(series) > 1:
        raise ImageReadError(folder, f"holds {len(series)} DICOM series ({', '.join(u[-12:] for u in series[:4])}"
                                     f"{', …' if len(series) > 4 else ''}); give a folder that holds one")
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise ImageReadError(folder, "holds a multi-frame file: give that file (with --frame) instead of the folder")
    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(sizes) > 1:
        raise ImageReadError(folder, f"its slices differ in size ({', '.join(f'{c}×{r}' for r, c in sorted(sizes))})")

    def position(h) -> float | None:
        try:
            o = np.asarray([float(v) for v in h.ImageOrientationPatient], np.float64)
            return float(np.dot(np.cross(o[:3], o[3:]), [float(v) for v in h.ImagePositionPatient]))
        except (AttributeError, TypeError, ValueError):
            return None

    keys = [position(h) for h in headers]
    if any(k is None for k in keys):
        keys = [float(h.get("InstanceNumber", 0) or 0) for h in headers]
    order = sorted(range(len(files)), key=lambda i: (keys[i], str(files[i])))
    return [files[i] for i in order]


def _read_raster(path: Path, data: bytes, fmt: str, max_pixels: int) -> Image:
    from PIL import Image as PILImage

    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        old = PILImage.MAX_IMAGE_PIXELS
        try:
            PILImage.MAX_IMAGE_PIXELS = max_pixels
            im = PILImage.open(_io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels or w <= 0 or h <= 0:
                raise ImageTooLargeError(path, f"declared size {w}×{h} exceeds the limit of {max_pixels} pixels")
            im.load()
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as e:
            raise ImageTooLargeError(path, f"refused as a decompression bomb ({e})") from None
        finally:
            PILImage.MAX_IMAGE_PIXELS = old
    mode = im.mode
    colour = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        bits = 16
        top = 65535.0
        if mode == "I" and arr.max(initial=0) > 65535:
            top = float(arr.max())
        a = np.clip(arr / top, 0, 1)
        dtype = "uint16"
    elif mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ImageReadError(path, "contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        a = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        bits, dtype = 32, "float32"
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            colour = np.asarray(im)
            bg = PILImage.new("RGBA", im.size, (0, 0, 0, 255))
            im = PILImage.alpha_composite(bg, im)
        elif mode not in ("L", "1"):  # RGB, palette, CMYK, YCbCr (JPEG) ...
            colour = np.asarray(im.convert("RGB"))
        a = np.asarray(im.convert("L")).astype(np.float32) / 255.0
        bits, dtype = 8, "uint8"
    return Image(
        a.astype(np.float32),
        Meta(
            source=str(path),
            original_shape=(h, w),
            original_dtype=dtype,
            bits=bits,
            value_range=(0.0, float(2**bits - 1)) if bits in (8, 16) else None,
            photometric=mode,
            format=fmt,
            colour=colour,
        ),
    )


# ---------------------------------------------------------------- DICOM
# SOP classes whose pixel data are not an image: a folder run (`medfake detect studies/`) meets them beside the
# images they belong to, e.g. the DICOM SEG masks `medfake manipulate` writes
NOT_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation (a label map over another image)",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose (a dose grid)",
}


def _mosaic_count(ds) -> int:
    """How many slices a Siemens mosaic holds (0: not a mosaic): ImageType says MOSAIC and the CSA image header
    (read by nibabel's csareader) gives NumberOfImagesInMosaic. An unreadable CSA header means "not a mosaic"."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" not in image_type or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns on import that its *wrappers* are experimental
        from nibabel.nicom import csareader

        try:
            csa = csareader.get_csa_header(ds)
            n = int(csareader.get_n_mosaic(csa) or 0) if csareader.is_mosaic(csa) else 0
        except Exception:  # noqa: BLE001 - a damaged private header: read the picture as stored
            return 0
    return max(n, 0)


def _mosaic_tiles(arr: np.ndarray, n: int) -> np.ndarray | None:
    """The n slices of a Siemens mosaic (tiles laid out row by row on a ceil(sqrt(n))² grid) as (n, rows, cols);
    None when the picture is not such a grid (a cropped or damaged file: read as the picture it is)."""
    grid = int(np.ceil(np.sqrt(n)))
    rows, cols = arr.shape[:2]
    if rows % grid or cols % grid:
        return None
    tr, tc = rows // grid, cols // grid
    return np.stack([arr[(k // grid) * tr:(k // grid + 1) * tr, (k % grid) * tc:(k % grid + 1) * tc]
                     for k in range(n)])


def _pick(path: Path, n: int, slice_index, where: str = "") -> list[int]:
    """Slice numbers for slice_index None/"middle" (the middle one), "all" or a number."""
    if slice_index in (None, "middle"):
        return [n // 2]
    if slice_index == "all":
        return list(range(n))
    i = int(slice_index)
    if not 0 <= i < n:
        raise ImageReadError(path, f"slice {i} out of range (0..{n - 1}){where}")
    return [i]


LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights (as PIL's convert("L"))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey of RGB values (..., 3) as float64, BT.601 weights: R = G = B = v gives v."""
    return np.asarray(rgb)[..., :3].astype(np.float64) @ LUMA


def dicom_colour(ds, pixels: np.ndarray) -> np.ndarray | None:
    """The RGB values a viewer shows for DICOM `pixels` (pydicom's pixel_array, one frame or a stack), or None for a
    greyscale image. RGB/YBR: the samples (pydicom 3 converts YBR to RGB); PALETTE COLOR: the indices through the
    file's palette (pydicom's apply_color_lut), 16-bit palette entries by their high byte, so that it is 8-bit RGB
    like the rest. A palette that cannot be applied (missing or broken tables) gives None: read as its indices."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return pixels if pixels.ndim >= 3 and pixels.shape[-1] in (3, 4) else None
    if photometric != "PALETTE COLOR":
        return None
    from pydicom.pixels import apply_color_lut

    try:
        rgb = apply_color_lut(pixels, ds)
    except Exception:  # noqa: BLE001 - no usable palette: the indices are all there is
        return None
    if rgb.dtype.itemsize > 1:
        rgb = (rgb >> 8).astype(np.uint8) if rgb.max(initial=0) > 255 else rgb.astype(np.uint8)
    return rgb


def _read_dicom(path: Path, data: bytes, win, frames, max_pixels: int, slices=None) -> list[Image]:
    """`slices`: which slices of a Siemens mosaic (see _pick); False reads a mosaic as the picture it is stored as."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(_io.BytesIO(data), force=True)
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"not a readable DICOM file ({e})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data")
    kind = NOT_IMAGES.get(str(ds.get("SOPClassUID", "")))
    if kind:
        raise NotAnImageError(path, f"a DICOM {kind}, not an image (its pixel data are not a picture to score)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise ImageReadError(path, "DICOM file declares no image size (Rows/Columns)")
    if rows * cols * nframes > max_pixels:
        raise ImageTooLargeError(
            path, f"declared size {nframes}×{rows}×{cols} exceeds the limit of {max_pixels} pixels"
        )
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from None
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    # normalise to (frames, H, W[, C]); a Siemens mosaic's slices become its frames (as dcm2niix reads them)
    n_mosaic = _mosaic_count(ds) if slices is not False and spp == 1 and arr.ndim == 2 else 0
    tiles = _mosaic_tiles(arr, n_mosaic) if n_mosaic else None
    n_mosaic = n_mosaic if tiles is not None else 0
    if n_mosaic:
        stack = tiles
    elif nframes > 1:
        stack = arr
    else:
        stack = arr[None]
    colour = dicom_colour(ds, stack) if not n_mosaic else None
    if colour is not None:  # shown in colour (RGB, YBR, palette): read as the luminance of the colours a viewer shows
        stack = luminance(colour)
    if n_mosaic:
        indices = _pick(path, n_mosaic, slices)
        whole = apply_modality_lut(arr, ds)  # one range for the volume, unless a window is given or in the file
        mosaic_range = (float(whole.min()), float(whole.max()))
    else:
        indices = range(stack.shape[0]) if frames in ("all", None) else [int(frames)]
    spacing = ds.get("PixelSpacing", None) or ds.get("ImagerPixelSpacing", None)
    spacing_t = (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None
    out: list[Image] = []
    for i in indices:
        if not 0 <= i < stack.shape[0]:
            raise ImageReadError(path, f"frame {i} out of range (0..{stack.shape[0] - 1})")
        frame = stack[i]
        if colour is None:
            vals = apply_modality_lut(frame, ds).astype(np.float64)
        else:
            vals = frame.astype(np.float64)
        if not np.all(np.isfinite(vals)):
            raise ImageReadError(path, "pixel data contains NaN or infinite values")
        used_window = None
        if win is not None:
            c, w = win
            lo, hi = window_bounds(c, w)
            used_window = (c, w)
        elif colour is None and "WindowCenter" in ds and "WindowWidth" in ds:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            c = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
            w = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
            if w > 1:
                lo, hi = window_bounds(c, w)
                used_window = (c, w)
            else:
                lo, hi = float(vals.min()), float(vals.max())
        elif n_mosaic:  # one range for the whole volume: an edge slice's noise is not stretched to full contrast
            lo, hi = mosaic_range
        else:
            lo, hi = float(vals.min()), float(vals.max())
        if hi <= lo:
            hi = lo + 1.0
        a = np.clip((vals - lo) / (hi - lo), 0.0, 1.0)
        if photometric == "MONOCHROME1":
            a = 1.0 - a
        # Dataset.copy() shares the element dict: every frame's meta sees the one dataset of the file, and a
        # multi-frame file's pixel data stay in it for a whole-object edit (io.writers copies before changing it)
        meta_ds = ds.copy()
        if "PixelData" in meta_ds and (nframes == 1 or n_mosaic):
            del meta_ds.PixelData
        out.append(
            Image(
                a.astype(np.float32),
                Meta(
                    source=str(path),
                    frame=(i if len(indices) > 1 else None) if n_mosaic else (i if stack.shape[0] > 1 else None),
                    original_shape=tuple(frame.shape[:2]) if n_mosaic else (rows, cols),
                    original_dtype=str(arr.dtype),
                    bits=bits_stored,
                    value_range=(lo, hi),
                    dicom_modality=str(ds.get("Modality", "")) or None,
                    pixel_spacing=spacing_t,
                    window=used_window,
                    photometric=photometric,
                    format="dicom",
                    dicom=meta_ds,
                    colour=colour[i] if colour is not None and colour.dtype == np.uint8 and colour.ndim == 4 else None,
                    stored=frame if colour is None and frame.ndim == 2 and frame.dtype.kind in "iu" else None,
                    extra={
                        "rescale_slope": float(ds.get("RescaleSlope", 1) or 1),
                        "rescale_intercept": float(ds.get("RescaleIntercept", 0) or 0),
                        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
                        "stored_min": float(vals.min()),
                        "stored_max": float(vals.max()),
                        "samples_per_pixel": spp,
                        "number_of_frames": nframes,
                    } | ({"mosaic": {"slices": n_mosaic, "slice": i}} if n_mosaic else {}),
                ),
            )
        )
    return out


# ---------------------------------------------------------------- NIfTI
def _inflate(path: Path, data: bytes, limit: int, kind: str = "gzip") -> bytes:
    """Decompress `data` (gzip or bzip2) to at most `limit` bytes: a file that inflates further is refused with
    ImageTooLargeError before the excess is ever allocated (a 32 MB upload of zeros inflates to 32 GB)."""
    import bz2
    import zlib

    out = bytearray()
    rest = data
    while rest:  # one member after another (gzip allows several)
        d = bz2.BZ2Decompressor() if kind == "bzip2" else zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, limit + 1 - len(out))  # ≥ 1: 0 would mean "no limit"
        except (OSError, zlib.error, EOFError, ValueError) as e:
            raise ImageReadError(path, f"corrupt {kind} stream ({e})") from None
        if len(out) > limit:
            raise ImageTooLargeError(path, f"decompresses to more than the {limit} bytes its declared size needs "
                                           "(a decompression bomb?)")
        if not d.eof:
            raise ImageReadError(path, f"truncated {kind} stream")
        rest = d.unused_data.lstrip(b"\0") if kind == "gzip" else d.unused_data
    return bytes(out)


def _nifti_limit(path: Path, data: bytes, max_pixels: int) -> int:
    """Bytes a gzipped NIfTI may inflate to, from its header alone (inflated first on its own): refuses a declared
    size over `max_pixels` before the voxels are decompressed."""
    import zlib

    import nibabel as nib

    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 540)
    except zlib.error as e:
        raise ImageReadError(path, f"corrupt gzip stream ({e})") from None
    size = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    for cls in [c for c in (nib.Nifti1Header, nib.Nifti2Header) if c.sizeof_hdr in size]:
        try:  # the fixed header only: extensions (dcmstack's JSON, AFNI's XML) may run past these bytes
            hdr = cls.from_fileobj(_io.BytesIO(head[:cls.sizeof_hdr]))
            break
        except Exception:  # noqa: BLE001 - try the other version
            continue
    else:
        raise ImageReadError(path, "not a readable NIfTI file (no NIfTI-1 or NIfTI-2 header)")
    shape = tuple(int(v) for v in hdr.get_data_shape())
    if int(np.prod(shape)) > max_pixels:
        raise ImageTooLargeError(path, f"declared size {shape} exceeds the limit of {max_pixels} pixels")
    return int(hdr.get_data_offset()) + int(np.prod(shape)) * hdr.get_data_dtype().itemsize + 4096


def _read_nifti(path: Path, data: bytes, win, axis: int, slice_index, max_pixels: int) -> list[Image]:
    import nibabel as nib

    raw = _inflate(path, data, _nifti_limit(path, data, max_pixels)) if data[:2] == b"\x1f\x8b" else data
    try:
        img = nib.Nifti1Image.from_bytes(raw)
    except Exception:  # noqa: BLE001
        try:
            img = nib.Nifti2Image.from_bytes(raw)
        except Exception as e:  # noqa: BLE001
            raise ImageReadError(path, f"not a readable NIfTI file ({e})") from None
    return _volume_images(path, img, win, axis, slice_index, max_pixels, "nifti")


# NRRD "space" → the signs that take its axes to RAS+ (NIfTI's world)
_NRRD_SPACE_TO_RAS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1), "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1), "scanner-xyz": (1, 1, 1), "3d-right-handed": (1, 1, 1),
}


def _read_nrrd(path: Path, data: bytes, win, axis: int, slice_index, max_pixels: int) -> list[Image]:
    """An attached-header NRRD (3D Slicer's format; pynrrd parses it) as a volume with the affine its space
    directions and origin give (LPS and LAS spaces turned to RAS+), then sliced as a NIfTI is. Detached headers
    (.nhdr + data file) are refused: one file must hold the image."""
    import nibabel as nib
    import nrrd

    fh = _io.BytesIO(data)
    try:
        header = nrrd.read_header(fh)
    except Exception as e:  # noqa: BLE001 - pynrrd raises NRRDError and plain parse errors
        raise ImageReadError(path, f"not a readable NRRD file ({e})") from None
    if "data file" in header or "datafile" in header:
        raise UnsupportedFormatError(path, "a detached NRRD header (its voxels are in another file); save the "
                                           "image as one .nrrd")
    try:
        sizes = [int(v) for v in header["sizes"]]
        itemsize = nrrd.reader._determine_datatype(header).itemsize  # pynrrd's own reading of "type" (pinned)
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"not a readable NRRD file ({e})") from None
    if not 2 <= len(sizes) <= 4 or min(sizes) < 1:
        raise ImageReadError(path, f"NRRD of sizes {sizes}: need a 2-D, 3-D or 4-D image")
    if int(np.prod(sizes)) > max_pixels:
        raise ImageTooLargeError(path, f"declared size {tuple(sizes)} exceeds the limit of {max_pixels} pixels")
    encoding = str(header.get("encoding", "raw")).lower()
    payload = fh.getvalue()[fh.tell():]
    need = int(np.prod(sizes)) * itemsize
    if encoding in ("gzip", "gz", "bzip2", "bz2"):
        payload = _inflate(path, payload, need + 1024, "bzip2" if encoding.startswith("bz") else "gzip")
        header = dict(header, encoding="raw")
    try:
        arr = nrrd.read_data(header, _io.BytesIO(payload), index_order="F")
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"cannot decode the NRRD data ({type(e).__name__}: {e})") from None
    dirs = header.get("space directions")
    spatial = list(range(arr.ndim))
    affine = np.eye(4)
    if dirs is not None:
        dirs = np.asarray(dirs, dtype=np.float64)
        spatial = [i for i in range(arr.ndim) if np.all(np.isfinite(dirs[i]))]
        vectors = dirs[spatial]
        if vectors.shape[1] == len(spatial) <= 3:
            affine[:len(spatial), :len(spatial)] = vectors.T
            origin = np.asarray(header.get("space origin", np.zeros(len(spatial))), dtype=np.float64)
            affine[:len(spatial), 3] = np.where(np.isfinite(origin), origin, 0.0)
            flip = _NRRD_SPACE_TO_RAS.get(str(header.get("space", "")).lower(), (1, 1, 1))
            affine = np.diag([*flip[:len(spatial)], *[1] * (4 - len(spatial))]) @ affine
        else:
            spatial = list(range(arr.ndim))
    elif header.get("spacings") is not None:
        sp = np.asarray(header["spacings"], dtype=np.float64)[:3]
        affine[:len(sp), :len(sp)] = np.diag(np.where(np.isfinite(sp) & (sp > 0), sp, 1.0))
    others = [i for i in range(arr.ndim) if i not in spatial]
    vol = np.moveaxis(arr, spatial + others, list(range(arr.ndim)))
    while vol.ndim > len(spatial):
        vol = vol[..., 0]  # a list or time axis: its first element
    if vol.ndim == 2:
        vol = vol[:, :, None]
    return _volume_images(path, nib.Nifti1Image(np.ascontiguousarray(vol), affine), win, axis, slice_index,
                          max_pixels, "nrrd")


_MHA_HEADER_MAX = 65_536
_MHA_ITEMSIZE = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                 "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                 "MET_DOUBLE": 8}


def metaimage_header(path: Path, data: bytes) -> tuple[dict[str, str], int]:
    """The "Key = Value" lines of a MetaImage header, up to and including ElementDataFile (always its last key),
    and the offset where inline voxels start. Checked before SimpleITK sees the file: the declared size
    (decompression-bomb guard) and where the voxels are (ElementDataFile may name any path)."""
    fields: dict[str, str] = {}
    pos = 0
    for raw in data[:_MHA_HEADER_MAX].split(b"\n"):
        pos += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise ImageReadError(path, f"not a MetaImage header (line {line[:40]!r} is not 'Key = Value')")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, pos
    raise ImageReadError(path, "not a MetaImage file: no ElementDataFile line in its header")


def _read_metaimage(path: Path, data: bytes, win, axis: int, slice_index, max_pixels: int,
                    on_disk: bool) -> list[Image]:
    """A MetaImage (ITK's .mha with its voxels inline, or an .mhd header with a data file beside it; SimpleITK
    decodes it) as a volume with the affine its direction, spacing and origin give (LPS turned to RAS+), then
    sliced as a NIfTI is. The header is checked first (`metaimage_header`); an upload must be one .mha."""
    import nibabel as nib

    h, offset = metaimage_header(path, data)
    try:
        ndims = int(h.get("NDims", "0"))
        dims = [int(v) for v in h.get("DimSize", "").split()]
        comps = int(h.get("ElementNumberOfChannels", "1"))
    except ValueError as e:
        raise ImageReadError(path, f"not a readable MetaImage header ({e})") from None
    if not 2 <= ndims <= 4 or len(dims) != ndims or min(dims) < 1:
        raise ImageReadError(path, f"MetaImage of NDims {ndims}, DimSize {dims}: need a 2-D, 3-D or 4-D image")
    if h.get("ElementType") not in _MHA_ITEMSIZE or comps < 1:
        raise ImageReadError(path, f"MetaImage element type {h.get('ElementType')!r} x {comps} is not supported")
    if int(np.prod(dims)) * comps > max_pixels:
        raise ImageTooLargeError(path, f"declared size {tuple(dims)} exceeds the limit of {max_pixels} pixels")
    where = h["ElementDataFile"]
    need = int(np.prod(dims)) * comps * _MHA_ITEMSIZE[h["ElementType"]]
    uncompressed = h.get("CompressedData", "False").lower() != "true"
    if where == "LOCAL" and uncompressed and len(data) - offset < need:
        raise ImageReadError(path, f"truncated: {max(len(data) - offset, 0)} of the {need} bytes of voxel data its "
                                   "header declares")
    if where != "LOCAL":
        if not on_disk:
            raise UnsupportedFormatError(path, "a detached MetaImage header (its voxels are in another file); send "
                                               "the image as one .mha")
        if where in ("", ".", "..", "LIST") or any(c in where for c in "/\\%") or where.split()[0] != where:
            raise UnsupportedFormatError(path, f"MetaImage data file {where!r} is not a plain file name beside the "
                                               "header (lists, patterns and paths are refused)")
        if not (path.parent / where).is_file():
            raise ImageReadError(path, f"its data file {where} is not beside it")
        if uncompressed and (path.parent / where).stat().st_size < need:
            raise ImageReadError(path, f"truncated: its data file {where} holds fewer than the {need} bytes of voxel "
                                       "data its header declares")
    import SimpleITK as sitk  # noqa: N813 - the library's own spelling

    with tempfile.TemporaryDirectory() if not on_disk else contextlib.nullcontext() as tmp:
        name = str(path)
        if tmp is not None:  # an upload: SimpleITK reads files, so the bytes go to a private one
            name = str(Path(tmp) / "upload.mha")
            Path(name).write_bytes(data)
        reader = sitk.ImageFileReader()
        reader.SetImageIO("MetaImageIO")
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
            size = [int(v) for v in reader.GetSize()]
            if int(np.prod(size)) * reader.GetNumberOfComponents() > max_pixels:
                raise ImageTooLargeError(path, f"declared size {tuple(size)} exceeds the limit of {max_pixels} "
                                               "pixels")
            img = reader.Execute()
        except ImageReadError:
            raise
        except RuntimeError as e:  # ITK's exceptions: corrupt or unreadable voxels
            lines = [re.sub(r"\(0x[0-9a-f]+\)", "", ln.strip()) for ln in str(e).splitlines()
                     if ln.strip() and "Reason: Success" not in ln]
            raise ImageReadError(path, "cannot decode the MetaImage data (corrupt or truncated; "
                                       f"{lines[-1][:200] if lines else 'ITK gave no reason'})") from None
    arr = sitk.GetArrayFromImage(img)  # C order: (t,) z, y, x (, component)
    if img.GetNumberOfComponentsPerPixel() > 1:
        if img.GetNumberOfComponentsPerPixel() not in (3, 4):
            raise UnsupportedFormatError(path, f"MetaImage of {img.GetNumberOfComponentsPerPixel()} values per "
                                               "pixel: need grey, RGB or RGBA")
        arr = luminance(arr[..., :3].astype(np.float64)).astype(np.float32)
    d = img.GetDimension()
    vol = np.transpose(arr, tuple(range(arr.ndim))[::-1])  # x, y, z (, t)
    while vol.ndim > 3:
        vol = vol[..., 0]  # 4-D: the first volume, as NIfTI's and NRRD's readers take it
    k = min(d, 3)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(d, d)[:k, :k]
    affine = np.eye(4)
    affine[:k, :k] = direction @ np.diag(np.asarray(img.GetSpacing(), dtype=np.float64)[:k])
    affine[:k, 3] = np.asarray(img.GetOrigin(), dtype=np.float64)[:k]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's physical space is LPS
    if vol.ndim == 2:
        vol = vol[:, :, None]
    return _volume_images(path, nib.Nifti1Image(np.ascontiguousarray(vol), affine), win, axis, slice_index,
                          max_pixels, "metaimage")


def _volume_images(path: Path, img, win, axis: int, slice_index, max_pixels: int, fmt: str) -> list[Image]:
    """The chosen slice(s) of a NIfTI image (a NIfTI file's, or an NRRD's turned into one), for display."""
    import nibabel as nib

    source = img  # as stored: what a NIfTI's edited slice is written back into (io.writers.nifti_with_edit)
    if len(img.shape) >= 3:
        # voxel axes as the affine says (RAS+, nibabel's closest canonical orientation), so that a volume stored in
        # another voxel order (LPS from DICOM or NRRD converters, flipped axes) is displayed the same way
        img = nib.as_closest_canonical(img)
    what = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage"}.get(fmt, fmt)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2:
        raise ImageReadError(path, f"{what} has {len(shape)} dimension(s); need at least 2")
    if int(np.prod(shape)) > max_pixels:
        raise ImageTooLargeError(path, f"declared size {shape} exceeds the limit of {max_pixels} pixels")
    # display values: float32 (half a large volume's memory) unless the file holds 64-bit values
    vol = np.asarray(img.dataobj, dtype=np.float64 if np.dtype(img.get_data_dtype()).itemsize > 4 else np.float32)
    while vol.ndim > 3:
        vol = vol[..., 0]
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if not 0 <= axis < 3:
        raise ImageReadError(path, f"axis must be 0, 1 or 2, got {axis}")
    if not np.all(np.isfinite(vol)):
        raise ImageReadError(path, f"{what} contains NaN or infinite values")
    idx = _pick(path, vol.shape[axis], slice_index, f" on axis {axis}")
    if win is not None:
        lo, hi = window_bounds(*win)
    else:
        lo, hi = float(vol.min()), float(vol.max())
        if hi <= lo:
            hi = lo + 1.0
    zooms = img.header.get_zooms()
    others = [d for d in range(3) if d != axis]
    spacing = (float(zooms[others[0]]), float(zooms[others[1]])) if len(zooms) >= 3 else None
    out = []
    for i in idx:
        sl = vol[(slice(None),) * axis + (i,)]  # a view (np.take copied ~1 s per slice out of a 512×512×200 volume)
        # radiological display: axial anterior up and the patient's right on the left (as CT and MR viewers show
        # them, and as medimg128's slices are); coronal superior up, right on the left; sagittal anterior left
        sl = np.fliplr(np.rot90(sl))
        a = np.clip((sl - lo) / (hi - lo), 0, 1).astype(np.float32)
        out.append(
            Image(
                np.ascontiguousarray(a),
                Meta(
                    source=str(path),
                    frame=i if len(idx) > 1 else None,
                    original_shape=shape,
                    original_dtype=str(img.get_data_dtype()),
                    bits=16 if np.dtype(img.get_data_dtype()).itemsize >= 2 else 8,
                    value_range=(lo, hi),
                    pixel_spacing=spacing,
                    window=win,
                    format=fmt,
                    extra={"axis": axis, "slice": i},
                    volume=source if fmt == "nifti" else None,
                ),
            )
        )
    return out
