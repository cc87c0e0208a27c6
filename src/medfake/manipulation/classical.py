"""Classical manipulation baselines on the 128 px working copy: copy-move, splice (alpha or Poisson blending)
and local retouch (Gaussian blur or noise). Each takes and returns a float array in [0, 1]; the region that
counts is chosen later by the paste-back (only the mask's support is written)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve


def shift_image(work: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """work shifted so that out[y, x] = work[y − dy, x − dx] (cubic spline, edges replicated)."""
    return np.clip(ndimage.shift(work.astype(np.float64), (dy, dx), order=3, mode="nearest"), 0.0, 1.0)


def poisson_blend(target: np.ndarray, source: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Poisson image editing (Pérez et al. 2003, 'seamless cloning' with imported gradients).

    Inside `region` solve  Δf = Δsource  with f = target on the region's outer boundary (Dirichlet); image edges
    are Neumann (neighbours outside the array are left out). A sparse 5-point Laplacian solved with scipy."""
    t = np.asarray(target, np.float64)
    s = np.asarray(source, np.float64)
    region = np.asarray(region, bool)
    h, w = t.shape
    ys, xs = np.nonzero(region)
    n = ys.size
    if n == 0:
        return t.copy()
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    b = np.zeros(n)
    diag = np.zeros(n)
    touches_boundary = False
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        i = np.nonzero(inside)[0]
        nyi, nxi = ny[i], nx[i]
        diag[i] += 1.0
        b[i] += s[ys[i], xs[i]] - s[nyi, nxi]  # guidance: the source's gradient
        nb = index[nyi, nxi]
        unknown = nb >= 0
        rows.append(i[unknown])
        cols.append(nb[unknown])
        vals.append(-np.ones(int(unknown.sum())))
        known = ~unknown
        if known.any():
            touches_boundary = True
            b[i[known]] += t[nyi[known], nxi[known]]
    if not touches_boundary:  # region covers the whole array: nothing to anchor to → plain paste
        return s.copy()
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    A = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    f = spsolve(A, b)
    out = t.copy()
    out[ys, xs] = f
    return np.clip(out, 0.0, 1.0)


def retouch_image(work: np.ndarray, mode: str, *, sigma: float, noise_std: float,
                  rng: np.random.Generator) -> np.ndarray:
    if mode == "blur":
        return ndimage.gaussian_filter(work.astype(np.float64), sigma=max(sigma, 1e-3), mode="nearest")
    if mode == "noise":
        return np.clip(work + rng.normal(0.0, noise_std, size=work.shape), 0.0, 1.0)
    raise ValueError(f"unknown retouch mode {mode!r}; choose blur or noise")
