"""Any size in, same size out: native values, the square crop around the mask, 128 px working copy, and the
paste-back that touches only the mask's support.

Value spaces
------------
* *stored*: the exact pixel values of the input in its own dtype — uint8/uint16 for PNG (and other rasters),
  the DICOM stored values (e.g. int16 CT) for DICOM. Unmasked output pixels are copied from here, bit for bit.
* *units*: stored × RescaleSlope + RescaleIntercept (Hounsfield units for CT); identity for rasters.
* *working*: units mapped linearly to [0, 1] over a range that depends on the method: the display window the
  reader used (``"display"``, what the generators were trained on — diffusion methods and splicing) or the
  image's full value range (``"full"``, nothing clipped — copy-move and retouch). MONOCHROME1 is inverted in
  the display space so the working copy looks like the training images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.image import Image, to_uint
from ..io.writers import native_stored_values

WORK_SIZE = 128


@dataclass
class Native:
    """The input's exact stored pixels and the mapping stored ↔ units ↔ display."""

    stored: np.ndarray
    slope: float = 1.0
    intercept: float = 0.0
    smin: float = 0.0
    smax: float = 255.0
    display: tuple[float, float] = (0.0, 255.0)  # units range that display [0, 1] spans
    invert: bool = False  # MONOCHROME1
    out_format: str = "png"  # "png" or "dicom"
    bits: int = 8
    # where `stored` came from: pixels | file | reconstructed | given | colour | grey of colour
    stored_source: str = "pixels"
    # a colour input's RGB(A) pixels (Meta.colour): `stored` is then their luminance, and the output is colour
    colour: np.ndarray | None = None

    def units(self) -> np.ndarray:
        return self.stored.astype(np.float64) * self.slope + self.intercept

    def from_units(self, units: np.ndarray) -> np.ndarray:
        s = np.round((np.asarray(units, np.float64) - self.intercept) / self.slope)
        return np.clip(s, self.smin, self.smax).astype(self.stored.dtype)

    def to_display(self, units: np.ndarray) -> np.ndarray:
        lo, hi = self.display
        a = np.clip((units - lo) / (hi - lo), 0.0, 1.0)
        return (1.0 - a if self.invert else a).astype(np.float32)

    def working_range(self, kind: str) -> tuple[float, float, bool]:
        if kind == "display":
            lo, hi = self.display
            return lo, hi, self.invert
        if kind == "full":
            u = self.units()
            lo, hi = float(u.min()), float(u.max())
            return lo, (hi if hi > lo else lo + 1.0), False
        raise ValueError(f"unknown working range {kind!r}")


def _dtype_limits(dtype: np.dtype, bits: int, signed: bool) -> tuple[float, float]:
    info = np.iinfo(dtype)
    smin = -(2 ** (bits - 1)) if signed else 0
    smax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return float(max(info.min, smin)), float(min(info.max, smax))


def native_of(image: Image, original: np.ndarray | None = None) -> Native:
    """The exact stored pixels of `image` and their value mapping.

    Rasters (PNG/JPEG/TIFF/BMP), NIfTI and in-memory images: the 8- or 16-bit integers of the image as read
    (``to_uint(array, bits)``, exact for 8/16-bit files). Colour inputs: their colours (see _colour_native).
    DICOM: ``original`` if given, else the frame's stored values the reader kept (``Meta.stored``) when they
    still match the in-memory image, else ``io.native_stored_values`` (exact inside the display window; values
    outside it come back clipped to the window)."""
    m = image.meta
    grey = int(m.extra.get("samples_per_pixel", 1)) == 1 and not str(m.photometric or "").startswith(
        ("RGB", "YBR", "PALETTE"))
    fmt = "dicom" if m.format == "dicom" and m.dicom is not None else "png"
    nat = _colour_native(image, fmt)
    if nat is not None:
        return nat
    if fmt == "dicom" and not grey:
        # colour DICOM whose colours are not at hand (an image made in memory, changed since it was read, or 16-bit
        # colour): what every stage saw is its 8-bit grey rendering; the output is a greyscale derived DICOM of
        # those values (io.dicom_derived drops the colour attributes), so DICOM in stays DICOM out
        return Native(to_uint(image.array, 8), 1.0, 0.0, 0.0, 255.0, (0.0, 255.0), False, "dicom", 8, "grey of colour")
    if m.format == "dicom" and m.dicom is not None:
        slope = float(m.extra.get("rescale_slope", 1.0)) or 1.0
        inter = float(m.extra.get("rescale_intercept", 0.0))
        signed = int(m.extra.get("pixel_representation", 0)) == 1
        bits = int(m.bits or 16)
        lo, hi = m.value_range or (float(m.extra.get("stored_min", 0.0)), float(m.extra.get("stored_max", 1.0)))
        nat = Native(np.zeros((1, 1), np.int16), slope, inter, 0, 0, (float(lo), float(hi)),
                     m.photometric == "MONOCHROME1", "dicom", bits)
        stored, source = None, "given"
        if original is not None:
            stored = np.asarray(original)
            if stored.shape != image.shape or stored.dtype.kind not in "iu":
                raise ValueError(f"original stored array must be integer with shape {image.shape}, got "
                                 f"{stored.dtype} {stored.shape}")
        else:
            stored = _stored_of(m)
            source = "file"  # the file's values as read
            if stored is not None:
                nat.stored = stored
                if stored.shape != image.shape or np.abs(nat.to_display(nat.units()) - image.array).max() > 2e-3:
                    stored = None  # the file no longer matches the in-memory image
        if stored is None:
            stored, source = native_stored_values(image), "reconstructed"
        nat.stored, nat.stored_source = stored, source
        nat.smin, nat.smax = _dtype_limits(stored.dtype, bits, signed)
        return nat
    bits = 16 if (m.bits or 8) > 8 else 8
    stored = to_uint(image.array, bits)
    top = float(2**bits - 1)
    return Native(stored, 1.0, 0.0, 0.0, top, (0.0, top), False, "png", bits, "pixels")


def _colour_native(image: Image, fmt: str) -> Native | None:
    """Colour in, colour out: a colour input (Meta.colour, RGB or RGBA 8-bit as the reader kept it) whose grey
    rendering is still the image's. `stored` is the luminance (0–255) of the colours as shown (RGBA composited on
    black, as the reader does); the display range is the reader's; `colour` is what the output keeps outside the
    mask. None for a grey input, or when the image no longer is the rendering of those colours."""
    m = image.meta
    rgb = m.colour
    if rgb is None:
        return None
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[:2] != image.shape or rgb.shape[2] not in (3, 4):
        return None
    lum = _shown_luma(rgb)
    lo, hi = (m.value_range or (0.0, 255.0)) if fmt == "dicom" else (0.0, 255.0)
    nat = Native(np.clip(np.round(lum), 0, 255).astype(np.uint8), 1.0, 0.0, 0.0, 255.0, (float(lo), float(hi)),
                 False, fmt, 8, "colour", colour=rgb)
    # the grey image must still be these colours' rendering (rasters: PIL's integer luma, within rounding)
    if np.abs(nat.to_display(lum) - image.array).max() > 2.5 / max(hi - lo, 1.0):
        return None
    return nat


def _stored_of(meta) -> np.ndarray | None:
    """The frame's stored values the reader kept (Meta.stored; never a file opened by name: an upload's name is a
    label), or None."""
    stored = meta.stored
    if stored is None or np.asarray(stored).ndim != 2 or np.asarray(stored).dtype.kind not in "iu":
        return None
    return np.asarray(stored)


# ------------------------------------------------------------------ crop geometry
@dataclass(frozen=True)
class CropBox:
    """Square box (may extend past the image; that part is edge-padded) in native pixels."""

    y0: int
    x0: int
    side: int

    @property
    def scale(self) -> float:  # working (128 px) pixels per native pixel
        return WORK_SIZE / self.side

    def as_dict(self) -> dict:
        return {"x1": self.x0, "y1": self.y0, "x2": self.x0 + self.side, "y2": self.y0 + self.side}


def crop_box(bounds: tuple[int, int, int, int], shape: tuple[int, int], *, context: float = 1.0,
             min_side: int = 64) -> CropBox:
    """Square around `bounds` (x1, y1, x2, y2): side = extent × (1 + 2·context), at least min_side (or the image),
    at most the larger image side; shifted to stay inside the image where it fits."""
    if context < 0:
        raise ValueError(f"context must be ≥ 0, got {context}")
    h, w = shape
    x1, y1, x2, y2 = bounds
    ext = max(x2 - x1, y2 - y1)
    side = int(np.ceil(ext * (1.0 + 2.0 * context)))
    side = max(side, min(int(min_side), max(h, w)), ext, 1)
    side = min(side, max(h, w))
    side = max(side, ext)
    cy, cx = (y1 + y2) / 2.0, (x1 + x2) / 2.0

    def place(c, n):
        if side <= n:
            return int(np.clip(round(c - side / 2.0), 0, n - side))
        return (n - side) // 2

    return CropBox(place(cy, h), place(cx, w), side)


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    h, w = array.shape
    y0, x0, s = box.y0, box.x0, box.side
    pt, pl = max(0, -y0), max(0, -x0)
    pb, pr = max(0, y0 + s - h), max(0, x0 + s - w)
    a = np.pad(array, ((pt, pb), (pl, pr)), mode="edge") if (pt or pb or pl or pr) else array
    return a[y0 + pt : y0 + pt + s, x0 + pl : x0 + pl + s]


def uncrop_into(full: np.ndarray, part: np.ndarray, box: CropBox) -> np.ndarray:
    """Write `part` (side×side) back into a copy of `full` where the box overlaps the image."""
    out = full.copy()
    h, w = full.shape
    y0, x0, s = box.y0, box.x0, box.side
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(h, y0 + s), min(w, x0 + s)
    out[ya:yb, xa:xb] = part[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


def resize(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Float resize with Pillow (mode F, Lanczos: antialiased when shrinking)."""
    from PIL import Image as PILImage

    hw = (size, size) if isinstance(size, int) else tuple(size)
    a = np.asarray(array, np.float32)
    if a.shape == hw:
        return a.copy()
    im = PILImage.fromarray(a, mode="F").resize((hw[1], hw[0]), PILImage.Resampling.LANCZOS)
    return np.asarray(im, np.float32)


def mask_to_work(support_crop: np.ndarray) -> np.ndarray:
    """Native support (side×side bool) → 128 px bool: any coverage counts, plus a 1 px safety ring so every
    native support pixel's resampling kernel sees regenerated content."""
    from scipy import ndimage

    cov = resize(support_crop.astype(np.float32), WORK_SIZE)
    m = cov > 0.02
    if support_crop.shape[0] > WORK_SIZE:  # shrinking: the Lanczos kernel spans more native pixels
        m = ndimage.binary_dilation(m, iterations=1)
    return m


def paste_back(native: Native, units: np.ndarray, new_units: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Stored output: the input's stored values everywhere, blended new values only where alpha > 0. A colour input
    gives colour (H×W×3|4 uint8): its pixels outside the mask, and inside each pixel blended towards the new grey
    level painted in the colour the mask's surroundings have at that level (`tint_of`; grey surroundings give
    grey); a translucent RGBA pixel is first composited on black and made opaque, as the reader showed it."""
    support = alpha > 0
    a = alpha[support].astype(np.float64)
    if native.colour is None:
        out = native.stored.copy()
        out[support] = native.from_units(a * new_units[support] + (1.0 - a) * units[support])
        return out
    out = native.colour.copy()
    old = out[support].astype(np.float64)
    old[:, :3] = _composited(out[support])
    if out.shape[2] == 4:
        old[:, 3] = 255.0
    new = paint(tint_of(out, support), np.clip(new_units[support], 0.0, 255.0))
    old[:, :3] = a[:, None] * new + (1.0 - a[:, None]) * old[:, :3]
    out[support] = np.clip(np.round(old), 0, 255).astype(np.uint8)
    return out


def _composited(colour: np.ndarray) -> np.ndarray:
    """RGB (float64) as the reader shows 8-bit RGB(A) pixels (..., 3|4): RGBA composited on black."""
    rgb = colour[..., :3].astype(np.float64)
    return rgb * (colour[..., 3:] / 255.0) if colour.shape[-1] == 4 else rgb


def tint_of(colour: np.ndarray, support: np.ndarray, *, margin: float = 0.5, prior: float = 8.0) -> np.ndarray:
    """How the pixels around the mask are coloured at each grey level: per channel c ≈ a_c·Y + b_c (a 2×3 array
    [a; b]), c the colours as the reader shows `colour` (8-bit RGB(A), RGBA composited on black) and Y their
    luminance, least squares over the unmasked pixels of the mask's bounding box widened by `margin` of its size (at
    least 4 px). `prior` pseudo-pixels of pure grey (c = Y over 0–255) keep the fit defined on a flat or tiny ring
    and pull it to grey there. Since every sample's luminance is its Y, the fitted colours'
    luminance is Y again: painting in this tint changes no grey level (see `paint`). Grey surroundings give [1; 0]."""
    from ..io.readers import luminance

    ys, xs = np.nonzero(support)
    h, w = support.shape
    py = max(4, int(round(margin * (ys.max() - ys.min() + 1))))
    px = max(4, int(round(margin * (xs.max() - xs.min() + 1))))
    y0, y1 = max(0, ys.min() - py), min(h, ys.max() + py + 1)
    x0, x1 = max(0, xs.min() - px), min(w, xs.max() + px + 1)
    ring = ~support[y0:y1, x0:x1]
    c = _composited(colour[y0:y1, x0:x1][ring])
    g = np.linspace(0.0, 255.0, 16)
    ys_ = np.concatenate([luminance(c), g])
    cs = np.concatenate([c, np.repeat(g[:, None], 3, axis=1)])
    wts = np.sqrt(np.concatenate([np.ones(len(c)), np.full(len(g), prior / len(g))]))
    design = np.stack([ys_, np.ones_like(ys_)], axis=1)
    coef, *_ = np.linalg.lstsq(design * wts[:, None], cs * wts[:, None], rcond=None)
    return coef


def paint(tint: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Colours (N×3, float) for grey levels `grey` (N, 0–255) in `tint` (tint_of), each pulled towards its grey
    (R = G = B = Y) just enough to stay within 0–255, which keeps its luminance Y."""
    grey = np.asarray(grey, np.float64)[:, None]
    col = grey * tint[0] + tint[1]
    d = col - grey
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(d > 0, (255.0 - grey) / d, np.where(d < 0, -grey / d, np.inf))
    s = np.clip(np.nan_to_num(room.min(axis=1, keepdims=True), nan=1.0, posinf=1.0), 0.0, 1.0)
    return grey + s * d


def shown(native: Native, stored: np.ndarray) -> np.ndarray:
    """The units the reader would see in `stored` output pixels: the luminance of colour (RGBA on black)."""
    if stored.ndim == 2:
        return stored.astype(np.float64) * native.slope + native.intercept
    return _shown_luma(stored)


def _shown_luma(rgb: np.ndarray) -> np.ndarray:
    """Luminance of 8-bit RGB(A) as the reader shows it (RGBA composited on black)."""
    from ..io.readers import luminance

    return luminance(_composited(rgb))
