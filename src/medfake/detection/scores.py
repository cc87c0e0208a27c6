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

from .calibrate import choose_on_validation

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


def flip_averaged(module, x: torch.Tensor, flip: bool) -> dict:
    """The network's raw outputs on `x`; with `flip`, the mean of those on `x` and on its left-right mirror image
    (test-time augmentation: the training draws mirror images half of the time, so both are in distribution), maps
    mirrored back first. Averaged before the manipulation score, so that calibration (run_model) and inference
    (ShippedDetector.forward) mix the same numbers."""
    out = module(x)
    if not flip:
        return out
    other = module(torch.flip(x, dims=[-1]))
    avg = {}
    for k, v in out.items():
        w = other.get(k)
        if torch.is_tensor(v) and torch.is_tensor(w) and v.is_floating_point():
            avg[k] = (v + (torch.flip(w, dims=[-1]) if v.ndim == 4 else w)) / 2
        else:
            avg[k] = v
    return avg


def _standardiser(v: np.ndarray) -> tuple[float, float]:
    s = float(np.std(v)) if len(v) > 1 else 0.0
    return float(np.mean(v)) if len(v) else 0.0, (s if s > 1e-6 else 1.0)


def choose_seg_mix(head: np.ndarray, top: np.ndarray, pos: np.ndarray, real: np.ndarray,
                   real_pool_extra: tuple[np.ndarray, np.ndarray] | None, target_fpr: float,
                   grid=SEG_MIX_GRID, k: int = SEG_TOPK) -> tuple[dict | None, dict]:
    """Choose α on validation. `head`, `top`: the val images' head logits and top-k segmentation logits; `pos`,
    `real`: masks of the manipulated and real val images; `real_pool_extra`: (head, top) of the shifted real copies
    the thresholds are also set on. Returns (spec or None when α = 0 wins, {α: {"tpr", "auc"}})."""
    c0, s0 = _standardiser(head[real])
    c1, s1 = _standardiser(top[real])

    def spec_of(a: float) -> dict:
        return {"alpha": float(a), "center": [c0, c1], "scale": [s0, s1]}

    has_extra = real_pool_extra is not None and len(real_pool_extra[0])
    best, table = choose_on_validation(
        grid, lambda a: (mix(head, top, spec_of(a)), mix(*real_pool_extra, spec_of(a)) if has_extra else None),
        pos, real, target_fpr, tie=lambda a: -a)  # ties: the smaller α, the head alone first
    if best == 0.0:
        return None, table
    return {"seg_topk": int(k), "alpha": float(best), "center": [round(c0, 6), round(c1, 6)],
            "scale": [round(s0, 6), round(s1, 6)]}, table
