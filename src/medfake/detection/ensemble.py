"""Several detector networks, one verdict: the primary's verdict rule applied to scores a second opinion can only
lower.

Single networks raise false alarms on real scans from outside the training collection (benchmarks/RESULTS.md, stop
36): each network on its own scans, so that an alarm both networks raise is rarer than an alarm of either. The
ensemble (`VetoEnsemble`) keeps the primary detector whole (its thresholds, per-modality and small-input floors,
uncertain band, retrieval bank, copy-move cue, Grad-CAM and segmentation mask) and lowers each head's probability to

    p = min(p_primary, g(p_second)),   logit g(q) = logit q − logit v + logit t   (where the primary alarms)

where t is the primary's threshold for that head and v the card's veto level for the second opinion (`veto`): g maps
v onto t, so at the primary's thresholds a head fires only when the primary clears t *and* the second opinion
clears v. A raised (per-modality or small-input) threshold raises the second opinion's bar by the same logit step.

The second opinion p_second is one network's probability, or the mean of several networks' (`members.second` a list
of card names: the same recipe trained with other seeds). Each network alone raises false alarms of its own on real
scans from elsewhere; their mean raises fewer (RESULTS.md, stop 39: two seeds' mean let through 4 outside alarms of
653 where either seed alone let through 5 and 7), at almost no cost in domain.

The second network is a second opinion on alarms only: it runs on the images whose primary verdict is not real, and
an image the primary calls real keeps the primary's scores (lowering them could not change its verdict). On real
scans, nearly all of a hospital's traffic, the ensemble then costs little more than the primary alone; the two
members share each batch's canonical tensor and copy-move cue.

A card may also carry an evidence cue (`detection.evidence`: a fast localizer's top evidence as an alarm of its
own); it is applied after the veto, so the second opinion cannot remove its catches, and the properties below hold
for the ensemble without it.

Properties the tests check: a score never rises (the ensemble never flags an image the primary clears, so its false
alarms on any set are at most the primary's); it equals the primary's wherever the primary says real or the second
network is at or above its veto level; and with the cue shared it gives the scores of each member run on its own.

The veto levels are chosen on the validation split (`veto_levels`): for each head, the (1 − kept) quantile of the
second network's probability over the val fakes of that kind that the primary catches, so that the veto costs at
most 1 − kept of the primary's val catches.

Card (`kind: detector-ensemble`, in the models folder beside its members' cards):

    {"name": ..., "kind": "detector-ensemble", "version": ...,
     "members": {"primary": "<card name>", "second": "<card name>" or ["<card name>", ...]},
     "veto": {"synthetic": v_s, "manipulated": v_m, "kept": 0.95, ...}, "metrics": ..., "command": ...}
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io.errors import MedfakeError
from ..io.image import Image
from .base import Detector, Prediction
from .scores import apply_manipulation_score

ENSEMBLE_KIND = "detector-ensemble"
HEADS = (("synthetic", "p_synthetic"), ("manipulated", "p_manipulated"))
_EPS = 1e-9
_SAME = object()  # `_with`: keep the ensemble's evidence cue


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def lowered(p_primary, p_second, veto: float | None, threshold: float | None):
    """min(p_primary, g(p_second)) with g shifting p_second on the logit scale so that g(veto) = threshold; the
    primary's score unchanged where a head has no veto level or no threshold (a switched-off head)."""
    p1 = np.asarray(p_primary, dtype=np.float64)
    if veto is None or threshold is None:
        return p1
    g = 1.0 / (1.0 + np.exp(-(_logit(p_second) - _logit(veto) + _logit(threshold))))
    return np.minimum(p1, g)


def veto_levels(p_second: np.ndarray, caught: np.ndarray, kept: float = 0.95) -> float | None:
    """The second network's veto level for one head: its probability's (1 − kept) quantile over the validation
    fakes the primary catches (`caught`, boolean), so that the veto keeps `kept` of those catches; None when the
    primary catches none (no evidence: no veto on that head)."""
    if not 0 < kept <= 1:
        raise ValueError(f"kept must be in (0, 1], got {kept}")
    x = np.asarray(p_second, dtype=np.float64)[np.asarray(caught, bool)]
    return float(np.quantile(x, 1 - kept)) if x.size else None


def second_names(members: dict) -> list[str]:
    """The card names of an ensemble card's second opinion (`members.second`: one name or a list), as text (a
    listing shows a malformed card as it is; `build_ensemble` refuses it)."""
    second = members.get("second")
    return [second] if isinstance(second, str) else [str(n) for n in second] if isinstance(second, list) else []


def _check_members(primary, seconds: list, where: str) -> None:
    """One rule for a card and for `fit_ensemble`: a primary and at least one second network, all card names, all
    different."""
    if not primary or not seconds:
        raise MedfakeError(f"{where}: ensemble card names no {'primary' if not primary else 'second'} member")
    if not isinstance(primary, str) or not all(isinstance(n, str) and n for n in seconds):
        raise MedfakeError(f"{where}: ensemble members are card names")
    if primary in seconds or len(set(seconds)) != len(seconds):
        raise MedfakeError(f"{where}: an ensemble needs different members, not {primary!r} and {seconds!r}")


class _Opinion:
    """The second opinion on one image: the mean of the second networks' probabilities."""

    def __init__(self, preds):
        self.p_synthetic = float(np.mean([float(p.p_synthetic) for p in preds]))
        self.p_manipulated = float(np.mean([float(p.p_manipulated) for p in preds]))


def mean_opinion(per_member: Sequence[Sequence]) -> list:
    """Per image, the mean probabilities of the second networks' predictions (one list per network)."""
    return [_Opinion(ps) for ps in zip(*per_member)]


class VetoEnsemble(Detector):
    """`primary` and `second` (one detector, or a list of them whose mean is the second opinion) have the
    `ShippedDetector` interface; `card` the ensemble's card. `second` is the first second network, `seconds` all."""

    def __init__(self, primary, second, card: dict, evidence=None):
        self.primary, self.card = primary, card
        self.evidence = evidence  # the localizer evidence cue (detection.evidence): applied after the veto
        self.seconds = list(second) if isinstance(second, (list, tuple)) else [second]
        if not self.seconds:
            raise MedfakeError(f"ensemble {card.get('name')}: no second network")
        self.second = self.seconds[0]
        self.name = card.get("name", "ensemble")
        self.version = (f"{card.get('version', '0')} ({primary.name} {primary.version} + "
                        + " + ".join(f"{s.name} {s.version}" for s in self.seconds) + ")")
        if evidence is not None:  # the cue's network too: a retrained localizer changes the verdicts
            self.version += f" + evidence {evidence.localizer.name} {evidence.localizer.version}"
        veto = card.get("veto") or {}
        self.veto = {h: (None if veto.get(h) is None else float(veto[h])) for h, _ in HEADS}

    # the primary's rule and parts, as callers (evaluation, the service, benchmarks) read them from a detector
    @property
    def thresholds(self) -> dict:
        return self.primary.thresholds

    @property
    def copy_move(self):
        return self.primary.copy_move

    @property
    def device(self):
        return self.primary.device

    @property
    def has_man(self) -> bool:
        return self.primary.has_man

    @property
    def module(self):
        return self.primary.module

    def verdict_for(self, p_synthetic: float, p_manipulated: float, modality: str | None,
                    side: int | None = None) -> str:
        return self.primary.verdict_for(p_synthetic, p_manipulated, modality, side)

    def canonical_batch(self, images: Sequence[Image]) -> torch.Tensor:
        return self.primary.canonical_batch(images)

    def embed(self, images: Sequence[Image], batch_size: int = 64) -> np.ndarray:
        return self.primary.embed(images, batch_size)

    def _global_thresholds(self) -> dict:
        t = self.primary.thresholds or {}
        return {h: (None if t.get(h) is None else float(t[h])) for h, _ in HEADS}

    # ---------------------------------------------------------------- variants (all members alike)
    def _with(self, primary, seconds: list, evidence=_SAME) -> "VetoEnsemble":
        evidence = self.evidence if evidence is _SAME else evidence
        if (primary is self.primary and all(a is b for a, b in zip(seconds, self.seconds))
                and evidence is self.evidence):
            return self
        return VetoEnsemble(primary, seconds, self.card, evidence)

    def with_evidence(self, evidence) -> "VetoEnsemble":
        """The ensemble with this evidence cue (None: without one)."""
        return self._with(self.primary, self.seconds, evidence)

    def with_references(self, images: Sequence[Image], labels: Sequence[str]) -> "VetoEnsemble":
        """Every member's retrieval bank also holds these labelled references (`--reference`)."""
        return self._with(self.primary.with_references(images, labels),
                          [s.with_references(images, labels) for s in self.seconds])

    def with_copy_move_if(self, wanted: bool | None = None) -> "VetoEnsemble":
        return self._with(self.primary.with_copy_move_if(wanted), [s.with_copy_move_if(wanted) for s in self.seconds])

    def with_copy_move(self) -> "VetoEnsemble":
        return self._with(self.primary.with_copy_move(), [s.with_copy_move() for s in self.seconds])

    # ---------------------------------------------------------------- the contract
    def _shared_cue(self, x: torch.Tensor, explain: bool):
        """The copy-move cue's scores for all members at once when all run it with one config (the shipped ones
        do: the cue has no weights, and it costs about as much as one network on a CPU); None otherwise."""
        a = self.primary.copy_move
        if a is None or any(s.copy_move is None or s.copy_move.config != a.config or s.device != self.primary.device
                            for s in self.seconds):
            return None
        from .copymove import copy_move_scores

        return copy_move_scores(x.to(self.primary.device), a.config, return_maps=explain)

    def predict(self, images: Sequence[Image], *, explain: bool = False, batch_size: int = 64) -> list[Prediction]:
        """The primary on each compute batch; the second networks on the images the primary does not call real,
        sharing their canonical tensor and copy-move cue; the primary's predictions, with the lowered scores and the
        verdict at them where the second opinion was asked."""
        step = self.primary.compute_batch(batch_size)
        preds: list[Prediction] = []
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            x = self.primary.canonical_batch(chunk)
            cue = self._shared_cue(x, explain)
            a = self.primary._predict_batch(chunk, explain, x=x, cue=cue)
            ask = [j for j, p in enumerate(a) if p.verdict != "real"]  # the second opinion: on alarms only
            if ask:
                scores = (cue[0] if explain else cue)[ask] if cue is not None else None
                b = mean_opinion([s._predict_batch([chunk[j] for j in ask], False, x=x[ask], cue=scores)
                                  for s in self.seconds])
                self._combine([chunk[j] for j in ask], [a[j] for j in ask], b)
            if self.evidence is not None:  # last: the veto cannot remove the cue's catches
                self.evidence.apply(self, chunk, x, a)
            preds += a
        return preds

    def _combine(self, images: Sequence[Image], preds: list[Prediction], others: list[Prediction]) -> list[Prediction]:
        t = self._global_thresholds()
        for im, a, b in zip(images, preds, others):
            new = {}
            for head, attr in HEADS:
                p1, p2 = float(getattr(a, attr)), float(getattr(b, attr))
                a.scores[f"{attr}_primary"], a.scores[f"{attr}_second"] = p1, p2
                new[attr] = float(np.clip(lowered(p1, p2, self.veto[head], t[head]), 0, 1))
            vetoed = [h for h, attr in HEADS if new[attr] < float(getattr(a, attr))
                      and a.verdict != "real" and self.veto[h] is not None]
            a.p_synthetic, a.p_manipulated = new["p_synthetic"], new["p_manipulated"]
            before = a.verdict
            a.verdict = self.verdict_for(a.p_synthetic, a.p_manipulated, a.modality, int(min(im.array.shape)))
            if before != "real" and a.verdict != before and vetoed:
                note = (f"{self.primary.name} said {before}; {' + '.join(s.name for s in self.seconds)} "
                        f"{'scores' if len(self.seconds) == 1 else 'score'} it lower "
                        f"({', '.join(vetoed)}), so the verdict is {a.verdict}")
                a.note = f"{a.note}; {note}" if a.note else note
        return preds

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logit of p_fake = 1 − (1 − p_s)(1 − p_m) over the lowered heads (networks only, as
        `ShippedDetector.score_tensor`: no retrieval bank, no copy-move cue), the second opinion applied to every
        image: an attack that turns a real image fake must raise the primary's and the second opinion's scores."""
        t = self._global_thresholds()
        zs = []
        o1 = apply_manipulation_score(self.primary.module(x), self.primary.manip_score)
        o2 = [(apply_manipulation_score(s.module(x), s.manip_score), s) for s in self.seconds]
        for (head, _), key, on1, t1, t2 in (
                (HEADS[0], "syn", self.primary.has_syn, self.primary.t_syn, "t_syn"),
                (HEADS[1], "manip", self.primary.has_man, self.primary.t_man, "t_man")):
            if not on1 or o1.get(key) is None:
                continue
            z = o1[key] / t1
            v = self.veto[head]
            if v is not None and t[head] is not None and all(o.get(key) is not None and getattr(s, t2)
                                                             for o, s in o2):
                shift = float(_logit(t[head]) - _logit(v))
                p2 = torch.stack([torch.sigmoid(o[key] / getattr(s, t2)) for o, s in o2]).mean(0)
                z = torch.minimum(z, torch.logit(p2, eps=_EPS) + shift)
            zs.append(z)
        if not zs:
            raise MedfakeError(f"detector {self.name}: no head to score")
        log_not_fake = sum(F.logsigmoid(-z) for z in zs)
        log_fake = torch.log((-torch.expm1(log_not_fake)).clamp_min(1e-12))
        return log_fake - log_not_fake


def build_ensemble(card: dict, load, read, evidence=None) -> VetoEnsemble:
    """The ensemble a card describes; `load(name)` loads a member detector by card name and `read(name)` reads its
    card (both from the ensemble card's folder); `evidence` its evidence cue (`detection.evidence`), if any."""
    members = card.get("members") or {}
    where = card.get('_path', card.get('name'))
    raw = members.get("second")
    _check_members(members.get("primary"), raw if isinstance(raw, list) else [raw] if raw else [], where)
    seconds = second_names(members)
    for head, _ in HEADS:
        v = (card.get("veto") or {}).get(head)
        try:
            ok = v is None or (0 < float(v) < 1 and math.isfinite(float(v)))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MedfakeError(f"{card.get('_path', card.get('name'))}: veto level for {head} must be in (0, 1), "
                               f"got {v!r}")
    for role, name in [("primary", members["primary"])] + [("second", n) for n in seconds]:
        if read(name).get("kind") == ENSEMBLE_KIND:  # checked before loading: a card naming itself would never load
            raise MedfakeError(f"{where}: the {role} member {name!r} is itself an ensemble")
    return VetoEnsemble(load(members["primary"]), [load(n) for n in seconds], card, evidence)


def fit_veto(primary_preds, second_preds, kinds: Sequence[str], kept: float = 0.95) -> dict:
    """Veto levels from validation predictions of the primary and of the second opinion (`second_preds`: one
    network's predictions or `mean_opinion`'s; `kinds`: real / synthetic / manipulated per image):
    per head, `veto_levels` over the fakes of that kind whose primary verdict is not real; plus, for the card, how
    many catches and how many real images' alarms the veto removes on this split."""
    kinds = np.asarray([str(k) for k in kinds])
    caught_any = np.array([p.verdict != "real" for p in primary_preds])
    veto: dict = {"kept": kept, "rule": "per head: the (1 - kept) quantile of the second member's probability over "
                  "the val fakes of that kind the primary catches"}
    for head, attr in HEADS:
        caught = caught_any & (kinds == head)
        veto[head] = veto_levels([getattr(p, attr) for p in second_preds], caught, kept)
        veto[f"{head}_caught_by_primary"] = int(caught.sum())
    return veto


def fit_ensemble(primary: str, second: str | Sequence[str], data, models_dir, *, name: str = "detector-ensemble",
                 kept: float = 0.95, version: str | None = None, command: str = "", progress=None) -> dict:
    """Choose the veto levels on the manifest's val split with the members as `medfake detect` runs them (the
    copy-move cue when their cards have one; several `second` networks: the mean of their probabilities), check
    the ensemble on the same split, and write `<models_dir>/<name>.json`. Returns the card."""
    import time
    from pathlib import Path

    from ..io.readers import read_image
    from ..models.cards import read_card, write_card
    from .detector import clear_cache, load_detector, use_copy_move
    from .train import load_records

    seconds = [second] if isinstance(second, str) else list(second)
    _check_members(primary, seconds, "medfake train ensemble")  # before any image is read
    models_dir = Path(models_dir)
    recs = [r for r in load_records(data) if r.split == "val"]
    if not recs:
        raise MedfakeError(f"{data}: no rows in split 'val' to choose the veto levels on")
    kinds = [(r.get("kind") or "").strip().lower().replace("fake", "synthetic") for r in recs]
    t0 = time.time()
    images = [read_image(r.path) for r in recs]  # as `medfake detect` reads them
    a = use_copy_move(load_detector(primary, models_dir), None)
    bs = [use_copy_move(load_detector(n, models_dir), None) for n in seconds]
    pa, per = [], [[] for _ in bs]
    for i in range(0, len(images), 64):
        pa += a.predict(images[i:i + 64])
        for b, out in zip(bs, per):
            out += b.predict(images[i:i + 64])
        if progress:
            progress(min(i + 64, len(images)))
    pb = mean_opinion(per)
    veto = fit_veto(pa, pb, kinds, kept)
    one = len(seconds) == 1
    card = {"name": name, "kind": ENSEMBLE_KIND, "version": version or time.strftime("%Y%m%d"),
            "members": {"primary": primary, "second": seconds[0] if one else seconds},
            "member_versions": {"primary": a.version,
                                "second": bs[0].version if one else [b.version for b in bs]},
            "veto": veto, "data": str(data),
            # the rates the primary's thresholds were calibrated to (`medfake detect --summary` reads them here)
            "thresholds": {k: (a.card.get("thresholds") or {}).get(k) for k in ("target_fpr", "uncertain_factor")},
            "val_images": {str(k): int(n) for k, n in zip(*np.unique(kinds, return_counts=True))}}
    k = np.asarray(kinds)

    def rates(preds):
        v = np.array([p.verdict != "real" for p in preds])
        return {"real_not_real": float(v[k == "real"].mean()) if (k == "real").any() else None,
                **{f"{h}_caught": float(v[k == h].mean()) if (k == h).any() else None for h, _ in HEADS}}

    card["val_check"] = {"primary": rates(pa), **{("second" if one else f"second {n}"): rates(p)
                                                   for n, p in zip(seconds, per)}}
    # the ensemble's verdicts from the predictions in hand (as `predict` makes them: the second on alarms only)
    ask = [j for j, p in enumerate(pa) if p.verdict != "real"]
    VetoEnsemble(a, bs, card)._combine([images[j] for j in ask], [pa[j] for j in ask], [pb[j] for j in ask])
    card["val_check"]["ensemble"] = rates(pa)
    card["command"] = command
    card["minutes"] = round((time.time() - t0) / 60, 2)
    previous = models_dir / f"{name}.json"
    if previous.is_file() and read_card(previous).get("evidence"):  # the evidence cue's cuts do not depend on the veto
        card["evidence"] = read_card(previous)["evidence"]
    write_card(previous, card)
    clear_cache()
    return card


__all__ = ["ENSEMBLE_KIND", "VetoEnsemble", "build_ensemble", "fit_ensemble", "fit_veto", "lowered",
           "mean_opinion", "second_names", "veto_levels"]
