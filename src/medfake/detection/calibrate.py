"""Calibration: temperature scaling (Guo et al. 2017) for the binary heads, thresholds at a target false-positive
rate on real images, and the verdict rule.

Verdict rule (one place, used by every detector):

1. ``manipulated`` if p_manipulated ≥ t_manipulated
2. else ``synthetic`` if p_synthetic ≥ t_synthetic
3. else ``real`` if p_synthetic < u_synthetic and p_manipulated < u_manipulated
4. else ``uncertain``

Thresholds are chosen on validation data (`head_thresholds`): with n heads, each head's fake threshold t lets at
most target_fpr / n of the real images through (so at most target_fpr = 1% of reals are called fake in all); given
the positive validation scores, t then moves up to the middle of the gap to the lowest positive above it
(same validation TPR, a larger margin to the reals). Each head's "uncertain" threshold u lets at most
UNCERTAIN_FACTOR × target_fpr / n through (so at most 1.5% of reals get any verdict but real), and is at least
NEAR_FRACTION × t: "uncertain" means near the threshold, not merely above the real validation scores (a head whose
reals all score ~0 would otherwise send every real image that scores 0.03 to review). Floors: t ≥ 0.05,
u ≥ 0.025. Cards written before u existed use u = lower·t (lower_fraction = 0.5).

A head that does not exist (e.g. the 12-class ResNet has no manipulation head) has threshold None and never
fires.

Per-modality floors (`thresholds["by_modality"]`): the same rule applied to the validation reals (and their shifted
copies) of each predicted modality with at least MIN_MODALITY_REALS of them; a modality whose reals score higher
than the others gets higher thresholds, never lower ones than the global. The issue's bound is ≤ 1 % false alarms
on the reals of *every* modality, which one global threshold cannot promise when one modality runs hot.

Small-input floors (`thresholds["by_input_side"]`, keyed by a short side in pixels): the detector works at 128 px,
so an image whose short side is smaller is upsampled, and the interpolation's smoothness is what a generator's
output looks like to it (real validation images shrunk to 33 px and scaled back up: 9 % called fake at the 128 px
thresholds). The calibration shrinks the real validation images to each side in SMALL_INPUT_SIDES, upsamples them
as inference does, and applies the same rule to them; an input uses the floors of the largest calibrated side not
above its own short side (the smallest calibrated side below that), none at 128 px or more. Floors only raise
thresholds, and a smaller side's floors are at least those of a larger side.
"""

from __future__ import annotations

import numpy as np
import torch

LOWER_FRACTION = 0.5
MIN_MODALITY_REALS = 20
THRESHOLD_KEYS = ("synthetic", "manipulated", "synthetic_uncertain", "manipulated_uncertain")
UNCERTAIN_FACTOR = 1.5
NEAR_FRACTION = 0.5
SMALL_INPUT_SIDES = (32, 40, 48, 56, 64, 80, 96)
WORK_SIDE = 128  # the detector's input side: inputs at least this large are not upsampled


def fit_temperature(logits, targets, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the binary NLL of sigmoid(logits / T) on held-out data (LBFGS on log T)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(targets, dtype=np.float64))
    if z.numel() == 0 or z.shape != y.shape:
        raise ValueError("fit_temperature needs logits and targets of the same, non-zero length")
    if y.min() == y.max():  # one class only: NLL is minimised by T → 0 or ∞; keep the identity
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, 0.05, 20.0)) if np.isfinite(t) else 1.0


def apply_temperature(logits, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


MIN_THRESHOLD = 0.05


def threshold_at_fpr(p_real, fpr: float = 0.01, floor: float = MIN_THRESHOLD) -> float:
    """Smallest threshold t ≥ floor such that at most `fpr` of the real scores are ≥ t. The floor keeps a
    detector whose real validation scores are all ~0 from flagging anything above 1e-9."""
    p = np.sort(np.asarray(p_real, dtype=np.float64))[::-1]
    if p.size == 0:
        return 0.5
    k = int(np.floor(fpr * p.size))  # number of real images allowed at or above t
    if k >= p.size:
        return 0.0
    t = float(np.nextafter(p[k], np.inf))  # strictly above the (k+1)-th largest real score
    return float(min(max(t, floor), 1.0))


def choose_on_validation(grid, scores_of, pos: np.ndarray, real: np.ndarray, target_fpr: float, tie):
    """The value g of `grid` whose score catches most positives at the `target_fpr` threshold of the real pool, then
    has the best AUC; ties go to the largest `tie(g)`. `scores_of(g)` → (scores of the val images, scores of extra
    reals in the pool — the shifted copies the thresholds are also set on — or None). One rule for every choice the
    calibration makes on validation (the kNN weight, the segmentation mix). Returns (g, {str(g): {"tpr", "auc"}})."""
    from sklearn.metrics import roc_auc_score

    y = pos[real | pos]
    table, best, key = {}, None, None
    for g in grid:
        s, extra = scores_of(g)
        pool = s[real] if extra is None else np.concatenate([s[real], extra])
        thr = float(np.quantile(pool, 1 - target_fpr)) if len(pool) else np.inf
        tpr = float((s[pos] > thr).mean()) if pos.any() else 0.0
        auc = float(roc_auc_score(y, s[real | pos])) if 0 < y.sum() < y.size else 0.0
        table[str(g)] = {"tpr": round(tpr, 4), "auc": round(auc, 4)}
        rank = (round(tpr, 3), round(auc, 3), tie(g))
        if key is None or rank > key:
            best, key = g, rank
    return best, table


def head_thresholds(p_real_by_head: dict, target_fpr: float = 0.01, uncertain_factor: float = UNCERTAIN_FACTOR,
                    p_pos_by_head: dict | None = None) -> dict:
    """{head: (t, u)} for the heads given ({head: calibrated real validation scores}): t at target_fpr / n per
    head, u (the start of "uncertain") at uncertain_factor × that but at least NEAR_FRACTION × t, u ≤ t.

    With the head's positive validation scores (`p_pos_by_head`), t moves up from the FPR bound to the middle of
    the gap between that bound and the lowest positive score above it: the validation TPR is the
    same and the margin to the real images is larger, so fewer reals cross t when the test data shift a little."""
    n = max(1, len(p_real_by_head))
    out = {}
    for head, p in p_real_by_head.items():
        t = threshold_at_fpr(p, target_fpr / n)
        u = threshold_at_fpr(p, min(1.0, uncertain_factor * target_fpr / n), floor=MIN_THRESHOLD / 2)
        pos = np.asarray((p_pos_by_head or {}).get(head, []), dtype=np.float64)
        above = pos[pos >= t]
        if above.size:
            t = float(min(max(t, (t + above.min()) / 2), above.min()))
        out[head] = (t, min(max(u, NEAR_FRACTION * t), t))
    return out


def modality_floors(global_thr: dict, cuts: dict) -> dict:
    """{key: value} of the per-modality cuts ({head: (t, u)}) that raise the global thresholds: t_m = max(t, t_cut),
    u_m = min(max(u, u_cut), t_m). Keys that stay at the global value are left out."""
    out = {}
    for head, (t_cut, u_cut) in cuts.items():
        t, u = global_thr.get(head), global_thr.get(f"{head}_uncertain")
        if t is None:
            continue
        t_m = max(t, t_cut)
        u_m = min(max(u if u is not None else t_cut, u_cut), t_m)
        if t_m > t:
            out[head] = t_m
        if u is None or u_m > u:
            out[f"{head}_uncertain"] = u_m
    return out


def side_floors_key(thresholds: dict, side: int | None) -> str | None:
    """The key of `by_input_side` whose floors apply to an input of this short side (None: no floors apply)."""
    table = thresholds.get("by_input_side") or {}
    if side is None or side >= WORK_SIDE or not table:
        return None
    sides = sorted(int(k) for k in table)
    below = [s for s in sides if s <= side]
    return str(below[-1] if below else sides[0])


def monotone_side_floors(floors_by_side: dict) -> dict:
    """{side: floors} with each side's floors raised to at least those of every larger side (a smaller input is
    upsampled more, so it never gets lower thresholds)."""
    out, running = {}, {}
    for side in sorted(floors_by_side, key=int, reverse=True):
        cur = dict(floors_by_side[side])
        for k, v in running.items():
            cur[k] = max(cur.get(k, v), v)
        running = dict(cur)
        out[str(side)] = cur
    return {k: out[k] for k in sorted(out, key=int)}


def thresholds_for(thresholds: dict, modality: str | None, side: int | None = None) -> dict:
    """The thresholds that apply to an image of this (predicted) modality and this short side in pixels: the global
    ones with the modality's floors on top, and the small-input floors on top of those."""
    out = {k: thresholds.get(k) for k in THRESHOLD_KEYS}
    out.update(((thresholds.get("by_modality") or {}).get(modality) or {}))
    key = side_floors_key(thresholds, side)
    if key is not None:
        for k, v in (thresholds["by_input_side"][key] or {}).items():
            if k in out and out[k] is not None and v is not None:
                out[k] = max(out[k], float(v))
        for head in ("synthetic", "manipulated"):
            u = f"{head}_uncertain"
            if out.get(head) is not None and out.get(u) is not None:
                out[u] = min(out[u], out[head])
    return out


def verdict(p_synthetic: float, p_manipulated: float, t_synthetic: float | None, t_manipulated: float | None,
            lower: float = LOWER_FRACTION, u_synthetic: float | None = None, u_manipulated: float | None = None) -> str:
    """The verdict rule above; u_* default to lower × t_* (a head whose t is None never fires)."""
    syn_on = t_synthetic is not None and p_synthetic >= t_synthetic
    man_on = t_manipulated is not None and p_manipulated >= t_manipulated
    if man_on:
        return "manipulated"
    if syn_on:
        return "synthetic"
    u_s = u_synthetic if u_synthetic is not None else (lower * t_synthetic if t_synthetic is not None else None)
    u_m = u_manipulated if u_manipulated is not None else (lower * t_manipulated if t_manipulated is not None else None)
    syn_low = u_s is None or p_synthetic < u_s
    man_low = u_m is None or p_manipulated < u_m
    return "real" if syn_low and man_low else "uncertain"


def verdict_at(p_synthetic: float, p_manipulated: float, thresholds: dict, lower: float = LOWER_FRACTION) -> str:
    """The verdict rule at a thresholds dict (keys as in THRESHOLD_KEYS, e.g. from thresholds_for)."""
    return verdict(p_synthetic, p_manipulated, thresholds.get("synthetic"), thresholds.get("manipulated"), lower,
                   thresholds.get("synthetic_uncertain"), thresholds.get("manipulated_uncertain"))


def alarm_rates(verdicts) -> dict:
    """Shares of (real) images called fake (synthetic or manipulated) and given any verdict but real."""
    v = list(verdicts)
    if not v:
        return {"called_fake": None, "not_real": None}
    return {"called_fake": float(np.mean([x in ("synthetic", "manipulated") for x in v])),
            "not_real": float(np.mean([x != "real" for x in v]))}
