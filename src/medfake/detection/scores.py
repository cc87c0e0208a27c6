"""The manipulation score: the manipulation head's logit mixed with the segmentation map's own evidence.

The manipulation head pools the whole image (plus two coarse statistics of the map); a small edited region can
light up the per-pixel map while the pooled head stays near its real-image range. The score the detector reports
is therefore a mix of two logits, each standardised on the real validation images:

    z = (1 − α)·(head − c₀)/s₀ + α·(top-k mean of the segmentation logits − c₁)/s₁

α is chosen on validation (`choose_seg_mix`, the same criterion as the kNN weight: most manipulated images caught at
the 1 %-FPR threshold of the real pool, then AUC); α = 0 keeps the head alone and is stored as no mix at all. The
temperature, the kNN blend and the thresholds are then fitted on z, so a card's `manipulation_score` section is all a
reader needs (`apply_manipulation_score`)."""

from __future__ import annotations

import numpy as np
import torch

SEG_TOPK = 64                              # pixels of the 128 px map averaged (0.4 %: an 8×8 edit fills it)
SEG_MIX_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def seg_top(seg_logits: torch.Tensor, k: int = SEG_TOPK) -> torch.Tensor:
    """(N,) mean of each map's k highest per-pixel manipulation logits; differentiable (the attacks use it)."""
    flat = seg_logits.float().flatten(1)
    return flat.topk(min(int(k), flat.shape[1]), dim=1).values.mean(1)


def mix(head, top, spec: dict):
    """z of the module docstring for numpy arrays or tensors."""
    a = float(spec["alpha"])
    (c0, c1), (s0, s1) = spec["center"], spec["scale"]
    return (1.0 - a) * (head - c0) / s0 + a * (top - c1) / s1


def apply_manipulation_score(out: dict, spec: dict | None) -> dict:
    """A network's outputs with `manip` replaced by the card's mixed score (the head's own logit kept as
    `manip_head`); unchanged without a spec or without both outputs."""
    if not spec or out.get("manip") is None or out.get("seg") is None:
        return out
    top = seg_top(out["seg"], spec.get("seg_topk", SEG_TOPK))
    return {**out, "manip": mix(out["manip"].float(), top, spec), "manip_head": out["manip"]}


def _standardiser(v: np.ndarray) -> tuple[float, float]:
    s = float(np.std(v)) if len(v) > 1 else 0.0
    return float(np.mean(v)) if len(v) else 0.0, (s if s > 1e-6 else 1.0)


def choose_seg_mix(head: np.ndarray, top: np.ndarray, pos: np.ndarray, real: np.ndarray,
                   real_pool_extra: tuple[np.ndarray, np.ndarray] | None, target_fpr: float,
                   grid=SEG_MIX_GRID, k: int = SEG_TOPK) -> tuple[dict | None, dict]:
    """Choose α on validation. `head`, `top`: the val images' head logits and top-k segmentation logits; `pos`,
    `real`: masks of the manipulated and real val images; `real_pool_extra`: (head, top) of the shifted real copies
    the thresholds are also set on. Returns (spec or None when α = 0 wins, {α: {"tpr", "auc"}})."""
    from sklearn.metrics import roc_auc_score

    c0, s0 = _standardiser(head[real])
    c1, s1 = _standardiser(top[real])
    table, best, key = {}, 0.0, None
    for a in grid:
        spec = {"alpha": float(a), "center": [c0, c1], "scale": [s0, s1]}
        z = mix(head, top, spec)
        pool = z[real]
        if real_pool_extra is not None and len(real_pool_extra[0]):
            pool = np.concatenate([pool, mix(*real_pool_extra, spec)])
        thr = float(np.quantile(pool, 1 - target_fpr)) if len(pool) else 0.0
        tpr = float((z[pos] > thr).mean()) if pos.any() else 0.0
        y = pos[real | pos]
        auc = float(roc_auc_score(y, z[real | pos])) if 0 < y.sum() < y.size else 0.0
        table[str(a)] = {"tpr": round(tpr, 4), "auc": round(auc, 4)}
        rank = (round(tpr, 3), round(auc, 3), -a)  # ties: the smaller α, the head alone first
        if key is None or rank > key:
            best, key = float(a), rank
    if best == 0.0:
        return None, table
    return {"seg_topk": int(k), "alpha": best, "center": [round(c0, 6), round(c1, 6)],
            "scale": [round(s0, 6), round(s1, 6)]}, table
