"""The one canonical in-memory image: float32 H×W in [0, 1] plus metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Meta:
    source: str | None = None
    frame: int | None = None  # frame index for multi-frame DICOM / NIfTI slice index
    original_shape: tuple[int, ...] | None = None
    original_dtype: str | None = None
    bits: int = 8  # bit depth of the original pixel data (8 or 16 typically)
    value_range: tuple[float, float] | None = None  # original (min, max) the [0, 1] scale maps to
    modality: str | None = None  # medfake modality (brain_mri, ...) if known
    label: str | None = None
    dicom_modality: str | None = None  # DICOM Modality tag (CT, MR, ...)
    pixel_spacing: tuple[float, float] | None = None
    window: tuple[float, float] | None = None  # (centre, width) used, in rescaled units
    photometric: str | None = None
    format: str | None = None  # png, jpeg, dicom, nifti, ...
    dicom: Any = None  # the pydicom Dataset when it came from DICOM: without pixel data, except a multi-frame
    # file's (shared by its frames' Images, not copied), which `io.write_dicom(all_frames=True)` writes back
    extra: dict = field(default_factory=dict)
    # a colour input's pixels as shown (RGB, or RGBA for rasters; H×W×3|4 uint8): the grey `array` is their
    # luminance; an edit keeps them outside its mask (manipulation's colour in, colour out)
    colour: Any = field(default=None, repr=False)
    # a greyscale DICOM frame's stored values as in the file (before rescale): what an edit keeps outside its mask
    stored: Any = field(default=None, repr=False)
    # the nibabel image a NIfTI slice was read from, as stored (before the reader's reorientation): what
    # `io.writers.nifti_with_edit` writes the edited slice back into
    volume: Any = field(default=None, repr=False)
    on_disk: bool = False  # read from the file `source` names (not from bytes under a name, as uploads are)
    sha256: str | None = None  # of the bytes read: the file's, or an upload's


@dataclass
class Image:
    array: np.ndarray
    meta: Meta = field(default_factory=Meta)

    def __post_init__(self):
        a = np.asarray(self.array)
        if a.ndim != 2:
            raise ValueError(f"Image array must be 2-D (H×W), got shape {a.shape}")
        a = a.astype(np.float32, copy=False)
        if not np.all(np.isfinite(a)):
            raise ValueError("Image array contains NaN or infinite values")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(f"Image array must be in [0, 1], got [{a.min():.4g}, {a.max():.4g}]")
        self.array = a

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def name(self) -> str:
        src = self.meta.source or "image"
        return src if self.meta.frame is None else f"{src}#{self.meta.frame}"

    def with_array(self, array: np.ndarray, **meta_changes) -> "Image":
        from dataclasses import replace

        return Image(np.clip(array, 0.0, 1.0), replace(self.meta, **meta_changes))

    def to_uint8(self) -> np.ndarray:
        return to_uint(self.array, 8)

    def to_native(self) -> np.ndarray:
        """Values back in the original range and dtype (e.g. HU-rescaled int16 for CT is not restored here;
        this is the stored pixel range the [0, 1] scale was made from)."""
        lo, hi = self.meta.value_range or (0.0, float(2**self.meta.bits - 1))
        return self.array * (hi - lo) + lo


def to_uint(array: np.ndarray, bits: int) -> np.ndarray:
    top = 2**bits - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(np.clip(array, 0.0, 1.0) * top).astype(dtype)
