"""Masks: rectangle, ellipse, polygon (Pillow ImageDraw) or a mask image, with optional feathering.

Coordinates are in the input image's own pixels, x = column, y = row.

* rect ``(x1, y1, x2, y2)``: half-open box ``x1 <= x < x2``, ``y1 <= y < y2`` (like ``PIL.Image.crop``).
* ellipse ``(cx, cy, rx, ry)``: the ellipse inscribed in ``(cx-rx, cy-ry, cx+rx, cy+ry)`` (Pillow, corners inclusive).
* polygon ``[(x, y), ...]`` or a flat ``[x, y, x, y, ...]`` (at least 3 points), filled by Pillow.
* mask_image: a path or array of the same size as the image; pixels > half of its range are inside.

A shape that reaches outside the image is an error (no silent clipping): the caller learns that the
coordinates were in the wrong frame instead of getting a smaller edit than asked for.

Feathering (``feather = F`` pixels) grows the mask *outwards*: alpha is 1 on the drawn mask and falls
linearly to 0 over the F pixels outside it (Euclidean distance, scipy.ndimage). The support of the result —
the pixels where alpha > 0, i.e. the mask dilated by F px — is exactly the set of pixels that may change; every
other pixel stays bit-identical. With ``feather=0`` the result is a boolean mask; otherwise float32 alpha.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.modalities import IMAGE_SIZE
from ..io.errors import MedfakeError


class ManipulationError(MedfakeError, ValueError):
    """Bad input to a manipulation (mask, label, donor, parameters); nothing is written."""


def _nums(values, n: int | None, what: str) -> list[float]:
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",") if v != ""]
    try:
        out = [float(v) for v in np.asarray(values, dtype=object).ravel()]
    except (TypeError, ValueError):
        raise ManipulationError(f"{what}: expected numbers, got {values!r}") from None
    if n is not None and len(out) != n:
        raise ManipulationError(f"{what}: expected {n} numbers, got {len(out)}")
    if not all(np.isfinite(out)):
        raise ManipulationError(f"{what}: coordinates must be finite")
    return out


def _outside(what: str, shape, detail: str) -> ManipulationError:
    h, w = shape
    return ManipulationError(f"{what} lies outside the image ({w}×{h} px, x in [0, {w}), y in [0, {h})): {detail}")


def make_mask(
    shape: Sequence[int],
    rect=None,
    ellipse=None,
    polygon=None,
    mask_image=None,
    feather: float = 0,
) -> np.ndarray:
    """One mask of `shape` (H, W) from exactly one of rect / ellipse / polygon / mask_image.

    Returns a bool array (feather == 0) or float32 alpha in [0, 1] (feather > 0). Raises ManipulationError for
    a shape outside the image, an empty mask, a mask image of the wrong size, or not exactly one shape given."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    h, w = (int(s) for s in shape)
    if h <= 0 or w <= 0:
        raise ManipulationError(f"image shape must be positive, got {tuple(shape)}")
    given = [k for k, v in (("rect", rect), ("ellipse", ellipse), ("polygon", polygon), ("mask_image", mask_image))
             if v is not None]
    if len(given) != 1:
        raise ManipulationError(
            "give exactly one mask: rect, ellipse, polygon or mask_image" + (f" (got {', '.join(given)})" if given else "")
        )
    try:
        feather = float(feather)
    except (TypeError, ValueError):
        raise ManipulationError(f"feather must be a number of pixels, got {feather!r}") from None
    if not np.isfinite(feather) or feather < 0:
        raise ManipulationError(f"feather must be ≥ 0 pixels, got {feather}")

    canvas = PILImage.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if rect is not None:
        x1, y1, x2, y2 = _nums(rect, 4, "rect X1,Y1,X2,Y2")
        if not (x2 > x1 and y2 > y1):
            raise ManipulationError(f"rect {x1:g},{y1:g},{x2:g},{y2:g}: need X2 > X1 and Y2 > Y1 (empty mask)")
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise _outside("rect", (h, w), f"{x1:g},{y1:g},{x2:g},{y2:g}")
        m = np.zeros((h, w), bool)
        m[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
    elif ellipse is not None:
        cx, cy, rx, ry = _nums(ellipse, 4, "ellipse CX,CY,RX,RY")
        if rx <= 0 or ry <= 0:
            raise ManipulationError(f"ellipse radii must be > 0, got RX={rx:g}, RY={ry:g} (empty mask)")
        if cx - rx < 0 or cy - ry < 0 or cx + rx > w - 1 or cy + ry > h - 1:
            raise _outside("ellipse", (h, w), f"centre ({cx:g}, {cy:g}), radii ({rx:g}, {ry:g})")
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        m = np.asarray(canvas) > 0
    elif polygon is not None:
        vals = _nums(polygon, None, "polygon X,Y,X,Y,...")
        if len(vals) % 2 or len(vals) < 6:
            raise ManipulationError(f"polygon needs at least 3 (x, y) points as X,Y,X,Y,...; got {len(vals)} number(s)")
        pts = list(zip(vals[0::2], vals[1::2]))
        bad = [(x, y) for x, y in pts if not (0 <= x <= w - 1 and 0 <= y <= h - 1)]
        if bad:
            raise _outside("polygon", (h, w), f"point(s) {', '.join(f'({x:g}, {y:g})' for x, y in bad[:4])}")
        draw.polygon(pts, fill=255)
        m = np.asarray(canvas) > 0
    else:
        m = _mask_from_image(mask_image, (h, w))
    if not m.any():
        raise ManipulationError(f"the {given[0].replace('_', ' ')} selects no pixels (empty mask)")
    return feather_mask(m, feather) if feather > 0 else m


def _mask_from_image(mask_image, shape) -> np.ndarray:
    h, w = shape
    if isinstance(mask_image, (str, Path)):
        from ..io.readers import read_image

        arr = read_image(mask_image).array  # ImageReadError (a MedfakeError) when unreadable
        name = str(mask_image)
    else:
        arr = np.asarray(mask_image)
        name = "mask array"
        if arr.ndim != 2:
            raise ManipulationError(f"{name} must be 2-D (H×W), got shape {arr.shape}")
        if arr.dtype == bool:
            arr = arr.astype(np.float32)
        else:
            arr = arr.astype(np.float64)
            top = 1.0 if arr.max(initial=0) <= 1.0 else (255.0 if arr.max() <= 255 else 65535.0)
            arr = arr / top
    if arr.shape != (h, w):
        raise ManipulationError(
            f"{name}: mask size {arr.shape[1]}×{arr.shape[0]} does not match the image size {w}×{h}"
        )
    return np.asarray(arr) > 0.5


def feather_mask(mask: np.ndarray, feather: float) -> np.ndarray:
    """Float32 alpha: 1 on `mask`, linear fall-off to 0 over `feather` px outside it (support = mask ⊕ disc(F))."""
    from scipy import ndimage

    m = np.asarray(mask) > 0
    if feather <= 0:
        return m.astype(np.float32)
    d = ndimage.distance_transform_edt(~m)  # distance of each outside pixel to the mask
    alpha = np.clip(1.0 - d / (float(feather) + 1.0), 0.0, 1.0)
    alpha[m] = 1.0
    return alpha.astype(np.float32)


def as_alpha(mask, shape) -> np.ndarray:
    """Validate a user mask (bool or alpha in [0, 1]) against the image shape → float32 alpha."""
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ManipulationError(f"mask must be 2-D (H×W), got shape {a.shape}")
    if a.shape != tuple(shape):
        raise ManipulationError(
            f"mask size {a.shape[1]}×{a.shape[0]} does not match the image size {shape[1]}×{shape[0]}"
        )
    if a.dtype == bool:
        a = a.astype(np.float32)
    else:
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise ManipulationError("mask must be boolean or alpha values in [0, 1]")
    if not (a > 0).any():
        raise ManipulationError("the mask selects no pixels (empty mask)")
    return a


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2), half-open, of the pixels where mask > 0."""
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ---------------------------------------------------------------- random masks (benchmark builder, training)
def random_mask_geometry(rng: np.random.Generator, size: int = IMAGE_SIZE, lo: float = 0.10, hi: float = 0.35) -> dict:
    """A rectangle or ellipse whose height and width are each 10–35 % of the side, placed at random."""
    shape = "rect" if rng.random() < 0.5 else "ellipse"
    h, w = (int(round(rng.uniform(lo, hi) * size)) for _ in range(2))
    y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    return {"shape": shape, "y0": y0, "x0": x0, "h": h, "w": w}


def mask_from_geometry(g: dict, size: int = IMAGE_SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    y0, x0, h, w = g["y0"], g["x0"], g["h"], g["w"]
    if g["shape"] == "rect":
        m[y0 : y0 + h, x0 : x0 + w] = True
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
        m |= ((yy - cy) / max(h / 2, 0.5)) ** 2 + ((xx - cx) / max(w / 2, 0.5)) ** 2 <= 1.0
    return m


def slab_masks(mask, depth: int) -> list[tuple[int, np.ndarray]]:
    """A lesion over 2·depth + 1 slices: (offset, mask) for offsets −depth … depth, each the mask (bool, or a
    feathered alpha) scaled about its centre of mass by √(1 − (d / (depth + 1))²), the cross-sections of an
    ellipsoid (scipy.ndimage.affine_transform; nearest for a bool mask, linear for an alpha). Offsets whose mask
    shrinks to nothing are left out; offset 0 is the mask itself."""
    from scipy import ndimage

    if int(depth) != depth or depth < 0:
        raise ManipulationError(f"depth must be a whole number ≥ 0, got {depth}")
    m = np.asarray(mask)
    weight = m.astype(np.float64)
    if not weight.any():
        raise ManipulationError("empty mask: nothing to edit")
    centre = np.array(ndimage.center_of_mass(weight))
    out = []
    for d in range(-int(depth), int(depth) + 1):
        s = float(np.sqrt(1.0 - (d / (depth + 1)) ** 2))
        if d == 0:
            out.append((0, m))
            continue
        # output pixel p samples the mask at centre + (p − centre) / s
        scaled = ndimage.affine_transform(weight, np.eye(2) / s, offset=centre - centre / s,
                                          order=0 if m.dtype == bool else 1, mode="constant", cval=0.0)
        scaled = scaled > 0.5 if m.dtype == bool else np.clip(scaled, 0.0, 1.0).astype(m.dtype)
        if np.asarray(scaled).any():
            out.append((d, scaled))
    return out
