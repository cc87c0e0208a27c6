"""The one output path: every image that leaves the pipeline for a data set (real or generated) is written
here, as a 128×128 8-bit greyscale PNG with no metadata chunks, so a detector cannot learn the format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.image import Image
from ..io.writers import png_bytes
from .modalities import IMAGE_SIZE


def to_canonical(image: Image | np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Float32 [0,1] size×size: centre crop to square, Lanczos resize (as medimg128 was made), 8-bit quantised."""
    from PIL import Image as PILImage

    a = image.array if isinstance(image, Image) else np.asarray(image, dtype=np.float32)
    h, w = a.shape
    if (h, w) != (size, size):
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        a = a[y0 : y0 + s, x0 : x0 + s]
        im = PILImage.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), mode="L")
        im = im.resize((size, size), PILImage.Resampling.LANCZOS)
        a = np.asarray(im).astype(np.float32) / 255.0
    return (np.round(np.clip(a, 0, 1) * 255) / 255).astype(np.float32)


def canonical_png_bytes(image: Image | np.ndarray) -> bytes:
    return png_bytes(to_canonical(image), bits=8)


def write_canonical(image: Image | np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canonical_png_bytes(image))
    return path
