"""On-the-fly pseudo-manipulations for detector training: self-blended images (Shiohara & Yamasaki 2022, "SBI")
and same-modality splices, each with its exact mask.

A fixed set of manipulated training images teaches a detector the quirks of the few methods that made them
(LOGO: a manipulation method held out scores AUC 0.55–0.85). Blending a real image with a slightly altered copy of
itself (shifted, rescaled, re-toned, blurred or sharpened, noised) or with another real image inside a random soft
region gives an endless supply of manipulations whose only common trace is the blend itself: the boundary and the
statistics that change across it. No generator is involved, so this adds no generator's fingerprint.

Used by `train_detector(online_manipulations=p)`: with probability p a manipulated example drawn for a batch is
replaced by a fresh pseudo-manipulation of a random real training image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_CHANGE = 3.0 / 255.0  # mean absolute change inside the mask below this: too faint to label, draw again


def random_region(rng: np.random.Generator, size: int) -> np.ndarray:
    """A soft region (float [0, 1]): an ellipse, a rectangle or a smoothed random blob, 10–40 % of the side,
    feathered by 0–4 px."""
    h, w = (int(round(rng.uniform(0.10, 0.40) * size)) for _ in range(2))
    y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    yy, xx = np.mgrid[0:size, 0:size]
    kind = rng.integers(3)
    if kind == 0:
        cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
        m = ((yy - cy) / max(h / 2, 0.5)) ** 2 + ((xx - cx) / max(w / 2, 0.5)) ** 2 <= 1.0
    elif kind == 1:
        m = np.zeros((size, size), bool)
        m[y0:y0 + h, x0:x0 + w] = True
    else:  # a blob: thresholded smooth noise inside the box
        noise = ndimage.gaussian_filter(rng.random((size, size)), sigma=max(2.0, min(h, w) / 4))
        box = np.zeros((size, size), bool)
        box[y0:y0 + h, x0:x0 + w] = True
        m = box & (noise >= np.quantile(noise[box], 0.4))
        lab, n = ndimage.label(m)
        if n > 1:  # keep the largest piece
            m = lab == (1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1)))))
    soft = m.astype(np.float64)
    feather = rng.uniform(0.0, 4.0)
    if feather > 0.3:
        soft = ndimage.gaussian_filter(soft, feather)
        soft = np.clip(soft / max(soft.max(), 1e-6), 0.0, 1.0)
    return soft


def altered_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image after one to three random changes: shift/rescale, tone (gamma, brightness, contrast), blur or
    sharpen, noise."""
    a = image.astype(np.float64)
    ops = rng.permutation(4)[: int(rng.integers(1, 4))]
    for op in ops:
        if op == 0:
            z = rng.uniform(0.92, 1.08)
            dy, dx = rng.uniform(-6, 6, 2)
            c = (np.array(a.shape) - 1) / 2
            a = ndimage.affine_transform(a, np.diag([1 / z, 1 / z]), offset=c - c / z - [dy, dx], order=1,
                                         mode="nearest")
        elif op == 1:
            a = np.clip(a, 0, 1) ** rng.uniform(0.7, 1.4)
            a = (a - a.mean()) * rng.uniform(0.85, 1.15) + a.mean() + rng.uniform(-0.06, 0.06)
        elif op == 2:
            s = rng.uniform(0.6, 2.0)
            blurred = ndimage.gaussian_filter(a, s)
            a = blurred if rng.random() < 0.5 else a + rng.uniform(0.5, 1.5) * (a - blurred)
        else:
            a = a + rng.normal(0.0, rng.uniform(0.01, 0.04), a.shape)
    return np.clip(a, 0.0, 1.0)


def pseudo_manipulation(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None,
                        tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(manipulated image, binary mask), both H×W float32. With a donor (another real image of the same modality)
    half the time a splice of the donor (altered too), else a self-blend."""
    size = image.shape[0]
    img = image.astype(np.float64)
    for _ in range(tries):
        soft = random_region(rng, size)
        source = altered_copy(donor if donor is not None and rng.random() < 0.5 else img, rng)
        out = soft * source + (1.0 - soft) * img
        mask = soft >= 0.5
        if mask.sum() >= 16 and np.abs(out - img)[mask].mean() >= MIN_CHANGE:
            break
    out = np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0  # 8-bit, as every image the detector sees
    return out.astype(np.float32), mask.astype(np.float32)


def generated_splice(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None,
                     tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(manipulated image, binary mask), both H×W float32: the same place of a generated image (`donor`: a
    synthetic training image of the same modality) blended into the real one inside a random soft region, its
    tone matched to what it replaces (mean and spread inside the region), so that what is left to see is the
    generator's texture, as in an inpainting (RePaint) whose region a diffusion model filled. It adds the training
    generators' fingerprints, in part of an image. Without a donor: a self-blend (`pseudo_manipulation`)."""
    if donor is None:
        return pseudo_manipulation(image, rng, None, tries)
    size = image.shape[0]
    img = image.astype(np.float64)
    src = np.asarray(donor, np.float64)
    for _ in range(tries):
        soft = random_region(rng, size)
        m = soft >= 0.5
        if m.sum() < 16:
            continue
        a, b = img[m], src[m]
        matched = (src - b.mean()) * (a.std() / max(b.std(), 1e-3)) + a.mean()
        out = soft * matched + (1.0 - soft) * img
        if np.abs(out - img)[m].mean() >= MIN_CHANGE:
            out = np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0
            return out.astype(np.float32), m.astype(np.float32)
    return pseudo_manipulation(image, rng, None, tries)


CLASSICAL = ("copy-move", "splice", "retouch")  # the shipped classical methods used on the fly


def classical_manipulation(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None,
                           tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(manipulated image, binary mask), both H×W float32: one of the shipped classical manipulations
    (`medfake.manipulation`: copy-move, splice of a same-modality donor, retouch; splice only with a donor) inside
    a random rectangle or ellipse of the benchmark builder's geometry, rounded to 8 bit as the builder's files are.
    Unlike the self-blends these are the very methods of the benchmark, on an endless supply of real images and
    masks; they add no generator's fingerprint either. A draw the method refuses (or that changes nothing) is
    drawn again; after `tries`, a self-blend."""
    from ..io.image import Image
    from ..manipulation import ManipulationError, manipulate
    from ..manipulation.masks import mask_from_geometry, random_mask_geometry

    size = image.shape[0]
    methods = CLASSICAL if donor is not None else tuple(m for m in CLASSICAL if m != "splice")
    for _ in range(tries):
        method = methods[int(rng.integers(len(methods)))]
        mask = mask_from_geometry(random_mask_geometry(rng, size), size)
        kw = {"donor": Image(np.asarray(donor, np.float32))} if method == "splice" else {}
        try:
            res = manipulate(Image(np.asarray(image, np.float32)), mask, method, seed=int(rng.integers(1 << 30)), **kw)
        except ManipulationError:
            continue
        out = np.round(np.clip(np.asarray(res.image.array, np.float64), 0.0, 1.0) * 255.0) / 255.0
        m = np.asarray(res.mask, bool)
        if m.shape == out.shape == image.shape and m.sum() >= 16 and np.abs(out - image)[m].mean() >= MIN_CHANGE:
            return out.astype(np.float32), m.astype(np.float32)
    return pseudo_manipulation(image, rng, donor)
