"""Train a detector on a data-set manifest (columns path, modality, label, split, kind, generator, mask):
train on split=train, calibrate on split=val (temperature scaling, thresholds at 1% FPR on real images), fit the
anomaly scorer on real train embeddings, build the retrieval bank, export fp16 safetensors + model card.

CPU-friendly: every image is decoded once into memory, num_workers=0, small batches. GPU: bf16 autocast.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..data.canonical import to_canonical
from ..data.manifest import Record, read_manifest
from ..data.modalities import IMAGE_SIZE, MODALITY_NAMES
from ..io.errors import MedfakeError
from ..io.readers import read_image
from ..models.cards import read_card, write_card
from ..models.registry import create, entry, make_config
from ..models.weights import interpolate_states, load_weights, save_weights
from .anomaly import MahalanobisScorer
from .augment import AugmentConfig, acquisition_transforms, detector_transforms
from .calibrate import (MIN_MODALITY_REALS, SMALL_INPUT_SIDES, UNCERTAIN_FACTOR, alarm_rates, apply_temperature,
                        choose_on_validation, fit_temperature, head_thresholds, modality_floors,
                        monotone_side_floors, thresholds_for, verdict_at)
from .losses import SegLoss, supcon_loss
from .pseudo import classical_manipulation, generated_splice, pseudo_manipulation
from .retrieval import LABELS, ReferenceBank, blend
from .scores import SEG_MIX_GRID, choose_seg_mix, flip_averaged, mix, seg_top

KINDS = LABELS  # real=0, synthetic=1, manipulated=2
TARGET_FPR = 0.01


def heads_of(arch: str) -> dict:
    """Which heads an architecture trains (manip-supcon is the manipulation detector: no synthetic head)."""
    return {
        "synthetic": arch != "manip-supcon",
        "manipulated": arch != "resnet18-12",
        "segmentation": arch in ("dual-srm", "spatial-cnn", "manip-supcon"),
    }


# ------------------------------------------------------------------ data
def load_records(manifest: str | Path) -> list[Record]:
    """Manifest rows with `mask` paths resolved relative to the manifest's folder (as `path` is)."""
    manifest = Path(manifest)
    recs = read_manifest(manifest)
    root = (manifest if manifest.is_dir() else manifest.parent)
    for r in recs:
        m = (r.extra.get("mask") or "").strip()
        if m and not Path(m).is_absolute():
            r.extra["mask"] = str(root / m)
    return recs


def _kind(r: Record) -> int:
    k = (r.get("kind") or "").strip().lower()
    if k == "fake":
        k = "synthetic"
    if k not in KINDS:
        raise MedfakeError(f"{r.path}: manifest 'kind' must be one of {', '.join(KINDS)}, got {k!r}")
    return KINDS.index(k)


def _resolve_mask(r: Record) -> str:
    """Mask path of a record: absolute, or relative to the manifest folder (an ancestor of the image), or cwd."""
    m = (r.get("mask") or "").strip()
    if not m or Path(m).is_absolute():
        return m
    for parent in Path(r.path).parents:
        if (parent / m).exists():
            return str(parent / m)
    return m


def _read_mask(path: str) -> np.ndarray:
    from PIL import Image as PILImage

    a = read_image(path).array
    h, w = a.shape
    s = min(h, w)
    a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    im = PILImage.fromarray((a > 0.5).astype(np.uint8) * 255).resize((IMAGE_SIZE, IMAGE_SIZE), PILImage.Resampling.NEAREST)
    return (np.asarray(im) > 127).astype(np.float32)


@dataclasses.dataclass
class CachedSet:
    images: np.ndarray  # (N, 128, 128) float32 [0, 1]
    masks: np.ndarray  # (N, 128, 128) float32 {0, 1}
    has_mask: np.ndarray  # (N,) bool
    kind: np.ndarray  # (N,) int
    modality: np.ndarray  # (N,) int, -1 unknown
    group: np.ndarray | None = None  # (N,) str: the generator or manipulation method ("real" for reals)

    def __len__(self) -> int:
        return len(self.kind)


def cache_records(records: list[Record], desc: str = "load") -> CachedSet:
    from ._progress import progress_bar

    n = len(records)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    masks = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    has_mask = np.zeros(n, bool)
    kind = np.array([_kind(r) for r in records], np.int64)
    modality = np.array([MODALITY_NAMES.index(r.modality) if r.modality in MODALITY_NAMES else -1 for r in records])
    with progress_bar(n, desc) as advance:
        for i, r in enumerate(records):
            images[i] = to_canonical(read_image(r.path))
            m = _resolve_mask(r)
            if m and kind[i] == 2:
                masks[i] = _read_mask(m)
                has_mask[i] = True
            elif kind[i] == 0:
                has_mask[i] = True  # a real image's mask is known: empty
            advance()
    group = np.array([str(r.get("generator") or KINDS[k]) for r, k in zip(records, kind)])
    return CachedSet(images, masks, has_mask, kind, modality, group)


ONLINE_KINDS = ("pseudo", "classical", "generated")
_MAKERS = {"pseudo": pseudo_manipulation, "classical": classical_manipulation, "generated": generated_splice}


class _TorchSet(torch.utils.data.Dataset):
    """Cached images through the augmentation; with `online_p` > 0 a manipulated example is replaced, with that
    probability, by a fresh manipulation of a random real image (donor: another real image of its modality):
    `online_kind` "pseudo" = self-blends and splices (`pseudo.pseudo_manipulation`), "classical" = the shipped
    copy-move / splice / retouch (`pseudo.classical_manipulation`), "generated" = a region of a synthetic training
    image of the modality blended in (`pseudo.generated_splice`; its donors are the synthetic images)."""

    def __init__(self, data: CachedSet, augment: bool, views: int = 1, seed: int = 0, online_p: float = 0.0,
                 online_kind: str = "pseudo", aug: AugmentConfig | None = None):
        if online_kind not in ONLINE_KINDS:
            raise ValueError(f"online_kind must be one of {ONLINE_KINDS}, not {online_kind!r}")
        self.make = _MAKERS[online_kind]
        self.d = data
        self.t = detector_transforms(augment, aug)
        self.t.set_random_state(seed=seed)  # MONAI random transforms: reproducible augmentation
        self.views = views
        self.online_p = float(online_p)
        self.rng = np.random.default_rng(seed + 104729)
        self.reals = np.flatnonzero(data.kind == 0)
        self.reals_by_modality = {int(m): self.reals[data.modality[self.reals] == m]
                                  for m in np.unique(data.modality[self.reals])}
        fakes = np.flatnonzero(data.kind == 1)
        self.donors = self.reals_by_modality if online_kind != "generated" else \
            {int(m): fakes[data.modality[fakes] == m] for m in np.unique(data.modality[fakes])}
        # a modality without donors: any real image (a splice), or for "generated" none (then a self-blend)
        self.no_donor = self.reals if online_kind != "generated" else fakes[:0]

    def __len__(self) -> int:
        return len(self.d)

    def _source(self, i):
        """(image, mask, has_mask, modality) of example i, or of a pseudo-manipulation standing in for it."""
        if self.online_p > 0 and self.d.kind[i] == 2 and len(self.reals) and self.rng.random() < self.online_p:
            j = int(self.reals[self.rng.integers(len(self.reals))])
            pool = self.donors.get(int(self.d.modality[j]), self.no_donor)
            donor = self.d.images[int(pool[self.rng.integers(len(pool))])] if len(pool) else None
            img, mask = self.make(self.d.images[j], self.rng, donor)
            return img, mask, True, int(self.d.modality[j])
        return self.d.images[i], self.d.masks[i], bool(self.d.has_mask[i]), int(self.d.modality[i])

    def _one(self, img, mask):
        out = self.t({"image": img[None].copy(), "mask": mask[None].copy()})
        return out["image"].float(), out["mask"].float()

    def __getitem__(self, i):
        img0, mask0, has_mask, modality = self._source(i)
        views = [self._one(img0, mask0) for _ in range(self.views)]
        img = torch.stack([v[0] for v in views]) if self.views > 1 else views[0][0]
        mask = views[0][1]
        return {"image": img, "mask": mask, "has_mask": has_mask, "kind": int(self.d.kind[i]), "modality": modality}


def sampling_weights(kind: np.ndarray, group: np.ndarray | None = None, balance: float = 0.0,
                     modality: np.ndarray | None = None, other_reals_share: float | None = None) -> np.ndarray:
    """Per-example sampling weights: the kinds (real, synthetic, manipulated) drawn alike; within a kind a group
    (generator or method) of n examples drawn with a share ∝ n^(1 − balance) of the kind's draws: 0 = as the data
    come (a generator with many rows dominates), 1 = every generator alike (a small group's rows repeat).
    `other_reals_share` (with `modality`): the share of the real draws that go to the reals of no known modality
    (modality −1: real scans of other sources, `benchmarks/train_reals_fetch.py`), the rest to the other reals,
    each part drawn as before within itself; None = as the data come."""
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], got {balance}")
    if other_reals_share is not None and not 0.0 < other_reals_share < 1.0:
        raise ValueError(f"other_reals_share must be in (0, 1), got {other_reals_share}")
    counts = np.bincount(kind, minlength=len(KINDS)).astype(np.float64)
    w = 1.0 / counts[kind]
    if balance > 0 and group is not None:
        for k in np.unique(kind):
            sel = np.flatnonzero(kind == k)
            _, inv, n = np.unique(group[sel], return_inverse=True, return_counts=True)
            share = n.astype(np.float64) ** (1.0 - balance)
            w[sel] = (share / share.sum())[inv] / n[inv]
    if other_reals_share is not None:
        if modality is None:
            raise ValueError("other_reals_share needs the examples' modalities")
        real = kind == 0
        other, known = real & (np.asarray(modality) < 0), real & (np.asarray(modality) >= 0)
        if not other.any() or not known.any():
            raise ValueError("other_reals_share needs reals of no known modality and reals of a known one "
                             f"({int(other.sum())} and {int(known.sum())} here)")
        total = w[real].sum()
        w[other] *= other_reals_share * total / w[other].sum()
        w[known] *= (1.0 - other_reals_share) * total / w[known].sum()
    return w


def _loader(data: CachedSet, batch_size: int, seed: int, views: int = 1, online_p: float = 0.0,
            online_kind: str = "pseudo", aug: AugmentConfig | None = None, balance: float = 0.0,
            other_reals_share: float | None = None):
    # balanced over kinds (and over groups: `balance`; reals of other sources: `other_reals_share`)
    w = sampling_weights(data.kind, data.group, balance, data.modality, other_reals_share)
    g = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), num_samples=max(len(data), batch_size),
                                                     replacement=True, generator=g)
    ds = _TorchSet(data, True, views, seed, online_p, online_kind, aug)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=0, drop_last=True)


def _forever(loader):
    while True:
        yield from loader


# ------------------------------------------------------------------ losses
def detector_loss(arch: str, out: dict, batch: dict, seg_loss: SegLoss, heads: dict) -> torch.Tensor:
    kind = batch["kind"]
    mod = batch["modality"]
    if arch == "resnet18-12":
        target = torch.where(mod >= 0, 2 * mod + (kind > 0).long(), torch.full_like(mod, -100))
        return F.cross_entropy(out["logits12"].float(), target, ignore_index=-100)
    loss = F.cross_entropy(out["modality"].float(), torch.where(mod >= 0, mod, torch.full_like(mod, -100)),
                           ignore_index=-100) * 0.5
    if heads["synthetic"]:
        loss = loss + F.binary_cross_entropy_with_logits(out["syn"].float(), (kind == 1).float())
    if heads["manipulated"]:
        loss = loss + F.binary_cross_entropy_with_logits(out["manip"].float(), (kind == 2).float())
    if heads["segmentation"] and out["seg"] is not None:
        # segmentation is supervised on real (empty mask) and manipulated images with a mask
        weight = (batch["has_mask"] & (kind != 1)).float()
        loss = loss + seg_loss(out["seg"].float(), batch["mask"], weight)
    return loss


def freeze_except(model: torch.nn.Module, prefixes: Sequence[str]) -> int:
    """Freeze every parameter whose name starts with none of `prefixes`; returns the number of trainable values.
    A prefix that names no parameter is an error (a typo would otherwise freeze the whole model)."""
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if not prefixes or unknown:
        roots = sorted({n.split(".")[0] for n in names})
        raise MedfakeError(f"--train-only: no parameter starts with {unknown or '(nothing given)'}; this model's "
                           f"parameters start with {', '.join(roots)}")
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(q) for q in prefixes))
        n += p.numel() if p.requires_grad else 0
    return n


def _frozen_eval(model: torch.nn.Module) -> None:
    """Put every module whose parameters are all frozen (and its children) in eval mode: frozen batch norm keeps
    its running statistics and frozen dropout is off, as at inference."""
    for m in model.modules():
        ps = list(m.parameters())
        if ps and not any(p.requires_grad for p in ps):
            m.eval()


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of `model` in train mode, so that its outputs match the training model's: batch norm uses the
    batch's statistics as the training model's does, and dropout draws the same masks when it runs from the same
    random state (`_anchor_reference`)."""
    teacher = copy.deepcopy(model).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _anchor_reference(teacher: torch.nn.Module, x: torch.Tensor, rng_state: tuple) -> dict:
    """The frozen model's outputs on `x`, drawn from `rng_state` (the random state the training model's forward
    started from: the same dropout masks); the caller's random stream is left where it was."""
    cpu, cuda = rng_state
    with torch.random.fork_rng(devices=[x.device] if cuda is not None else []), torch.no_grad():
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, x.device)
        return teacher(x)


def _rng_state(dev) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)


def anchor_loss(out: dict, ref: dict, real: torch.Tensor, heads: dict) -> torch.Tensor:
    """Mean over the real images (`real`, bool per image) of the squared rise of each trained binary head's logit
    above `ref`'s, summed over the heads (0 when the batch holds no real image). One-sided: a real image may become
    more clearly real, never more fake."""
    loss = out["emb"].new_zeros(())
    if not bool(real.any()):
        return loss
    for head, key, _ in HEAD_OUTPUTS:
        if heads.get(head) and out.get(key) is not None:
            loss = loss + F.relu(out[key].float()[real] - ref[key].float()[real]).pow(2).mean()
    return loss


# ------------------------------------------------------------------ inference helpers
def shifted_copies(images: np.ndarray, copies: int, seed: int = 0) -> np.ndarray:
    """`copies` augmented versions of each (N, H, W) image, through the default training augmentation (seeded; not a
    run's own `AugmentConfig`, so calibration shifts stay comparable across fine-tunes)."""
    if copies <= 0 or len(images) == 0:
        return np.zeros((0,) + images.shape[1:], np.float32)
    t = detector_transforms(True)
    t.set_random_state(seed=seed + 7919)
    zero = np.zeros((1,) + images.shape[1:], np.float32)
    return np.stack([np.asarray(t({"image": im[None].copy(), "mask": zero})["image"])[0]
                     for _ in range(copies) for im in images]).astype(np.float32)


def acquisition_copies(images: np.ndarray, copies: int, seed: int = 0) -> np.ndarray:
    """`copies` versions of each (N, H, W) image as another scanner or reconstruction might have made it, through
    MONAI's acquisition-artifact transforms, each drawn with probability 0.6: a smooth bias field (MR coil
    inhomogeneity), Gibbs ringing (k-space truncation), Rician noise (MR magnitude images at low SNR) and a random
    monotone intensity curve (another window or display LUT); clipped to [0, 1] and quantised to 8 bits, as every
    image is at detection time. They widen the real pool the thresholds are set on (`--acquisition-shifts`); as a
    training augmentation the same transforms are `AugmentConfig.acquisition_p`."""
    if copies <= 0 or len(images) == 0:
        return np.zeros((0,) + images.shape[1:], np.float32)
    t = acquisition_transforms(0.6)
    t.set_random_state(seed=seed + 104729)
    with warnings.catch_warnings():  # torch.searchsorted's note on non-contiguous input, from the intensity curve
        warnings.filterwarnings("ignore", message=".*non-contiguous.*")
        out = [np.asarray(t(im[None].astype(np.float32)), np.float32)[0] for _ in range(copies) for im in images]
    return np.round(np.clip(np.stack(out), 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


HEAD_OUTPUTS = (("synthetic", "syn", 1), ("manipulated", "manip", 2))  # head, model output key, kind index


RETRIEVAL_WEIGHTS = (0.1, 0.2, 0.3, 0.5)  # the kNN weights a head's calibration chooses from (0 is left out so
DEFAULT_RETRIEVAL_WEIGHT = 0.3           # that references added with --reference always have a say)


def _with_mix(outputs: dict | None, spec: dict | None) -> dict | None:
    """run_model outputs with `manip` replaced by the mixed manipulation score of `spec` (`scores.py`)."""
    if outputs is None or not spec or outputs.get("manip") is None or outputs.get("seg_top") is None:
        return outputs
    return {**outputs, "manip": mix(outputs["manip"], outputs["seg_top"], spec), "manip_head": outputs["manip"]}


def _fused_head(outputs: dict, knn: np.ndarray, head: str, temperature: float, retrieval_weight) -> np.ndarray:
    """A head's probability as the detector reports it: (1 − w)·sigmoid(logit / T) + w·kNN score; `retrieval_weight`
    is one w or {head: w}."""
    _, key, kind_idx = next(h for h in HEAD_OUTPUTS if h[0] == head)
    w = retrieval_weight[head] if isinstance(retrieval_weight, dict) else retrieval_weight
    return blend(apply_temperature(outputs[key], temperature), knn[:, kind_idx], w)


def choose_retrieval_weight(p_clf: np.ndarray, knn: np.ndarray, pos: np.ndarray, real: np.ndarray,
                            real_pool_extra: tuple[np.ndarray, np.ndarray] | None, target_fpr: float,
                            grid=RETRIEVAL_WEIGHTS, default: float = DEFAULT_RETRIEVAL_WEIGHT) -> tuple[float, dict]:
    """The kNN weight w of one head, chosen on validation: the w in `grid` whose fused score (1 − w)·p_clf + w·knn
    catches most positives at the `target_fpr` threshold of the real pool (val reals plus `real_pool_extra`, the
    (p_clf, knn) of their shifted copies, as the thresholds are set), then the best AUC; ties go to the w nearest
    `default`. Returns (w, {w: {"tpr": …, "auc": …}})."""
    has_extra = real_pool_extra is not None and len(real_pool_extra[0])
    best, table = choose_on_validation(
        grid, lambda w: (blend(p_clf, knn, w), blend(*real_pool_extra, w) if has_extra else None),
        pos, real, target_fpr, tie=lambda w: -abs(w - default))
    return float(best), table


def small_input_copies(images: np.ndarray, side: int) -> np.ndarray:
    """Each (N, H, W) image shrunk to side×side (Lanczos, as a smaller scan or a thumbnail is) and brought back to
    the detector's size by `to_canonical`, exactly as an input of that size is at inference."""
    from PIL import Image as PILImage

    out = [to_canonical(np.clip(np.asarray(PILImage.fromarray(np.asarray(im, np.float32), mode="F").resize(
        (side, side), PILImage.Resampling.LANCZOS), np.float32), 0.0, 1.0)) for im in images]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)


@torch.no_grad()
def run_model(model, images: np.ndarray, device, batch_size: int = 64, flip: bool = False) -> dict:
    """Eval-mode outputs over an (N, 128, 128) array: syn/manip logits, modality logits, embeddings, seg probs and
    `seg_top` (each map's top-k mean logit, `scores.seg_top`); `flip`: averaged with the mirror image's
    (`scores.flip_averaged`, as a card with `test_time_flip` is run)."""
    model.eval()
    keys = ("syn", "manip", "modality", "emb", "seg", "seg_top")
    acc: dict = {k: [] for k in keys}
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i:i + batch_size][:, None]).to(device)
        out = flip_averaged(model, x, flip)
        if out.get("seg") is not None:
            out = {**out, "seg_top": seg_top(out["seg"])}
        for k in keys:
            if out.get(k) is not None:
                v = out[k].float()
                acc[k].append((torch.sigmoid(v) if k == "seg" else v).cpu().numpy())
    return {k: (np.concatenate(v) if v else None) for k, v in acc.items()}


def _auc(y, s) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else None


def _dice(pred: np.ndarray, target: np.ndarray) -> float:
    inter = (pred & target).sum()
    den = pred.sum() + target.sum()
    return float(2 * inter / den) if den else 1.0


# ------------------------------------------------------------------ main entry
def total_steps(card: dict | None) -> int:
    """Training steps since random initialisation of a model card (detector or localizer): its own plus those of
    the chain it was fine-tuned from (cards before `total_steps` existed record only their direct base)."""
    if not card:
        return 0
    if card.get("total_steps") is not None:
        return int(card["total_steps"])
    base = card.get("init_from") or {}
    return int(card.get("steps") or 0) + int(base.get("total_steps") or base.get("steps") or 0)


def train_detector(
    config_name: str,
    manifest_records: list[Record] | str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    config: dict | None = None,
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    supcon_steps: int | None = None,
    supcon_temperature: float = 0.1,
    ckpt_every: int = 500,
    resume: bool = True,
    max_minutes: float | None = None,
    bank_size: int = 2048,
    retrieval_weight: float | None = None,
    target_fpr: float = TARGET_FPR,
    data_desc: str = "",
    command: str | None = None,
    log_every: int = 20,
    init_from: str | Path | None = None,
    calibration_shifts: int = 2,
    online_manipulations: float = 0.0,
    online_kind: str = "pseudo",
    generator_balance: float = 0.0,
    other_reals_share: float | None = None,
    per_modality_thresholds: bool = True,
    copy_move_cue: bool = True,
    seg_mix: bool = True,
    augment: AugmentConfig | None = None,
    anchor: float = 0.0,
    interpolate: str | Path | None = None,
    interpolate_weight: float = 0.5,
    test_time_flip: bool = False,
    acquisition_shifts: int = 0,
    train_only: Sequence[str] = (),
) -> dict:
    """Train `config_name` (a registered detector architecture) for `steps` optimiser steps (after `supcon_steps`
    of supervised-contrastive warm-up; default: steps // 3 for manip-supcon, else 0). `init_from` (a model card
    of the same architecture and config) starts from its weights: a fine-tune. With
    `online_manipulations` = p a drawn manipulated example is replaced, with probability p, by a fresh
    manipulation of a real training image (`pseudo.py`; `online_kind` "pseudo": self-blends and splices,
    "classical": the shipped copy-move / splice / retouch, "generated": a synthetic image's region blended in).
    `generator_balance` (0–1) evens out the generators and methods within each kind (`sampling_weights`).
    `other_reals_share` (0–1, None = as the data come): the share of the real draws given to the reals of no known
    modality (real scans of other sources, `benchmarks/train_reals_fetch.py`).
    `steps=0` with `init_from` recalibrates the given weights only (bank, anomaly scorer, temperatures,
    thresholds). `copy_move_cue` adds the card's
    `copy_move` section (the cue's calibration and fused thresholds, used with `--copy-move`). `seg_mix` lets the
    calibration mix the segmentation map's evidence into the manipulation score (`scores.py`). `anchor` (a fine-tune
    only) adds anchor × the mean squared rise of the model's synthetic/manipulated logits on the batch's real images
    above those of the `init_from` weights (frozen, same dropout masks; learning without forgetting, one-sided), so
    that learning new fakes does not make real images look more fake. `interpolate` (a card of the same
    architecture and config; needs `init_from` and steps=0) blends the weights, (1 − w)·init_from + w·interpolate
    with w = `interpolate_weight` (WiSE-FT, Wortsman et al. 2022: a fine-tune's gains with less of its drift away
    from what its base did on data it never saw), and calibrates the blend. Returns the model card;
    writes <out>/<name>.safetensors (+ .bank/.anomaly.safetensors) and <out>/<name>.json. `test_time_flip`: the card
    is calibrated, and later run, on the mean of each image's and its mirror image's outputs (`scores.flip_averaged`;
    twice the network's work); `acquisition_shifts`: copies of each real val image with scanner artifacts join the
    real pool the thresholds are set on (`acquisition_copies`). `train_only` (parameter-name prefixes, e.g.
    ("seg_", "head_manip"); a fine-tune only): every other parameter stays frozen and every module without a
    trainable parameter stays in eval mode (its batch-norm statistics unchanged), so the frozen heads' scores on any
    image are exactly those of the `init_from` weights (`freeze_except`)."""
    from ._progress import progress_bar
    from ..settings import torch_device

    if entry(config_name).kind != "detector":
        raise MedfakeError(f"{config_name!r} is not a detector architecture")
    if online_kind not in ONLINE_KINDS:
        raise MedfakeError(f"online_kind must be one of {', '.join(ONLINE_KINDS)}, not {online_kind!r}")
    if not 0.0 <= generator_balance <= 1.0:
        raise MedfakeError(f"generator_balance must be in [0, 1], got {generator_balance}")
    if other_reals_share is not None and not 0.0 < other_reals_share < 1.0:
        raise MedfakeError(f"other_reals_share must be in (0, 1), got {other_reals_share}")
    if isinstance(manifest_records, (str, Path)):
        data_desc = data_desc or str(manifest_records)
        manifest_records = load_records(manifest_records)
    records = list(manifest_records)
    train_recs = [r for r in records if r.split == "train"]
    val_recs = [r for r in records if r.split == "val"]
    if not train_recs:
        raise MedfakeError("no split=train rows in the detector data set")
    kinds_train = Counter(_kind(r) for r in train_recs)
    heads = heads_of(config_name)
    if kinds_train.get(0, 0) == 0:
        raise MedfakeError("the training split has no real images")
    if other_reals_share is not None and not any(_kind(r) == 0 and r.modality not in MODALITY_NAMES
                                                 for r in train_recs):
        raise MedfakeError("other_reals_share: the training split has no real image of another source (a real row "
                           "whose modality is none of the six, e.g. `other` from benchmarks/train_reals_fetch.py)")
    if config_name == "resnet18-12":
        if not (kinds_train.get(1) or kinds_train.get(2)):
            raise MedfakeError("the training split has no fake (synthetic or manipulated) images")
    else:  # a head without positive examples is not trained (and never fires): say so in the card
        for head, k in (("synthetic", 1), ("manipulated", 2)):
            if heads[head] and not kinds_train.get(k):
                heads[head] = False
        if not (heads["synthetic"] or heads["manipulated"]):
            raise MedfakeError(f"{config_name}: the training split has no images for its heads")
        heads["segmentation"] = heads["segmentation"] and heads["manipulated"]
    if supcon_steps is None:
        supcon_steps = steps // 3 if config_name == "manip-supcon" else 0
    name = name or config_name
    dev = torch_device(device)
    amp = dev.type == "cuda"
    torch.manual_seed(seed)
    np.random.seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    cfg = make_config(config_name, config or {})
    model = create(config_name, cfg).to(dev)
    init_card = None
    if init_from is not None:
        init_card = read_card(init_from)
        if init_card.get("architecture") != config_name or make_config(config_name, init_card.get("config", {})) != cfg:
            raise MedfakeError(f"--init-from {init_from}: that model is {init_card.get('architecture')!r} with another "
                               f"config; a fine-tune needs the same architecture and config")
        load_weights(model, Path(init_card["_path"]).with_name(init_card["weights"]))
    other_card = None
    if interpolate is not None:
        if init_card is None or steps != 0 or supcon_steps:
            raise MedfakeError("--interpolate blends the --init-from weights with another fine-tune of them and "
                               "calibrates the blend: it needs --init-from and --steps 0")
        other_card = read_card(interpolate)
        if other_card.get("architecture") != config_name or make_config(config_name,
                                                                         other_card.get("config", {})) != cfg:
            raise MedfakeError(f"--interpolate {interpolate}: that model is {other_card.get('architecture')!r} with "
                               f"another config; a blend needs the same architecture and config")
        other = load_weights(create(config_name, cfg), Path(other_card["_path"]).with_name(other_card["weights"]))
        model.load_state_dict(interpolate_states(model.state_dict(), other.state_dict(), interpolate_weight))
        resume = False  # no steps to resume; a checkpoint in --out may hold a blend of another weight
    if anchor < 0 or (anchor > 0 and init_card is None):
        raise MedfakeError("anchor must be >= 0, and > 0 only for a fine-tune (--init-from): it anchors the real "
                           "images' scores to those of the given weights")
    teacher = _frozen_copy(model) if anchor > 0 else None
    if train_only:
        if init_card is None or interpolate is not None:
            raise MedfakeError("--train-only fine-tunes part of the --init-from weights: it needs --init-from and "
                               "no --interpolate")
        trainable = freeze_except(model, train_only)
    train = cache_records(train_recs, "load train")
    calib_on = "val"
    if val_recs:
        val = cache_records(val_recs, "load val")
    else:
        val, calib_on = train, "train (no val split)"

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    total = supcon_steps + steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.1)
    seg_loss = SegLoss()
    ckpt = out_dir / f"{name}.ckpt.pt"
    losses: list[float] = []
    step, elapsed0 = 0, 0.0
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("config") != dataclasses.asdict(cfg) or state.get("total") != total:
            raise MedfakeError(f"{ckpt}: checkpoint differs from the requested run; use a new --out or --no-resume")
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, elapsed0, losses = int(state["step"]), float(state["elapsed"]), list(state["losses"])

    def save_ckpt(elapsed):
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                    "elapsed": elapsed, "losses": losses[-200_000:], "config": dataclasses.asdict(cfg),
                    "total": total}, tmp)
        tmp.replace(ckpt)

    supcon_it = _forever(_loader(train, batch_size, seed, views=2, online_p=online_manipulations,
                                   online_kind=online_kind, aug=augment, balance=generator_balance,
                                   other_reals_share=other_reals_share)) if supcon_steps else None
    main_it = _forever(_loader(train, batch_size, seed + 1, online_p=online_manipulations, online_kind=online_kind,
                               aug=augment, balance=generator_balance, other_reals_share=other_reals_share))
    t0 = time.time()
    model.train()
    if train_only:
        _frozen_eval(model)
    with progress_bar(total, f"train {name}", initial=step) as advance:
        while step < total:
            supcon_phase = step < supcon_steps
            batch = next(supcon_it if supcon_phase else main_it)
            batch = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                if supcon_phase:
                    x = batch["image"]  # (B, 2, 1, H, W)
                    b = x.shape[0]
                    out = model(x.flatten(0, 1))
                    z = model.proj(out["emb"].float()).view(b, 2, -1)
                    loss = supcon_loss(z.float(), batch["kind"], supcon_temperature)
                else:
                    state = _rng_state(dev) if teacher is not None else None
                    out = model(batch["image"])
                    loss = detector_loss(config_name, out, batch, seg_loss, heads)
                    if teacher is not None:
                        ref = _anchor_reference(teacher, batch["image"], state)
                        loss = loss + anchor * anchor_loss(out, ref, batch["kind"] == 0, heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            elapsed = elapsed0 + time.time() - t0
            recent = losses[-log_every:]
            advance(info=f"{'supcon' if supcon_phase else 'loss'} {sum(recent) / len(recent):.4f}")
            if step % ckpt_every == 0:
                save_ckpt(elapsed)
            if max_minutes is not None and elapsed > max_minutes * 60:
                break
    elapsed = elapsed0 + time.time() - t0
    save_ckpt(elapsed)

    # the shipped weights are fp16: calibrate the model exactly as it will be loaded
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    model.eval()
    card_extra = calibrate_and_fit(model, config_name, train, val, dev, out_dir, name, heads, bank_size=bank_size,
                                   retrieval_weight=retrieval_weight, target_fpr=target_fpr, seed=seed,
                                   calibration_shifts=calibration_shifts,
                                   per_modality_thresholds=per_modality_thresholds, copy_move_cue=copy_move_cue,
                                   seg_mix=seg_mix, flip=test_time_flip, acquisition_shifts=acquisition_shifts)
    card_extra["metrics"]["calibrated_on"] = calib_on
    weights = save_weights(model, out_dir / f"{name}.safetensors", fp16=True)
    main_losses = losses[supcon_steps:] if len(losses) > supcon_steps else losses
    # a blend has seen the steps of both its parents (their common base counted once would be exact; the larger
    # of the two totals is what each parent's own count says)
    base_steps = max(total_steps(init_card), total_steps(other_card))
    n_first = max(1, min(50, len(main_losses) // 10))
    card = {
        "name": name,
        "kind": "detector",
        "architecture": config_name,
        # the version counts every step since random initialisation, so a fine-tune never repeats its base's
        # (a recalibration of given weights, steps=0, is marked "-recal-<hash of its thresholds>": the same weights
        # with new thresholds, told apart from another recalibration of them on the same day)
        "version": time.strftime("%Y%m%d") + f"-s{base_steps + step}"
                   + (f"-wise{interpolate_weight:g}" if other_card else "")
                   + (f"-recal-{_calibration_hash(card_extra)}" if step == 0 and init_card else ""),
        "config": dataclasses.asdict(cfg),
        "weights": weights.name,
        "dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "heads": heads,
        **card_extra,
        "data": data_desc or f"{len(records)} records",
        "train_images": {KINDS[k]: int(v) for k, v in sorted(kinds_train.items())},
        "val_images": {KINDS[k]: int(v) for k, v in sorted(Counter(val.kind.tolist()).items())},
        "generators": sorted({str(r.get("generator") or "") for r in train_recs if _kind(r) > 0} - {""}),
        "steps": step,
        "total_steps": base_steps + step,
        "init_from": ({"name": init_card.get("name"), "version": init_card.get("version"),
                       "steps": init_card.get("steps"), "total_steps": total_steps(init_card),
                       "minutes": init_card.get("minutes")} if init_card else None),
        "supcon_steps": min(supcon_steps, step),
        "online_manipulations": online_manipulations,
        **({"online_kind": online_kind} if online_manipulations > 0 else {}),
        **({"generator_balance": generator_balance} if generator_balance > 0 else {}),
        **({"other_reals_share": other_reals_share} if other_reals_share is not None else {}),
        **(augment.changed() if augment else {}),  # top-level keys, as cards before AugmentConfig had them
        **({"anchor": anchor} if anchor > 0 else {}),
        **({"train_only": {"prefixes": list(train_only), "parameters": trainable}} if train_only else {}),
        **({"interpolated": {"name": other_card.get("name"), "version": other_card.get("version"),
                             "total_steps": total_steps(other_card), "weight": float(interpolate_weight)}}
           if other_card else {}),
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "hardware": _hardware(dev),
        "minutes": round(elapsed / 60, 2),
        "command": command or " ".join(sys.argv),
        "loss_first": round(float(np.mean(main_losses[:n_first])), 5) if main_losses else None,
        "loss_last": round(float(np.mean(main_losses[-n_first:])), 5) if main_losses else None,
        "loss_curve": [round(float(np.mean(c)), 5) for c in np.array_split(np.asarray(main_losses), 10) if len(c)],
        "supcon_loss_curve": [round(float(np.mean(c)), 5) for c in
                              np.array_split(np.asarray(losses[:supcon_steps]), 5) if len(c)],
        "medfake_version": __version__,
    }
    write_card(out_dir / f"{name}.json", card)
    return card


def calibrate_and_fit(model, arch: str, train: CachedSet, val: CachedSet, dev, out_dir: Path, name: str,
                      heads: dict, *, bank_size: int, retrieval_weight: float | None, target_fpr: float, seed: int,
                      calibration_shifts: int = 2, per_modality_thresholds: bool = True,
                      copy_move_cue: bool = True, seg_mix: bool = True, flip: bool = False,
                      acquisition_shifts: int = 0) -> dict:
    """Anomaly scorer (real train), retrieval bank (train sample), temperatures + thresholds + metrics (val).
    `retrieval_weight`: the kNN weight of both heads, or None to choose each head's on validation
    (`choose_retrieval_weight`). `seg_mix`: let validation mix the segmentation map's evidence into the
    manipulation score (`scores.choose_seg_mix`; the head alone stays when it is as good)."""
    rng = np.random.default_rng(seed)
    tr = run_model(model, train.images, dev, flip=flip)
    anomaly = MahalanobisScorer.fit(tr["emb"][train.kind == 0])
    anomaly.save(out_dir / f"{name}.anomaly.safetensors")
    # retrieval bank: a kind-balanced sample of training embeddings
    idx = []
    for k in range(len(KINDS)):
        ik = np.flatnonzero(train.kind == k)
        idx += list(rng.choice(ik, size=min(len(ik), bank_size // len(KINDS)), replace=False)) if len(ik) else []
    idx = np.array(sorted(idx), dtype=np.int64)
    bank = ReferenceBank(center=tr["emb"].mean(0))
    bank_labels = train.kind[idx].copy()
    if arch == "resnet18-12":  # one fake class: manipulated references count as fake (synthetic)
        bank_labels[bank_labels == 2] = 1
    bank.add(tr["emb"][idx], bank_labels)
    bank.save(out_dir / f"{name}.bank.safetensors")

    va = run_model(model, val.images, dev, flip=flip)
    knn = bank.knn(va["emb"])
    real = val.kind == 0
    # shifted copies of the real validation images (the training augmentation: JPEG, down-up resampling, blur,
    # noise, gamma): the thresholds bound false alarms on reals that reach us through another pipeline too
    shifted = shifted_copies(val.images[real], calibration_shifts, seed)
    if acquisition_shifts > 0:  # and copies as other scanners might have made them (`acquisition_copies`)
        shifted = np.concatenate([shifted, acquisition_copies(val.images[real], acquisition_shifts, seed)])
    vs = run_model(model, shifted, dev, flip=flip) if len(shifted) else None
    knn_s = bank.knn(vs["emb"]) if vs is not None else None
    # the manipulation score: the head alone, or mixed with the segmentation map's evidence (chosen on val, before
    # the temperature, the kNN weight and the thresholds, which are all fitted on the score the detector reports)
    mix_spec, mix_table = None, {}
    if seg_mix and heads.get("manipulated") and va["manip"] is not None and va["seg_top"] is not None and real.any():
        mix_spec, mix_table = choose_seg_mix(
            va["manip"], va["seg_top"], val.kind == 2, real,
            (vs["manip"], vs["seg_top"]) if vs is not None else None, target_fpr)
        va, vs = _with_mix(va, mix_spec), _with_mix(vs, mix_spec)
    temps: dict = {"synthetic": None, "manipulated": None}
    metrics: dict = {}
    fused: dict = {}
    shifted_p: dict = {}
    weights: dict = {}  # head → kNN weight
    weight_table: dict = {}  # head → {w: val tpr/auc} when chosen on validation
    for head, key, kind_idx in HEAD_OUTPUTS:
        if not heads[head] or va[key] is None:
            continue
        pos = (val.kind > 0) if arch == "resnet18-12" else (val.kind == kind_idx)
        sel = real | pos
        T = fit_temperature(va[key][sel], pos[sel].astype(float)) if sel.any() else 1.0
        p_clf = apply_temperature(va[key], T)
        if retrieval_weight is None:
            extra = (apply_temperature(vs[key], T), knn_s[:, kind_idx]) if vs is not None else None
            weights[head], weight_table[head] = choose_retrieval_weight(p_clf, knn[:, kind_idx], pos, real, extra,
                                                                        target_fpr)
        else:
            weights[head] = float(retrieval_weight)
        w = weights[head]
        fused[head] = (pos, sel, p_clf, blend(p_clf, knn[:, kind_idx], w))
        if vs is not None:
            shifted_p[head] = _fused_head(vs, knn_s, head, T, w)
        temps[head] = round(T, 5)
    # per-modality floors, by the modality the detector predicts (as at inference)
    mod_v = va["modality"].argmax(1) if va["modality"] is not None else np.full(len(val.kind), -1)
    mod_s = (vs["modality"].argmax(1) if vs is not None and vs["modality"] is not None
             else np.full(len(shifted), -1))
    # small inputs: the real val images shrunk to each side and upsampled back, as inference upsamples them
    small: dict = {}  # side → (images, {head: fused p}, predicted modality)
    if real.any() and fused:
        for side in SMALL_INPUT_SIDES:
            imgs = small_input_copies(val.images[real], side)
            o = _with_mix(run_model(model, imgs, dev, flip=flip), mix_spec)
            kn = bank.knn(o["emb"])
            small[side] = (imgs, {head: _fused_head(o, kn, head, temps[head], weights) for head in fused},
                           o["modality"].argmax(1) if o["modality"] is not None else np.full(len(imgs), -1))
    thr, head_metrics = _thresholds(fused, shifted_p, real, mod_v, mod_s, target_fpr, per_modality_thresholds,
                                    {side: v[1:] for side, v in small.items()})
    metrics.update(head_metrics)
    if real.any() and fused:
        metrics["calibration_real_pool"] = (f"{int(real.sum())} real val images + {len(shifted)} shifted copies "
                                            f"({calibration_shifts} per image, training augmentation"
                                            + (f"; {acquisition_shifts} per image, acquisition artifacts"
                                               if acquisition_shifts > 0 else "") + ")")
    copy_move = None
    if copy_move_cue and "manipulated" in fused and real.any():
        copy_move = _calibrate_copy_move(val, shifted, fused, shifted_p, real, mod_v, mod_s, target_fpr,
                                         per_modality_thresholds, small)
    if va["modality"] is not None:
        known = val.modality >= 0
        metrics["modality_accuracy"] = float((va["modality"][known].argmax(1) == val.modality[known]).mean()) \
            if known.any() else None
    if va["seg"] is not None:
        sel = (val.kind == 2) & val.has_mask
        metrics["segmentation_dice"] = float(np.mean([_dice(va["seg"][i, 0] >= 0.5, val.masks[i] > 0.5)
                                                      for i in np.flatnonzero(sel)])) if sel.any() else None
    a_val = anomaly.score(va["emb"])
    metrics["anomaly_auc_fake_vs_real"] = _auc(val.kind > 0, a_val)
    return {
        "temperature": temps,
        "thresholds": thr,
        "retrieval": {"file": f"{name}.bank.safetensors", "k": bank.k, "size": len(bank),
                      # `weight`: what a reader without per-head weights uses (the synthetic head's)
                      "weight": weights.get("synthetic", next(iter(weights.values()), DEFAULT_RETRIEVAL_WEIGHT)),
                      "weights": weights,
                      **({"weight_selection": {"grid": list(RETRIEVAL_WEIGHTS), "criterion": (
                          f"val TPR at the {target_fpr:.0%}-FPR threshold of the real pool, then AUC; ties to "
                          f"{DEFAULT_RETRIEVAL_WEIGHT}"), "val": weight_table}} if weight_table else {})},
        **({"manipulation_score": {**(mix_spec or {"alpha": 0.0}), "selection": {
            "grid": [float(a) for a in SEG_MIX_GRID], "criterion": (
                f"val TPR at the {target_fpr:.0%}-FPR threshold of the real pool, then AUC; ties to the smaller alpha"),
            "val": mix_table}}} if mix_table else {}),
        "anomaly": {"file": f"{name}.anomaly.safetensors", "dim": int(anomaly.mean.size),
                    "real_train_p99": anomaly.reference_p99},
        "metrics": metrics,
        **({"copy_move": copy_move} if copy_move is not None else {}),
        **({"test_time_flip": True} if flip else {}),
    }


def _thresholds(fused: dict, shifted_p: dict, real: np.ndarray, mod_v: np.ndarray, mod_s: np.ndarray,
                target_fpr: float, per_modality: bool, small_p: dict | None = None) -> tuple[dict, dict]:
    """Thresholds (global, then per-modality floors, then small-input floors) from the fused val probabilities of
    each head (fused[head] = (positive mask, selection, p_classifier, p_fused)), those of the shifted real copies
    and those of the small-input copies (small_p[side] = ({head: p}, predicted modality)); with the per-head metrics
    and the real alarm rates at those thresholds."""
    thr: dict = {"synthetic": None, "manipulated": None, "synthetic_uncertain": None, "manipulated_uncertain": None,
                 "target_fpr": target_fpr, "uncertain_factor": UNCERTAIN_FACTOR}
    metrics: dict = {}
    real_pool = {h: np.concatenate([v[3][real], shifted_p.get(h, np.zeros(0))]) for h, v in fused.items()}
    cuts = head_thresholds(real_pool, target_fpr,
                           p_pos_by_head={h: v[3][v[0]] for h, v in fused.items()}) if real.any() else \
        {h: (0.5, 0.25) for h in fused}
    for head, (pos, sel, p_clf, p) in fused.items():
        t, u = cuts[head]
        thr[head], thr[f"{head}_uncertain"] = t, u
        metrics[head] = {
            "auc": _auc(pos[sel], p[sel]), "auc_classifier": _auc(pos[sel], p_clf[sel]),
            "tpr_at_threshold": float((p[pos] >= t).mean()) if pos.any() else None,
            "fpr_real_at_threshold": float((p[real] >= t).mean()) if real.any() else None,
            "n_real": int(real.sum()), "n_positive": int(pos.sum()),
        }
    if real.any() and fused and per_modality:
        by_mod = {}
        for mi, mname in enumerate(MODALITY_NAMES):
            r_m = real & (mod_v == mi)
            if r_m.sum() < MIN_MODALITY_REALS:
                continue
            pool = {h: np.concatenate([v[3][r_m], shifted_p[h][mod_s == mi] if h in shifted_p else np.zeros(0)])
                    for h, v in fused.items()}
            cuts_m = head_thresholds(pool, target_fpr, p_pos_by_head={h: v[3][v[0] & (mod_v == mi)]
                                                                      for h, v in fused.items()})
            floors = modality_floors(thr, cuts_m)
            if floors:
                by_mod[mname] = floors
        thr["by_modality"] = by_mod
    if real.any() and fused:
        def rates_on(p_by_head: dict, mods: np.ndarray, side: int | None = None) -> dict:
            """verdicts at the chosen thresholds (for inputs of this short side) → alarm shares"""
            n = len(mods)
            ps, pm = (p_by_head.get(h, np.zeros(n)) for h in ("synthetic", "manipulated"))
            return alarm_rates(verdict_at(ps[i], pm[i], thresholds_for(thr, MODALITY_NAMES[mods[i]] if mods[i] >= 0
                                                                         else None, side)) for i in range(n))

        if small_p:
            floors = {}
            for side, (p_side, _) in small_p.items():
                cuts_s = head_thresholds({h: p for h, p in p_side.items() if h in fused}, target_fpr)
                floors[str(side)] = modality_floors(thr, cuts_s)
            thr["by_input_side"] = monotone_side_floors(floors)
            small_rates = {}
            for side, (p_side, mods) in small_p.items():
                before = rates_on(p_side, mods, None)
                after = rates_on(p_side, mods, side)
                small_rates[str(side)] = {"n": int(len(mods)), "not_real_at_128px_thresholds": before["not_real"],
                                          "not_real": after["not_real"], "called_fake": after["called_fake"]}
            metrics["small_input_real_alarms"] = small_rates
        rates = rates_on({h: v[3][real] for h, v in fused.items()}, mod_v[real])
        metrics["real_called_fake"], metrics["real_called_not_real"] = rates["called_fake"], rates["not_real"]
        if shifted_p:
            rates = rates_on(shifted_p, mod_s)
            metrics["shifted_real_called_fake"] = rates["called_fake"]
            metrics["shifted_real_called_not_real"] = rates["not_real"]
    return thr, metrics


COPY_MOVE_CENTER_QUANTILE = 0.995  # the logistic map's centre: this quantile of the real val (+ shifted) cue scores
COPY_MOVE_MIN_CENTER = 0.1  # ... but never below this score (flat or tiny val sets: a score of 0 is no evidence)
COPY_MOVE_SCALE = 0.03


def _calibrate_copy_move(val: "CachedSet", shifted: np.ndarray, fused: dict, shifted_p: dict, real: np.ndarray,
                         mod_v: np.ndarray, mod_s: np.ndarray, target_fpr: float, per_modality: bool,
                         small: dict | None = None) -> dict:
    """The card's `copy_move` section: the cue's logistic map set on real val images (and their shifted copies),
    and the thresholds recalibrated on p_manipulated fused with it (used with `--copy-move`)."""
    from .copymove import CopyMoveConfig, batched_scores, fuse, score_to_probability

    cfg = CopyMoveConfig()
    s_val = batched_scores(val.images, cfg)
    s_shift = batched_scores(shifted, cfg) if len(shifted) else np.zeros(0)
    center = max(COPY_MOVE_MIN_CENTER,
                 float(np.quantile(np.concatenate([s_val[real], s_shift]), COPY_MOVE_CENTER_QUANTILE)))
    pos, sel, p_clf, p = fused["manipulated"]
    fused_cm = dict(fused)
    fused_cm["manipulated"] = (pos, sel, p_clf, fuse(p, score_to_probability(s_val, center, COPY_MOVE_SCALE)))
    shifted_cm = dict(shifted_p)
    if "manipulated" in shifted_p:
        shifted_cm["manipulated"] = fuse(shifted_p["manipulated"], score_to_probability(s_shift, center,
                                                                                        COPY_MOVE_SCALE))
    small_cm = {}
    for side, (imgs, p_side, mods) in (small or {}).items():
        p_side = dict(p_side)
        if "manipulated" in p_side:
            p_side["manipulated"] = fuse(p_side["manipulated"],
                                         score_to_probability(batched_scores(imgs, cfg), center, COPY_MOVE_SCALE))
        small_cm[side] = (p_side, mods)
    thr, metrics = _thresholds(fused_cm, shifted_cm, real, mod_v, mod_s, target_fpr, per_modality, small_cm)
    return {"config": cfg.to_dict(), "center": center, "scale": COPY_MOVE_SCALE,
            "center_quantile": COPY_MOVE_CENTER_QUANTILE, "thresholds": thr, "metrics": metrics,
            "auc_cue_alone_manipulated": _auc(pos[sel], s_val[sel])}


def _calibration_hash(card_extra: dict) -> str:
    """8 hex digits naming a calibration: its temperatures and thresholds (with the copy-move cue's)."""
    import hashlib
    import json

    what = {k: card_extra.get(k) for k in ("temperature", "thresholds")}
    what["copy_move"] = {k: (card_extra.get("copy_move") or {}).get(k) for k in ("center", "scale", "thresholds")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=float).encode()).hexdigest()[:8]


def _hardware(device) -> str:
    import platform

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
