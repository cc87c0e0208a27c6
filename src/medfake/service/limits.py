"""Request limits: body size (streamed, capped), per-file size, file counts, decoded pixel counts.

Every limit violation is an HTTP error with a JSON `{"detail": ...}` body; nothing is written to disk.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, UploadFile

from ..io.errors import ImageReadError, ImageTooLargeError
from ..io.image import Image
from ..io.readers import MULTI_IMAGE_FORMATS, read_images

CHUNK = 64 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")


class BodyTooLarge(Exception):
    """Raised from the body-counting middleware when a request body exceeds the cap."""


def safe_name(filename: str | None, default: str = "upload") -> str:
    """A client file name reduced to a harmless basename (never used to open anything; shown in replies)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _SAFE.sub("_", name).strip(" .")[:100]
    return name or default


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file in chunks; more than `max_bytes` → 413 (stops reading at the cap)."""
    buf = bytearray()
    while True:
        chunk = await upload.read(CHUNK)
        if not chunk:
            break
        buf += chunk
        if len(buf) > max_bytes:
            raise HTTPException(413, f"{safe_name(upload.filename)}: file exceeds the upload limit of {max_bytes} bytes")
    return bytes(buf)


def check_count(n: int, limit: int, what: str = "files") -> None:
    if n > limit:
        raise HTTPException(413, f"too many {what}: {n} (limit {limit} per request)")


def decode_image(data: bytes, name: str, max_pixels: int, mosaic: bool = True, frame: int | None = None) -> Image:
    """Decode uploaded bytes (DICOM, NIfTI, NRRD, MetaImage .mha, PNG, JPEG, TIFF, BMP) into one Image (first
    frame / middle slice; a Siemens mosaic's middle slice, or with `mosaic=False` the mosaic as one picture, as
    manipulation needs it; `frame`: that frame of a multi-frame DICOM or slice of a volume, 0-based, a frame the
    file lacks → 422).

    Too many declared pixels → 413; anything undecodable → 422. `name` is only a label, never opened.
    """
    picked = {"frames": 0} if frame is None else {"frames": frame, "slice_index": frame}
    images = _decode(data, name, max_pixels, mosaic=mosaic, **picked)
    img = images[0]
    if frame and img.meta.format not in MULTI_IMAGE_FORMATS:
        raise HTTPException(422, f"{name}: holds one image, so it has no frame {frame}")
    h, w = img.shape
    if h < 8 or w < 8:
        raise HTTPException(422, f"{name}: image is {w}×{h} pixels; at least 8×8 is needed")
    return img


def decode_frames(data: bytes, name: str, max_pixels: int) -> list[Image]:
    """Every frame of an uploaded multi-frame DICOM (as `decode_image` reads one: mosaic whole), for a lesion over
    several frames; the same 413 / 422 answers."""
    return _decode(data, name, max_pixels, mosaic=False, frames="all")


def _decode(data: bytes, name: str, max_pixels: int, **kw) -> list[Image]:
    try:
        images = read_images(name, data=data, max_pixels=max_pixels, **kw)
    except ImageTooLargeError as e:
        raise HTTPException(413, f"{name}: {e.reason}") from None
    except ImageReadError as e:
        raise HTTPException(422, f"{name}: {e.reason}") from None
    except (ValueError, MemoryError, OverflowError) as e:
        raise HTTPException(422, f"{name}: cannot decode ({type(e).__name__})") from None
    if not images:
        raise HTTPException(422, f"{name}: no image in file")
    return images
