"""Shortcut audit: can real and fake be told apart from the file alone (format, not pixels)?

A cross-validated scikit-learn classifier (logistic regression and gradient boosting) sees only file-level
features — format magic, PNG chunk types and counts, image size, mode, bit depth, colour type, interlace,
decoded dtype, and the bytes a file carries beyond what the canonical writer would produce for the same
pixels. If either separates real from fake with ROC-AUC >= 0.6 the data set has a shortcut and the build
fails.

Raw file size is recorded for information but does not gate: for PNG it is mostly a function of the
pixels (a noisy image compresses worse), i.e. of the very content a detector is supposed to judge.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.errors import MedfakeError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHUNK_TYPES = ("IHDR", "PLTE", "IDAT", "IEND", "tEXt", "iTXt", "zTXt", "gAMA", "cHRM", "sRGB", "iCCP", "pHYs",
               "tIME", "bKGD", "sBIT", "tRNS", "eXIf", "other")
MODES = ("L", "I;16", "I", "RGB", "RGBA", "LA", "P", "1", "F", "other")
AUC_LIMIT = 0.6


class ShortcutAuditError(MedfakeError):
    """File-level features separate real from fake (AUC >= the limit)."""


def png_chunks(data: bytes) -> list[str]:
    """Chunk types of a PNG byte string, in order ([] when it is not a PNG)."""
    if not data.startswith(PNG_MAGIC):
        return []
    out, i = [], len(PNG_MAGIC)
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        out.append(data[i + 4 : i + 8].decode("latin-1"))
        i += 12 + length
        if out[-1] == "IEND":
            break
    return out


def file_features(path: str | Path) -> dict:
    """File-level features of one image file (no pixel statistics)."""
    import io

    from PIL import Image as PILImage

    from ..data.canonical import canonical_png_bytes

    data = Path(path).read_bytes()
    chunks = png_chunks(data)
    f: dict = {"file_size": len(data), "is_png": float(data.startswith(PNG_MAGIC)), "n_chunks": len(chunks)}
    for t in CHUNK_TYPES:
        f[f"chunk_{t}"] = 0
    for t in chunks:
        f[f"chunk_{t if t in CHUNK_TYPES else 'other'}"] += 1
    width = height = bit_depth = colour = interlace = 0
    if data.startswith(PNG_MAGIC) and len(data) >= 33:
        width, height, bit_depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    f.update({"ihdr_width": width, "ihdr_height": height, "bit_depth": bit_depth, "colour_type": colour,
              "interlace": interlace})
    excess = 0.0
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            f.update({"width": im.width, "height": im.height, "decoded": 1.0})
            arr = np.asarray(im)
            f["dtype_bits"] = arr.dtype.itemsize * 8
            if arr.ndim == 2:
                top = 255.0 if arr.dtype == np.uint8 else float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
                canon = canonical_png_bytes(np.clip(arr.astype(np.float32) / top, 0, 1))
                excess = len(data) - len(canon)
    except Exception:  # noqa: BLE001 — an undecodable file is itself a feature
        mode = "other"
        f.update({"width": 0, "height": 0, "decoded": 0.0, "dtype_bits": 0})
    for m in MODES:
        f[f"mode_{m}"] = float(mode == m or (m == "other" and mode not in MODES))
    f["excess_bytes"] = float(excess)
    return f


GATING_EXCLUDE = ("file_size",)


def _cv_auc(X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = int(min(5, np.bincount(y).min()))
    if k < 2:
        raise ValueError("the shortcut audit needs at least 2 real and 2 fake files")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    out = {}
    models = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=50, max_depth=2, random_state=seed),
    }
    for name, model in models.items():
        if np.all(X == X[0]):  # constant features: nothing can be learned; every classifier is a coin
            out[name] = 0.5
            continue
        p = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
        out[name] = float(roc_auc_score(y, p))
    out["folds"] = k
    return out


def shortcut_audit(paths: Sequence[str | Path], is_fake: Sequence[bool], *, out: str | Path | None = None,
                   limit: float = AUC_LIMIT, seed: int = 0, raise_on_fail: bool = True) -> dict:
    """Cross-validated AUC of file-level features for real (False) vs fake (True). Writes `out` (audit.json)
    when given; raises ShortcutAuditError when the best AUC >= limit and raise_on_fail."""
    from sklearn.metrics import roc_auc_score

    if len(paths) != len(is_fake):
        raise ValueError("paths and is_fake differ in length")
    y = np.asarray(is_fake, dtype=int)
    feats = [file_features(p) for p in paths]
    names = [k for k in feats[0] if k not in GATING_EXCLUDE] if feats else []
    X = np.array([[f[k] for k in names] for f in feats], dtype=float)
    aucs = _cv_auc(X, y, seed)
    best = max(a for k, a in aucs.items() if k != "folds")
    size = np.array([f["file_size"] for f in feats], dtype=float)
    size_auc = float(roc_auc_score(y, size)) if len(set(y)) == 2 else float("nan")
    varying = [n for j, n in enumerate(names) if np.ptp(X[:, j]) > 0]
    result = {
        "passed": bool(best < limit),
        "auc": float(best),
        "limit": float(limit),
        "classifiers": aucs,
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "features": names,
        "varying_features": varying,
        "info_file_size_auc": size_auc,
        "note": "raw file size is reported, not gated: for PNG it depends on the pixels",
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if raise_on_fail and not result["passed"]:
        raise ShortcutAuditError(
            f"shortcut audit failed: file-level features separate real from fake with AUC {best:.3f} "
            f"(limit {limit}); features that vary: {', '.join(varying) or 'none'}"
        )
    return result


def audit_manifest(rows: Sequence[dict], root: str | Path, **kw) -> dict:
    """shortcut_audit over a built manifest's rows (paths relative to root)."""
    root = Path(root)
    paths = [root / r["path"] for r in rows]
    return shortcut_audit(paths, [r.get("kind", "real") != "real" for r in rows], **kw)
