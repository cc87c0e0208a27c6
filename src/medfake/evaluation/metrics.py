"""Detection and localization metrics, all from scikit-learn.

Convention: y = 1 means fake (synthetic or manipulated), y = 0 real; `score` is the detector's fake
probability; a prediction is fake when score >= threshold.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

REAL, FAKE = 0, 1


def _arrays(y_true, scores):
    y = np.asarray(y_true, dtype=int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length ({y.size} vs {s.size})")
    if y.size == 0:
        raise ValueError("no samples to score")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("y_true must be 0 (real) or 1 (fake)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return y, s


def _both_classes(y) -> bool:
    return bool(np.any(y == 0) and np.any(y == 1))


def eer(y_true, scores) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate on the ROC curve
    (sklearn.metrics.roc_curve), linearly interpolated between the two ROC points that bracket it."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(y_true, scores)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1.0 - tpr
    d = fpr - fnr  # increases from -1 to +1 along the curve
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    # segment (i-1, i): solve fpr(t) = fnr(t) with both linear in t
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(y_true, scores, max_fpr: float = 0.01) -> float:
    """Highest true-positive rate reachable with false-positive rate <= max_fpr (ROC points, no interpolation)."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(y_true, scores)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def binary_metrics(y_true, scores, threshold=0.5) -> dict:
    """accuracy, precision, recall, F1 (binary, fake = positive) and macro-F1, ROC-AUC, average precision,
    EER, TPR at 1% FPR, the 2×2 confusion matrix [[TN, FP], [FN, TP]] and counts. `threshold` is one number or one
    per image (e.g. per-modality thresholds); the reported `threshold` is then their minimum."""
    from sklearn.metrics import (
        accuracy_score, average_precision_score, confusion_matrix, f1_score, precision_score, recall_score,
        roc_auc_score,
    )

    y, s = _arrays(y_true, scores)
    pred = (s >= threshold).astype(int)
    both = _both_classes(y)
    return {
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "threshold": float(np.min(threshold)) if np.size(threshold) else 0.5,
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "f1_macro": float(f1_score(y, pred, average="macro", labels=[0, 1], zero_division=0)),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if np.any(y == 1) else float("nan"),
        "eer": eer(y, s),
        "tpr_at_1pct_fpr": tpr_at_fpr(y, s, 0.01),
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }


def modality_confusion(true_modality: Sequence[str], y_true, pred_modality: Sequence[str], y_pred,
                       modalities: Sequence[str]) -> dict:
    """12-class (modality × real/fake) confusion matrix: rows = truth, columns = prediction."""
    from sklearn.metrics import confusion_matrix

    classes = [f"{m}/{k}" for m in modalities for k in ("real", "fake")]
    t = [f"{m}/{'fake' if y else 'real'}" for m, y in zip(true_modality, y_true)]
    p = [f"{m}/{'fake' if y else 'real'}" for m, y in zip(pred_modality, y_pred)]
    # predictions of an unknown modality would be dropped by confusion_matrix; count them separately
    known = set(classes)
    other = sum(1 for x in p if x not in known)
    keep = [i for i, x in enumerate(p) if x in known]
    cm = confusion_matrix([t[i] for i in keep], [p[i] for i in keep], labels=classes) if keep else \
        np.zeros((len(classes), len(classes)), dtype=int)
    return {"classes": classes, "matrix": np.asarray(cm).tolist(), "unknown_predictions": other}


def pixel_scores(gt_mask: np.ndarray, pred_mask: np.ndarray | None) -> dict:
    """Pixel F1 and IoU (sklearn f1_score / jaccard_score, manipulated pixels = positive) of one predicted
    mask as it is. A missing prediction counts as an empty mask. Both masks empty → 1.0 (nothing to find,
    nothing claimed)."""
    from sklearn.metrics import f1_score, jaccard_score

    gt = np.asarray(gt_mask).astype(bool)
    pred = np.zeros_like(gt) if pred_mask is None else np.asarray(pred_mask).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted mask shape {pred.shape} differs from ground truth {gt.shape}")
    if not gt.any() and not pred.any():
        return {"f1": 1.0, "iou": 1.0}
    g, p = gt.ravel(), pred.ravel()
    return {"f1": float(f1_score(g, p, zero_division=0)), "iou": float(jaccard_score(g, p, zero_division=0))}


def localization_metrics(pairs: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> dict:
    """Per-image pixel F1 / IoU averaged over images; `missing` counts images with no predicted mask."""
    per, missing = [], 0
    for gt, pred in pairs:
        missing += pred is None
        per.append(pixel_scores(gt, pred))
    if not per:
        return {"n": 0, "pixel_f1": float("nan"), "iou": float("nan"), "missing": 0, "per_image": []}
    return {
        "n": len(per),
        "pixel_f1": float(np.mean([p["f1"] for p in per])),
        "iou": float(np.mean([p["iou"] for p in per])),
        "missing": int(missing),
        "per_image": per,
    }
