"""Robustness: the same degradation applied to real and fake images at evaluation time."""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np

from ..io.image import Image


def _jpeg(q: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(a, rng):
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.fromarray(np.round(a * 255).astype(np.uint8), mode="L").save(buf, format="JPEG", quality=q)
        buf.seek(0)
        with PILImage.open(buf) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return f


def _resize(factor: float):
    def f(a, rng):
        from PIL import Image as PILImage

        h, w = a.shape
        im = PILImage.fromarray(a.astype(np.float32), mode="F")
        small = im.resize((max(1, round(w * factor)), max(1, round(h * factor))), PILImage.Resampling.BICUBIC)
        return np.asarray(small.resize((w, h), PILImage.Resampling.BICUBIC), dtype=np.float32)
    return f


def _noise(sigma: float):
    def f(a, rng):
        return a + rng.normal(0.0, sigma, a.shape).astype(np.float32)
    return f


def _blur(sigma: float):
    def f(a, rng):
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(a, sigma, mode="reflect")
    return f


def _requant16(a, rng):
    """16-bit PNG round trip (as a 16-bit export/import would do)."""
    from PIL import Image as PILImage

    from ..io.writers import png_bytes

    with PILImage.open(io.BytesIO(png_bytes(a, bits=16))) as im:
        return np.asarray(im, dtype=np.float32) / 65535.0


DEGRADATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "clean": lambda a, rng: a,
    "jpeg95": _jpeg(95),
    "jpeg75": _jpeg(75),
    "jpeg50": _jpeg(50),
    "resize0.5": _resize(0.5),
    "resize0.75": _resize(0.75),
    "resize1.5": _resize(1.5),
    "noise0.01": _noise(0.01),
    "noise0.03": _noise(0.03),
    "blur1": _blur(1.0),
    "requant16": _requant16,
}


def degrade(image: Image, name: str, seed: int = 0) -> Image:
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose from {', '.join(DEGRADATIONS)}")
    a = DEGRADATIONS[name](image.array, np.random.default_rng(seed))
    return image.with_array(np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0))


def evaluate_robustness(detector, images: Sequence[Image], y_true, *, conditions: Sequence[str] | None = None,
                        threshold: float = 0.5, seed: int = 0, batch: int = 64, progress=None,
                        groups: Sequence[str] | None = None) -> dict:
    """AUC, F1 (and the rest of binary_metrics) per degradation; each image gets the same noise seed whatever
    its class, so real and fake are degraded identically. With `groups` (each image's generator, "real" for the
    reals) also `auc_by_generator` per degradation: each generator's fakes against all reals, so a user sees which
    fakes a degradation hides."""
    from sklearn.metrics import roc_auc_score

    from .metrics import binary_metrics
    from .run import fake_scores

    conditions = list(conditions or DEGRADATIONS)
    g = None if groups is None else np.asarray(groups, dtype=object)
    if g is not None and len(g) != len(images):
        raise ValueError(f"groups has {len(g)} entries for {len(images)} images")
    out = {}
    for c in conditions:
        deg = [degrade(im, c, seed + i) for i, im in enumerate(images)]
        s = fake_scores(detector, deg, batch=batch)
        out[c] = binary_metrics(y_true, s, threshold)
        if g is not None and (g == "real").any():
            out[c]["auc_by_generator"] = {
                str(k): float(roc_auc_score((g[sel] != "real").astype(int), s[sel]))
                for k in sorted(set(g.tolist()) - {"real"}) for sel in [(g == "real") | (g == k)]}
        if progress:
            progress(c)
    return out
