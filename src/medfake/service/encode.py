"""Small helpers turning arrays and files into what the API returns (PNG bytes, base64, data URLs)."""

from __future__ import annotations

import base64

import numpy as np

from ..io.image import Image
from ..io.writers import png_bytes


def png_of(a: Image | np.ndarray) -> bytes:
    if isinstance(a, Image):
        return png_bytes(a, bits=8)
    arr = np.asarray(a)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    return png_bytes(np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0), bits=8)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def png_url(a: Image | np.ndarray | None) -> str | None:
    return None if a is None else data_url(png_of(a))
