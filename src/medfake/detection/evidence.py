"""The localizer's evidence cue: a fast localizer (`localizer-fast`) run on every image a detector scores, its top
evidence calibrated on real validation images into a manipulation alarm of its own.

The detectors' manipulation heads miss most splices (RESULTS.md, stop 48: the default's manipulation score has AUC
0.64 on them), while the top of a localizer's map separates them from real images (AUC 0.86, stop 49). The cue
raises p_manipulated to p_evidence where that is higher (`EvidenceCue`); it is applied last, after an ensemble's
veto, so no member can remove its catches, and its false alarms are bounded on its own: at most `budget` of the
real val pool above the manipulated cut, `uncertain_budget` above the uncertain one.

Calibration (`fit_evidence`, CLI `medfake train evidence`): the real val images of a manifest, their shifted copies
(the training augmentation) and acquisition copies, as the detectors' thresholds were calibrated on; per predicted
modality its own reals; per small input side, the real val images shrunk to that side. The section goes into the
detector's (or ensemble's) card. Two shipped cards are opt-in variants of the default: `models/detector-evidence.json`
(the cue of `localizer-fast`: about a third of the detection speed; RESULTS.md, "Stop 50") and
`models/detector-thorough.json` (the cue of the full-resolution `localizer`: more caught, under half the speed;
"Stop 51"):

    "evidence": {"localizer": "<card name>", "top_k": 64, "cut": c, "cut_uncertain": c_u, "budget": 0.003,
                 "uncertain_budget": 0.004, "by_modality": {"lung_ct": {"cut": ..., "cut_uncertain": ...}, ...},
                 "by_input_side": {"32": {"cut": ..., "cut_uncertain": ...}, ...},
                 "val": {...}, "command": ...}
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..io.errors import MedfakeError
from .ensemble import _logit
from .localizer import TOP_K, Localizer, load_localizer

EVIDENCE_BUDGET = 0.003  # the share of real val images (and of their copies) the cue alone may call manipulated
EVIDENCE_UNCERTAIN_BUDGET = 0.004  # ... or uncertain (the shipped cue's; 0.005 / 0.01 let too many through)
MIN_REAL_VAL = 50  # real val images at least (with their copies, 200 in the pool the cuts are quantiles of)


def top_evidence(localizer: Localizer, x: torch.Tensor, top_k: int = TOP_K) -> np.ndarray:
    """The mean of the `top_k` largest logits of the localizer's map of each canonical image (N,)."""
    with torch.no_grad():
        z = localizer.module(x.to(localizer.device).float()).float().flatten(1)
        return z.topk(min(top_k, z.shape[1]), 1).values.mean(1).cpu().numpy().astype(np.float64)


class EvidenceCue:
    """A localizer's top evidence as a manipulation alarm of its own, calibrated on real validation images.

    The cue maps the evidence e to p_evidence, logit-linear through two calibrated points: e = `cut` (the real
    pool's (1 − budget) quantile) gives the image's manipulated threshold t, e = `cut_uncertain` (the (1 − uncertain
    budget) quantile) its uncertain threshold u, t and u as the detector's verdict rule applies them to that image
    (modality and small-input floors included). Where e reaches the uncertain cut and p_evidence is higher, the
    image's p_manipulated becomes p_evidence; below that cut the cue only reports its scores, so the ranking of the
    other images stays the head's. The cue alone thus calls manipulated exactly the images whose evidence reaches
    `cut`, and uncertain those between the two cuts, whatever the detector's thresholds.

    The cuts that apply to an image are the highest of the global ones, its predicted modality's (`by_modality`,
    the same quantiles over that modality's real val images) and, for an input whose short side is under the
    detector's size, that side's (`by_input_side`, the real val images shrunk to that side)."""

    def __init__(self, localizer: Localizer, section: dict):
        self.localizer = localizer
        self.section = section
        self.top_k = int(section.get("top_k", TOP_K))
        self.cut = float(section["cut"])
        self.cut_uncertain = float(section["cut_uncertain"])
        self.by_side = {int(k): (float(v["cut"]), float(v["cut_uncertain"]))
                        for k, v in (section.get("by_input_side") or {}).items()}
        self.by_modality = {str(k): (float(v["cut"]), float(v["cut_uncertain"]))
                            for k, v in (section.get("by_modality") or {}).items()}
        if not self.cut_uncertain < self.cut:
            raise MedfakeError(f"evidence cue: cut_uncertain {self.cut_uncertain} must be below cut {self.cut}")

    def cuts(self, side: int | None = None, modality: str | None = None) -> tuple[float, float]:
        """(cut, cut_uncertain) for an input of this short side (the smallest calibrated side at or above it) and
        this predicted modality: the highest of the global, the modality's and the side's cuts."""
        from ..data.modalities import IMAGE_SIZE

        c, u = self.by_modality.get(modality, (self.cut, self.cut_uncertain))
        c, u = max(c, self.cut), max(u, self.cut_uncertain)
        if side is None or side >= IMAGE_SIZE or not self.by_side:
            return c, u
        key = min((k for k in self.by_side if k >= side), default=min(self.by_side))
        return max(c, self.by_side[key][0]), max(u, self.by_side[key][1])

    def probability(self, e: float, t: float, u: float, side: int | None = None, modality: str | None = None) -> float:
        cut, cut_u = self.cuts(side, modality)
        lu, lt = float(_logit(u)), float(_logit(t))
        z = lu + (float(e) - cut_u) / max(cut - cut_u, 1e-9) * max(lt - lu, 1e-6)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))

    def apply(self, det, images, x: torch.Tensor, preds) -> None:
        """Raise `preds` (the detector `det`'s, on `images` with canonical batch `x`) by the cue, in place: the
        evidence and p_evidence go into each prediction's scores, and a verdict the cue changed gets a note."""
        from .calibrate import thresholds_for

        ev = top_evidence(self.localizer, x, self.top_k)
        for im, p, e in zip(images, preds, ev):
            side = int(min(im.array.shape))
            t = thresholds_for(det.thresholds, p.modality, side)
            if t.get("manipulated") is None:
                continue
            tm = float(t["manipulated"])
            um = float(t.get("manipulated_uncertain") or 0.5 * tm)
            pe = self.probability(e, tm, um, side, p.modality)
            p.scores["localizer_evidence"] = float(e)
            p.scores["p_localizer_evidence"] = pe
            if e >= self.cuts(side, p.modality)[1] and pe > p.p_manipulated:  # silent below its uncertain cut
                before = p.verdict
                p.p_manipulated = pe
                p.verdict = det.verdict_for(p.p_synthetic, p.p_manipulated, p.modality, side)
                if p.verdict != before:
                    note = (f"the localizer's evidence ({e:.2f}, cut {self.cuts(side, p.modality)[0]:.2f}) makes "
                            f"it {p.verdict}")
                    p.note = f"{p.note}; {note}" if getattr(p, "note", "") else note


def evidence_of(card: dict, models_dir: str | Path, device) -> EvidenceCue | None:
    """The evidence cue a detector (or ensemble) card calibrated (`"evidence"` section naming a localizer in the
    same folder); None when it has none. A localizer of another version than the cue was calibrated on is an error:
    its logits, and so the cuts, are another network's."""
    section = card.get("evidence")
    if not section:
        return None
    lname = section.get("localizer")
    if not lname or not (Path(models_dir) / f"{lname}.json").is_file():
        raise MedfakeError(f"{card.get('name')}: its evidence cue names the localizer {lname!r}, but {models_dir} "
                           f"has no {lname}.json")
    loc = load_localizer(lname, models_dir, device)
    want = section.get("localizer_version")
    if want is not None and str(want) != loc.version:  # the cuts are in one network's logits
        raise MedfakeError(f"{card.get('name')}: its evidence cue was calibrated on localizer {lname} {want}, but "
                           f"{models_dir} has {lname} {loc.version}; choose its cuts again for this one: medfake "
                           f"train evidence --localizer {lname} --detector {card.get('name')} --data MANIFEST")
    return EvidenceCue(loc, section)


def batched_evidence(localizer: Localizer, images: np.ndarray, top_k: int = TOP_K, batch: int = 64) -> np.ndarray:
    """`top_evidence` of an (N, 128, 128) array of canonical images, in batches."""
    out = [top_evidence(localizer, torch.as_tensor(images[i:i + batch])[:, None], top_k)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def _cuts(e: np.ndarray, budget: float, uncertain_budget: float) -> tuple[float, float]:
    """(cut, uncertain cut): the (1 − budget) and (1 − uncertain budget) quantiles, the second strictly below the
    first (tied top scores would make them equal)."""
    c = float(np.quantile(e, 1 - budget))
    return c, min(float(np.quantile(e, 1 - uncertain_budget)), c - 1e-6)


def fit_evidence(detector: str, localizer: str, data, models_dir, *, budget: float = EVIDENCE_BUDGET,
                 uncertain_budget: float = EVIDENCE_UNCERTAIN_BUDGET, top_k: int = TOP_K, shifts: int = 2,
                 acquisition: int = 1, seed: int = 0, command: str = "", write: bool = True) -> dict:
    """Calibrate `localizer`'s evidence cue for `detector` (a card name, "default" included) on `data`'s split=val
    and write it into that card (`write`); returns the section, with the val check of the detector as
    `medfake detect` runs it, without and with the cue."""
    from ..data.modalities import MODALITY_NAMES
    from ..io.readers import read_image
    from ..models.cards import read_card, write_card
    from .calibrate import MIN_MODALITY_REALS, SMALL_INPUT_SIDES
    from .detector import clear_cache, load_detector, resolve_card, use_copy_move
    from .train import _auc, acquisition_copies, cache_records, load_records, shifted_copies, small_input_copies

    if not 0 < budget < uncertain_budget < 1:
        raise MedfakeError(f"need 0 < budget < uncertain budget < 1, not {budget} and {uncertain_budget}")
    models_dir = Path(models_dir)
    card_file = resolve_card(detector, models_dir)
    loc = load_localizer(localizer, models_dir)
    recs = [r for r in load_records(data) if r.split == "val"]
    if not recs:
        raise MedfakeError(f"{data}: no rows in split 'val' to calibrate the evidence cue on")
    t0 = time.time()
    val = cache_records(recs, "load val")
    real = val.kind == 0
    if real.sum() < MIN_REAL_VAL:
        raise MedfakeError(f"{data}: {int(real.sum())} real val images; the cue's cuts need at least {MIN_REAL_VAL}")
    reals = val.images[real]
    copies = np.concatenate([shifted_copies(reals, shifts, seed), acquisition_copies(reals, acquisition, seed)])
    e_real, e_copies = batched_evidence(loc, reals, top_k), batched_evidence(loc, copies, top_k)
    mod_real = val.modality[real]
    mod_copies = np.tile(mod_real, shifts + acquisition)

    def pool_cuts(sel_real, sel_copies) -> tuple[float, float]:
        """the larger of the clean reals' and the copies' quantiles: neither pool gets more alarms than its budget
        (a first try with one pool of both and one global cut called 1.5-2 % of the knee X-ray and lung CT test
        reals not real; RESULTS.md, "Stop 50")"""
        a, b = _cuts(e_real[sel_real], budget, uncertain_budget), _cuts(e_copies[sel_copies], budget,
                                                                         uncertain_budget)
        return max(a[0], b[0]), max(a[1], b[1])

    cut, cut_u = pool_cuts(np.ones(len(reals), bool), np.ones(len(copies), bool))
    by_modality = {}
    for i, m in enumerate(MODALITY_NAMES):
        if (mod_real == i).sum() >= MIN_MODALITY_REALS:  # a modality's own cuts, never below the global ones
            c, u = pool_cuts(mod_real == i, mod_copies == i)
            by_modality[m] = {"cut": round(max(c, cut), 5), "cut_uncertain": round(max(u, cut_u), 5)}
    by_side, floor = {}, (cut, cut_u)
    for side in sorted(SMALL_INPUT_SIDES, reverse=True):  # a smaller side's cuts never below a larger side's
        c, u = _cuts(batched_evidence(loc, small_input_copies(reals, side), top_k), budget, uncertain_budget)
        floor = (max(c, floor[0]), max(u, floor[1]))
        by_side[str(side)] = {"cut": round(floor[0], 5), "cut_uncertain": round(floor[1], 5)}
    e_val = batched_evidence(loc, val.images, top_k)
    groups = val.group if val.group is not None else np.where(val.kind == 2, "manipulated", "")
    by_method = {}
    for g in sorted(set(groups[val.kind == 2])):
        sel = (val.kind == 2) & (groups == g)
        by_method[g] = {"n": int(sel.sum()), "above_cut": round(float((e_val[sel] >= cut).mean()), 4),
                        "auc_vs_real": _auc(np.r_[np.zeros(real.sum()), np.ones(sel.sum())],
                                            np.r_[e_val[real], e_val[sel]])}
    section = {"localizer": localizer, "localizer_version": loc.version, "top_k": top_k, "cut": round(cut, 5),
               "cut_uncertain": round(cut_u, 5), "budget": budget, "uncertain_budget": uncertain_budget,
               "by_modality": by_modality, "by_input_side": by_side,
               "real_pool": f"{int(real.sum())} real val images and {len(copies)} copies ({shifts} shifted, "
                            f"{acquisition} acquisition per image), as the thresholds were calibrated on; each "
                            f"cut the larger of the two pools' quantiles",
               "val": {"real_above_cut": round(float((e_val[real] >= cut).mean()), 4),
                       "real_above_cut_by_modality": {
                           m: round(float((e_val[real & (val.modality == i)] >= by_modality.get(m, {"cut": cut})["cut"])
                                          .mean()), 4)
                           for i, m in enumerate(MODALITY_NAMES) if (real & (val.modality == i)).any()},
                       "manipulated": by_method}}
    # the detector as `medfake detect` runs it, on the val images as it reads them: without and with the cue
    det = use_copy_move(load_detector(detector, models_dir, evidence=False), None)  # its old cue may be stale
    kinds = np.array([(r.get("kind") or "").strip().lower().replace("fake", "synthetic") for r in recs])
    images = [read_image(r.path) for r in recs]
    check = {}
    for label, d in (("without", det.with_evidence(None)), ("with", det.with_evidence(EvidenceCue(loc, section)))):
        v = np.array([p.verdict for p in d.predict(images)])
        check[label] = {k: {"n": int((kinds == k).sum()), "manipulated": round(float((v[kinds == k] == "manipulated")
                                                                                       .mean()), 4),
                            "not_real": round(float((v[kinds == k] != "real").mean()), 4)}
                        for k in ("real", "synthetic", "manipulated") if (kinds == k).any()}
    section["val"]["detector"] = check
    section["command"] = command
    section["minutes"] = round((time.time() - t0) / 60, 2)
    if write:
        card = read_card(card_file)
        card["evidence"] = section
        write_card(card_file, card)
        clear_cache()
    return section


__all__ = ["EVIDENCE_BUDGET", "EVIDENCE_UNCERTAIN_BUDGET", "EvidenceCue", "batched_evidence", "evidence_of",
           "fit_evidence", "top_evidence"]
