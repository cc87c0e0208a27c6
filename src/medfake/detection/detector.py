"""The shipped detectors behind `detection.base.Detector`: model + card (temperatures, thresholds), retrieval bank,
anomaly scorer, Grad-CAM (MONAI) and manipulation masks (the card's localizer, else the segmentation head) at each
input image's own size.

Name resolution (`load_detector`): "default" means the card `detector-ensemble.json` in the models folder when it
is there (several networks, detection.ensemble), else `detector-default.json`; any other name is a card `<name>.json`
there (or a path to a card file).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.canonical import to_canonical
from ..data.modalities import IMAGE_SIZE, MODALITY_NAMES
from ..io.errors import MedfakeError
from ..io.image import Image
from ..models.cards import card_path, load_model, read_card
from ..settings import get_settings
from .anomaly import MahalanobisScorer
from .base import Detector, Prediction
from .calibrate import LOWER_FRACTION, side_floors_key, thresholds_for, verdict_at
from .copymove import CopyMoveCue, copy_move_scores, copy_of_pair, fuse
from .ensemble import ENSEMBLE_KIND, build_ensemble
from .evidence import EvidenceCue, evidence_of
from .localizer import Localizer, localizer_of
from .retrieval import LABELS, ReferenceBank, blend
from .scores import apply_manipulation_score, flip_averaged, seg_top

DEFAULT_NAME = "detector-default"  # the default network's card
DEFAULT_ENSEMBLE = "detector-ensemble"  # the default detector where the models folder has this card
# Images per network call (and per copy-move cue call) on a CPU, whatever batch the caller hands over: 16 images'
# tensors stay in the caches, so on 2 cores detection runs ~1.2x faster end to end than at 64 (benchmarks/RESULTS.md,
# 2026-12-02). Every score is per image, so results do not depend on it. On a GPU the caller's batch is one call.
CPU_COMPUTE_BATCH = 16


def _fake_logit(out: dict, t_syn: float | None, t_man: float | None) -> torch.Tensor:
    """logit of p_fake = 1 - (1 - p_syn)(1 - p_man) over the heads that exist (temperature None = no head);
    differentiable."""
    if t_man is None or out.get("manip") is None:
        return out["syn"] / t_syn
    if t_syn is None:
        return out["manip"] / t_man
    log_not_fake = F.logsigmoid(-out["syn"] / t_syn) + F.logsigmoid(-out["manip"] / t_man)
    log_fake = torch.log((-torch.expm1(log_not_fake)).clamp_min(1e-12))
    return log_fake - log_not_fake


class _FakeScoreView(nn.Module):
    """(N, 1) fake-logit view of a detector network, the shape MONAI GradCAM expects."""

    def __init__(self, model: nn.Module, t_syn: float | None, t_man: float | None, manip_score: dict | None = None):
        super().__init__()
        self.model = model
        self.t_syn, self.t_man = t_syn, t_man
        self.manip_score = manip_score

    def forward(self, x):
        return _fake_logit(apply_manipulation_score(self.model(x), self.manip_score), self.t_syn, self.t_man)[:, None]


def _norm01(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    lo, hi = flat.min(1)[0].view(-1, 1, 1, 1), flat.max(1)[0].view(-1, 1, 1, 1)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(x))


def to_input_size(a128: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Map a 128×128 map back onto an H×W input: `to_canonical` centre-cropped a square and resized it, so the map
    is resized to the square and placed at the crop; outside the crop is 0."""
    h, w = shape
    s = min(h, w)
    t = torch.as_tensor(np.asarray(a128, dtype=np.float32))[None, None]
    if nearest:
        r = F.interpolate(t, size=(s, s), mode="nearest")
    else:
        r = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)
    out = np.zeros((h, w), np.float32)
    y0, x0 = (h - s) // 2, (w - s) // 2
    out[y0:y0 + s, x0:x0 + s] = r[0, 0].numpy()
    return out


def retrieval_weights(card: dict, default: float = 0.0) -> dict:
    """Each head's kNN weight from a card: `retrieval.weights` per head (chosen on validation), else the one
    `retrieval.weight` of older cards, else `default`."""
    r = card.get("retrieval") or {}
    base = float(r.get("weight", default))
    per = r.get("weights") or {}
    return {h: float(per.get(h, base)) for h in ("synthetic", "manipulated")}


class ShippedDetector(Detector):
    def __init__(self, module: nn.Module, card: dict, bank: ReferenceBank | None = None,
                 anomaly: MahalanobisScorer | None = None, device: str | torch.device = "cpu",
                 copy_move: CopyMoveCue | None = None, localizer: Localizer | None = None,
                 evidence: EvidenceCue | None = None):
        self.module = module.eval()
        self.card = card
        self.name = card.get("name", "detector")
        self.version = str(card.get("version", "0"))
        self.device = torch.device(device)
        temps = card.get("temperature") or {}
        thr = card.get("thresholds") or {}
        self.t_syn = float(temps.get("synthetic") or 1.0)
        self.t_man = float(temps["manipulated"]) if temps.get("manipulated") else None
        heads = card.get("heads") or {}
        self.has_syn = bool(heads.get("synthetic", True))
        self.has_man = heads.get("manipulated", True) and self.t_man is not None
        self.lower = float(thr.get("lower_fraction", LOWER_FRACTION))
        # the manipulation score the card was calibrated on: the head, or the head mixed with the segmentation map
        ms = card.get("manipulation_score") or {}
        self.manip_score = ms if float(ms.get("alpha", 0.0)) > 0 else None
        self.copy_move = copy_move if self.has_man else None  # the cue fuses into the manipulation head
        self.thresholds = self.copy_move.thresholds if self.copy_move is not None else thr
        self._off_heads = [h for h, on in (("synthetic", self.has_syn), ("manipulated", self.has_man)) if not on]
        self.bank = bank
        self.retrieval_weights = retrieval_weights(card) if bank is not None else {"synthetic": 0.0, "manipulated": 0.0}
        self.anomaly = anomaly
        self.localizer = localizer  # the network the explain mask comes from, when the card names one
        self.evidence = evidence  # the localizer evidence cue (detection.evidence), applied last in `predict`
        self._lock = threading.Lock()  # Grad-CAM registers hooks; one explain at a time
        self._with_cue: ShippedDetector | None = None  # with_copy_move()'s detector, made on first use

    def verdict_for(self, p_synthetic: float, p_manipulated: float, modality: str | None,
                    side: int | None = None) -> str:
        """The verdict rule at this (predicted) modality's thresholds: the global ones, raised by the modality's
        floor when the card has one, and by the small-input floor of an input whose short side (pixels) is below
        the detector's 128 px (calibrate.thresholds_for)."""
        t = thresholds_for(self.thresholds, modality, side)
        for head in self._off_heads:  # a switched-off head never fires
            t[head] = t[f"{head}_uncertain"] = None
        return verdict_at(p_synthetic, p_manipulated, t, self.lower)

    # ---------------------------------------------------------------- building blocks
    def canonical_batch(self, images: Sequence[Image]) -> torch.Tensor:
        return torch.as_tensor(np.stack([to_canonical(im) for im in images])[:, None])

    def forward(self, x: torch.Tensor) -> dict:
        """The network's outputs with the card's manipulation score; a card calibrated with `test_time_flip` gets
        the mean of the image's and its mirror image's outputs, as its thresholds were fitted on."""
        if self.module.training:
            self.module.eval()
        out = flip_averaged(self.module, x.to(self.device), bool(self.card.get("test_time_flip")))
        return apply_manipulation_score(out, self.manip_score)

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return _fake_logit(apply_manipulation_score(self.module(x), self.manip_score),
                           self.t_syn if self.has_syn else None, self.t_man if self.has_man else None)

    def compute_batch(self, batch_size: int) -> int:
        """How many of a caller's `batch_size` images go through the network at once (CPU_COMPUTE_BATCH on a CPU)."""
        return batch_size if torch.device(self.device).type != "cpu" else max(1, min(batch_size, CPU_COMPUTE_BATCH))

    @torch.no_grad()
    def embed(self, images: Sequence[Image], batch_size: int = 64) -> np.ndarray:
        outs = []
        batch_size = self.compute_batch(batch_size)
        for i in range(0, len(images), batch_size):
            outs.append(self.forward(self.canonical_batch(images[i:i + batch_size]))["emb"].float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def with_references(self, images: Sequence[Image], labels: Sequence[str]) -> "ShippedDetector":
        """A copy sharing the network whose retrieval bank also holds these labelled references."""
        if self.has_man is False:
            labels = ["synthetic" if lab == "manipulated" else lab for lab in labels]
        bank = self.bank.copy() if self.bank is not None else ReferenceBank(
            center=self.anomaly.mean if self.anomaly is not None else None)
        bank.add(self.embed(images), labels)
        det = ShippedDetector(self.module, self.card, bank, self.anomaly, self.device, self.copy_move, self.localizer,
                               self.evidence)
        det.version = self.version
        det._lock = self._lock  # the same network
        if self.bank is None:  # no shipped bank: references alone, default weight
            det.retrieval_weights = retrieval_weights(self.card, 0.3)
        return det

    def with_copy_move(self) -> "ShippedDetector":
        """A copy sharing the network that also runs the copy-move cue (`detection.copymove`), fuses it into
        p_manipulated and uses the thresholds calibrated for that fused score (the card's `copy_move` section)."""
        section = self.card.get("copy_move")
        if not section or not self.has_man:
            raise MedfakeError(f"detector {self.name} {self.version} has no calibrated copy-move cue (recalibrate it: "
                               f"medfake train detector --init-from CARD --steps 0 --copy-move-cue)")
        if self._with_cue is None:  # made once: a server asks for it on every request, and it shares the explain lock
            det = ShippedDetector(self.module, self.card, self.bank, self.anomaly, self.device,
                                  CopyMoveCue.from_card(section), self.localizer, self.evidence)
            det.version = f"{self.version}+copy-move"  # what a row or a report says was run
            det._lock = self._lock  # one network: one Grad-CAM at a time across both
            self._with_cue = det
        return self._with_cue

    def with_copy_move_if(self, wanted: bool | None = None) -> "ShippedDetector":
        """The detector as an entry point runs it: `wanted` None (the default of `medfake detect`, `eval`, the
        service and the demo) adds the copy-move cue when the card has one calibrated and keeps the plain detector
        otherwise; True requires the cue (a card without it is a clear error); False runs without it."""
        if wanted is False:
            if self.copy_move is None:
                return self
            det = ShippedDetector(self.module, self.card, self.bank, self.anomaly, self.device, None, self.localizer,
                                  self.evidence)
            det.version = self.version.removesuffix("+copy-move")
            det._lock = self._lock
            return det
        if self.copy_move is not None or (wanted is None and not (self.card.get("copy_move") and self.has_man)):
            return self
        return self.with_copy_move()

    def with_evidence(self, evidence: EvidenceCue | None) -> "ShippedDetector":
        """A copy sharing the network with this evidence cue (None: without one)."""
        if evidence is self.evidence:
            return self
        det = ShippedDetector(self.module, self.card, self.bank, self.anomaly, self.device, self.copy_move,
                              self.localizer, evidence)
        det.version, det._lock = self.version, self._lock
        return det

    # ---------------------------------------------------------------- the contract
    def predict(self, images: Sequence[Image], *, explain: bool = False, batch_size: int = 64) -> list[Prediction]:
        preds: list[Prediction] = []
        batch_size = self.compute_batch(batch_size)
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            x = self.canonical_batch(chunk)
            got = self._predict_batch(chunk, explain, x=x)
            if self.evidence is not None:
                self.evidence.apply(self, chunk, x, got)
            preds += got
        return preds

    def _predict_batch(self, images: Sequence[Image], explain: bool, x: torch.Tensor | None = None,
                       cue=None) -> list[Prediction]:
        """One compute batch. `x` (the images' canonical batch) and `cue` (their `copy_move_scores` with this cue's
        config, maps included when `explain`) may be handed in by a caller that already has them (an ensemble
        sharing one cue between its members); else they are computed here."""
        if not images:
            return []
        x = self.canonical_batch(images) if x is None else x
        with torch.no_grad():
            out = self.forward(x)
        emb = out["emb"].float().cpu().numpy()
        p_syn = (torch.sigmoid(out["syn"].float() / self.t_syn).cpu().numpy().astype(np.float64)
                 if self.has_syn else np.zeros(len(images)))
        p_man = (torch.sigmoid(out["manip"].float() / self.t_man).cpu().numpy().astype(np.float64)
                 if self.has_man else np.zeros(len(images)))
        p_mod = torch.softmax(out["modality"].float(), 1).cpu().numpy()
        # the two parts of a mixed manipulation score, each on its own (the head's logit, the map's top-k logit)
        parts = ((out["manip_head"].float().cpu().numpy(), seg_top(out["seg"]).cpu().numpy())
                 if "manip_head" in out else None)
        scores_knn = None
        if self.bank is not None and len(self.bank) and max(self.retrieval_weights.values()) > 0:
            scores_knn = self.bank.knn(emb)
            ws, wm = self.retrieval_weights["synthetic"], self.retrieval_weights["manipulated"]
            p_syn_f = blend(p_syn, scores_knn[:, LABELS.index("synthetic")], ws) if self.has_syn else p_syn
            p_man_f = blend(p_man, scores_knn[:, LABELS.index("manipulated")], wm) if self.has_man else p_man
        else:
            p_syn_f, p_man_f = p_syn, p_man
        cm_scores = cm_regions = p_cm = None
        if self.copy_move is not None:
            # on the detector's device (a GPU when there is one); the cue has no weights, only tensor operations
            got = (cue if cue is not None
                   else copy_move_scores(x.to(self.device), self.copy_move.config, return_maps=explain))
            cm_scores, cm_regions = (got[0], got[1].cpu()) if explain else (got, None)
            cm_scores = cm_scores.cpu().numpy().astype(np.float64)
            p_cm = self.copy_move.probability(cm_scores)
            p_man_f = fuse(p_man_f, p_cm)
        anomaly = self.anomaly.score(emb) if self.anomaly is not None else None
        heat = self._gradcam(x) if explain else None
        seg = (torch.sigmoid(out["seg"].float()).cpu().numpy()[:, 0]
               if explain and out.get("seg") is not None else None)
        loc = self.localizer.masks(x) if explain and self.localizer is not None else None
        if explain and seg is None and (cm_regions is not None or loc is not None):
            seg = np.zeros((len(images), *x.shape[-2:]), np.float32)
        preds = []
        for j, im in enumerate(images):
            ps, pm = float(np.clip(p_syn_f[j], 0, 1)), float(np.clip(p_man_f[j], 0, 1))
            scores = {"p_modality": float(p_mod[j].max()), "p_synthetic_classifier": float(p_syn[j])}
            if self.has_man:
                scores["p_manipulated_classifier"] = float(p_man[j])
            if parts is not None:
                scores["manipulation_head_logit"] = float(parts[0][j])
                scores["segmentation_top_logit"] = float(parts[1][j])
            if scores_knn is not None:
                scores["knn_synthetic"] = float(scores_knn[j, 1])
                scores["knn_manipulated"] = float(scores_knn[j, 2])
            if anomaly is not None:
                scores["anomaly"] = float(anomaly[j])
            if p_cm is not None:
                scores["copy_move"] = float(cm_scores[j])
                scores["p_copy_move"] = float(p_cm[j])
            modality = MODALITY_NAMES[int(p_mod[j].argmax())]
            side = int(min(im.array.shape))
            pred = Prediction(modality=modality, p_synthetic=ps, p_manipulated=pm,
                              verdict=self.verdict_for(ps, pm, modality, side), scores=scores)
            pred.note = self._small_input_note(im.array.shape)
            if explain:
                shape = im.array.shape
                pred.heatmap = np.clip(to_input_size(heat[j], shape), 0, 1)
                if seg is not None:
                    m128 = loc[j] if loc is not None else seg[j] >= 0.5
                    if p_cm is not None and p_cm[j] >= 0.5:
                        m128 = m128 | copy_of_pair(x[j, 0].float().cpu().numpy(), cm_regions[j].numpy())
                    pred.mask = to_input_size(m128.astype(np.float32), shape, nearest=True) >= 0.5
                else:
                    pred.mask = np.zeros(shape, bool)
            preds.append(pred)
        return preds

    def _small_input_note(self, shape: tuple[int, int]) -> str:
        """What an input under the detector's size should be told: it was upsampled, and whether the small-input
        floors raised its thresholds ("" for an input of 128 px or more)."""
        h, w = shape
        key = side_floors_key(self.thresholds, min(h, w))
        if key is None:
            return ""
        head = f"small input ({w}x{h} px, upsampled x{IMAGE_SIZE / min(h, w):.1f} to {IMAGE_SIZE} px)"
        if self.thresholds["by_input_side"][key]:
            return f"{head}: thresholds raised to those calibrated on real images of side {key} px"
        return f"{head}: the 128 px thresholds hold at this size (checked on real images of side {key} px)"

    def _gradcam(self, x: torch.Tensor) -> np.ndarray:
        from monai.visualize import GradCAM

        with self._lock:
            view = _FakeScoreView(self.module, self.t_syn if self.has_syn else None,  # GradCAM restores the mode
                                  self.t_man if self.has_man else None, self.manip_score).eval()
            # GradCAM registers hooks on the network's layer: remove them after use
            handles_before = _hook_ids(self.module)
            cam = GradCAM(nn_module=view, target_layers=f"model.{self.module.gradcam_layer}",
                          postprocessing=_norm01)
            try:
                with torch.enable_grad():
                    m = cam(x.to(self.device).clone().requires_grad_(True), class_idx=0)
            finally:
                _remove_new_hooks(self.module, handles_before)
        return m.detach().float().cpu().numpy()[:, 0]


def _hook_ids(module: nn.Module) -> dict:
    return {id(m): (set(m._forward_hooks), set(m._backward_hooks)) for m in module.modules()}


def _remove_new_hooks(module: nn.Module, before: dict) -> None:
    for m in module.modules():
        f0, b0 = before.get(id(m), (set(), set()))
        for k in list(m._forward_hooks):
            if k not in f0:
                del m._forward_hooks[k]
        for k in list(m._backward_hooks):
            if k not in b0:
                del m._backward_hooks[k]


# ------------------------------------------------------------------ loading (cached)
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def resolve_card(name: str = "default", models_dir: str | Path | None = None) -> Path:
    """The card file of a detector name: "default" is `detector-ensemble.json` where the models folder has one (the
    ensemble of networks, detection.ensemble), else `detector-default.json`; any other name is `<name>.json`."""
    models_dir = Path(models_dir) if models_dir is not None else None
    if name in ("default", "", None):
        ensemble = (models_dir or get_settings().models_dir) / f"{DEFAULT_ENSEMBLE}.json"
        if ensemble.is_file():
            return ensemble
    try:
        return card_path(DEFAULT_NAME if name in ("default", "", None) else name, models_dir)
    except MedfakeError as e:
        if name in ("default", "", None):
            raise MedfakeError(f"no default detector: {e} (the default is the card {DEFAULT_NAME}.json)") from None
        raise


def load_detector(name: str = "default", models_dir: str | Path | None = None, device: str = "cpu",
                  evidence: bool = True, mask_views: int | None = None):
    """Load (once per card file and modification time) a detector by card name (`resolve_card`).
    A card of kind `detector-ensemble` gives a `VetoEnsemble` of the two member cards it names (same folder).
    `evidence=False` leaves the card's evidence cue out (`fit_evidence` recalibrates it, also for a localizer that
    was retrained since). `mask_views` (1, 2 or 8; None = the localizer card's) sets the test-time views of the
    explain masks (`Localizer`): fewer views, faster explained predictions, a little less accurate masks."""
    p = resolve_card(name, models_dir).resolve()
    key = (str(p), p.stat().st_mtime_ns, str(device), evidence, mask_views)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    card = read_card(p)
    if card.get("kind") == ENSEMBLE_KIND:  # members load (and cache) on their own; then the ensemble is cached
        det = build_ensemble(card, lambda member: load_detector(member, p.parent, device, mask_views=mask_views),
                             lambda member: read_card(member, p.parent),
                             evidence_of(card, p.parent, device) if evidence else None)
        with _CACHE_LOCK:
            return _CACHE.setdefault(key, det)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        module, card = load_model(p, device=device)
        if card.get("kind") != "detector":
            raise MedfakeError(f"{p}: not a detector model card (kind={card.get('kind')!r})")
        bank = anomaly = None
        r = (card.get("retrieval") or {}).get("file")
        if r and (p.parent / r).exists():
            bank = ReferenceBank.load(p.parent / r)
        a = (card.get("anomaly") or {}).get("file")
        if a and (p.parent / a).exists():
            anomaly = MahalanobisScorer.load(p.parent / a)
        for prm in module.parameters():
            prm.requires_grad_(False)
        loc = localizer_of(card, p.parent, device, mask_views)
        det = ShippedDetector(module, card, bank, anomaly, device, localizer=loc,
                              evidence=evidence_of(card, p.parent, device) if evidence else None)
        _CACHE[key] = det
        return det


def use_copy_move(det, wanted: bool | None = None):
    """`det` with the copy-move cue as `wanted` (None: when its card has one; see
    `ShippedDetector.with_copy_move_if`). A detector that cannot run the cue stays as it is unless the cue is
    required (True), which is then a clear error."""
    if hasattr(det, "with_copy_move_if"):
        return det.with_copy_move_if(wanted)
    if wanted:
        raise MedfakeError(f"detector {getattr(det, 'name', det)!r} has no copy-move cue")
    return det


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


__all__ = ["ShippedDetector", "load_detector", "resolve_card", "clear_cache", "to_input_size", "use_copy_move",
           "IMAGE_SIZE"]
