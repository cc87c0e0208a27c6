"""The manipulation localizer: a network trained for the per-pixel map alone (`models.localizers`), its training on
a data-set manifest, and its use by the detectors for the `mask` of `predict(explain=True)`.

Training (`train_localizer`, CLI `medfake train localizer`): the real and manipulated rows of split=train, each
manipulated image with its mask, a real image with an empty one; drawn with `manipulated_share` manipulated,
mirrored and turned a random quarter (image and mask alike), optionally through the detectors' augmentation
(`detector_transforms`) and with fresh classical manipulations of real images made on the fly
(`online_manipulations`, `pseudo.classical_manipulation`). Loss: MONAI's `DiceCELoss` (sigmoid, batch Dice).
A mask averages the map over the card's test-time views (`tta_maps`: 8 mirrors and quarter turns for localizers
trained since stop 53, the plain map for older cards). The mask threshold is chosen on split=val over the same
views (mean per-image pixel-F1 over the manipulated images), and the card
records val pixel-F1 per method and the AUC of the map's top-k evidence (reals against each method).

A detector card that names a localizer (`"localizer": "<card name>"`, same folder) uses its mask instead of the
segmentation head's; the copy-move cue's pair still joins it where the cue fires. Verdicts and scores do not
change: the localizer runs only with `explain=True`."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..io.errors import MedfakeError
from ..models.cards import load_model, read_card, write_card
from ..models.registry import create, entry, make_config, names
from ..models.weights import load_weights, save_weights

THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
TOP_K = 64  # pixels of the map's top evidence in the card's per-method AUC
TTA_VIEWS = (1, 2, 8)  # the image alone; and its mirror; all 8 mirrors and quarter turns (the dihedral group D4)


@torch.no_grad()
def view_maps(module: torch.nn.Module, x: torch.Tensor,
              views: int = 8) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One pass over `views` mirrored and turned copies of `x` (N, 1, H, W): (the plain view's logits (N, 1, H, W),
    {v: the probability map averaged over the first v views} for every v of `TTA_VIEWS` up to `views`). Each view's
    map is turned back before it is summed; the first view is the image, the second its mirror, so the 8-view pass
    holds the 1- and 2-view maps too (a card's threshold per view count is chosen from one pass)."""
    if views not in TTA_VIEWS:
        raise MedfakeError(f"test-time views must be one of {TTA_VIEWS}, not {views}")
    acc = torch.zeros((), device=x.device)
    plain, out, n = None, {}, 0
    for k in range(4 if views == 8 else 1):
        for flip in ((False, True) if views > 1 else (False,)):
            v = torch.rot90(x.flip(-1) if flip else x, k, (-2, -1))
            z = module(v).float()
            plain = z if plain is None else plain
            p = torch.rot90(torch.sigmoid(z), -k, (-2, -1))
            acc = acc + (p.flip(-1) if flip else p)
            n += 1
            if n in TTA_VIEWS:
                out[n] = acc / n
    return plain, out


def tta_maps(module: torch.nn.Module, x: torch.Tensor, views: int = 1) -> torch.Tensor:
    """Probability maps (N, 1, H, W) of `x` (N, 1, H, W), averaged over `views` mirrored and turned copies, each
    map turned back first (test-time augmentation; the localizers train on random mirrors and quarter turns, so
    every view is in distribution). 1 = the plain map."""
    return view_maps(module, x, views)[1][views]


def threshold_for_views(card: dict, views: int) -> float:
    """A localizer card's mask threshold for masks over `views` test-time views: its own (`threshold`) at its
    `tta_views` (cards before test-time augmentation: 1), else `thresholds_by_views` (cards since stop 54). A count
    it has no threshold for is an error that names the command which chooses one."""
    card_views = int(card.get("tta_views", 1))
    if views == card_views:
        return float(card.get("threshold", 0.5))
    if views not in TTA_VIEWS:
        raise MedfakeError(f"test-time views must be one of {TTA_VIEWS}, not {views}")
    by_views = card.get("thresholds_by_views") or {}
    if str(views) not in by_views:
        name = card.get("name", "localizer")
        has = ", ".join(sorted(set(by_views) | {str(card_views)}, key=int))
        raise MedfakeError(f"localizer {name} {card.get('version', '0')}: no mask threshold for {views} test-time "
                           f"views (its card has one for {has}); choose one with: medfake train localizer --steps 0 "
                           f"--init-from {name}.json --tta-views {views}")
    return float(by_views[str(views)])


class Localizer:
    """A loaded localizer: `maps(x)` probabilities and `masks(x)` at the card's threshold, x (N, 1, 128, 128) in
    [0, 1] (canonical images).

    `views` (1, 2 or 8; None = the card's `tta_views`) trades mask accuracy for time: each view is one more pass of
    the network. A view count other than the card's needs its own threshold, which cards since stop 54 record
    (`thresholds_by_views`, chosen on val from the same pass); choose one again for an older card with `medfake
    train localizer --steps 0 --init-from CARD --tta-views N`."""

    def __init__(self, module: torch.nn.Module, card: dict, device: str | torch.device = "cpu",
                 views: int | None = None):
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.card = card
        self.name = card.get("name", "localizer")
        self.version = str(card.get("version", "0"))
        self.tta_views = int(card.get("tta_views", 1)) if views is None else int(views)
        self.threshold = threshold_for_views(card, self.tta_views)
        self.device = torch.device(device)

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> np.ndarray:
        """Probability maps (N, H, W), averaged over `tta_views` (the threshold was chosen on them)."""
        return tta_maps(self.module, x.to(self.device).float(), self.tta_views).cpu().numpy()[:, 0]

    def masks(self, x: torch.Tensor) -> np.ndarray:
        return self.maps(x) >= self.threshold


def load_localizer(name: str, models_dir: str | Path, device: str | torch.device = "cpu",
                   views: int | None = None) -> Localizer:
    module, card = load_model(name, Path(models_dir), device=str(device))
    if card.get("kind") != "localizer":
        raise MedfakeError(f"{card['_path']}: not a localizer model card (kind={card.get('kind')!r})")
    return Localizer(module, card, device, views)


@torch.no_grad()
def _predict_maps(model, images: np.ndarray, device, batch: int = 64, views: int = 1,
                  n_maps: int | None = None) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """({v: probability maps (n_maps, 128, 128) averaged over v views} for every v of `TTA_VIEWS` up to `views`, of
    the first `n_maps` images (default all); top-k mean logit of the plain view (N,)) of canonical images
    (N, 128, 128). The top-k evidence is the plain view's, as the detectors' evidence cue reads it; one pass of
    `view_maps` gives both for an image with maps."""
    n_maps = len(images) if n_maps is None else n_maps
    maps: dict[int, list[np.ndarray]] = {}
    top = []
    for i in range(0, len(images), batch):
        x = torch.as_tensor(images[i:i + batch])[:, None].to(device)
        zs = []
        if i < n_maps:
            z, m = view_maps(model, x[:n_maps - i], views)
            zs.append(z)
            for v, p in m.items():
                maps.setdefault(v, []).append(p[:, 0].cpu().numpy())
        if len(x) > max(n_maps - i, 0):
            zs.append(model(x[max(n_maps - i, 0):]).float())
        z = torch.cat(zs)
        top.append(z.flatten(1).topk(min(TOP_K, z[0].numel()), 1).values.mean(1).cpu().numpy())
    return {v: np.concatenate(ms) for v, ms in maps.items()}, np.concatenate(top)


def _threshold_scores(maps: np.ndarray, gts: np.ndarray) -> tuple[float, dict[float, np.ndarray]]:
    """(the threshold of `THRESHOLD_GRID` with the best mean pixel-F1 (ties: the one nearer 0.5), {threshold:
    per-image pixel-F1}) of probability maps against ground-truth masks."""
    from .train import _dice

    f1 = {t: np.array([_dice(maps[j] >= t, gts[j]) for j in range(len(gts))]) for t in THRESHOLD_GRID}
    return max(THRESHOLD_GRID, key=lambda t: (round(float(f1[t].mean()), 6), -abs(t - 0.5))), f1


def validate(model, val, device, tta_views: int = 1) -> dict:
    """The threshold of best mean pixel-F1 on val's manipulated images (maps averaged over `tta_views`), pixel-F1
    per method at it, and the AUC of the top-k evidence of val reals against each method's images. Pixel-F1 is the
    detectors' segmentation Dice (`train._dice`: both masks empty count 1.0, as `evaluation.metrics.pixel_scores`).
    `by_views`: the same choice for each smaller view count of the pass (threshold, pixel-F1, per method), which
    `Localizer(views=...)` uses."""
    from .train import _auc

    man = np.flatnonzero((val.kind == 2) & val.has_mask)
    real = np.flatnonzero(val.kind == 0)
    if len(man) == 0:
        raise MedfakeError("the validation split has no manipulated images with masks")
    maps, top = _predict_maps(model, val.images[np.r_[man, real]], device, views=tta_views, n_maps=len(man))
    gts = val.masks[man] > 0.5
    groups = val.group[man] if val.group is not None else np.array(["manipulated"] * len(man))
    by_views = {}
    for v, vm in maps.items():
        t, f = _threshold_scores(vm, gts)
        by_views[str(v)] = {"threshold": t, "pixel_f1": round(float(f[t].mean()), 4),
                            "pixel_f1_by_threshold": {str(k): round(float(x.mean()), 4) for k, x in f.items()},
                            "pixel_f1_by_method": {g: round(float(f[t][groups == g].mean()), 4)
                                                   for g in sorted(set(groups))}}
        if v == tta_views:
            best, f1 = t, f
    top_real = top[len(man):]
    by_method = {}
    for g in sorted(set(groups)):
        sel = groups == g
        auc = _auc(np.r_[np.zeros(len(top_real)), np.ones(sel.sum())], np.r_[top_real, top[:len(man)][sel]])
        by_method[g] = {"n": int(sel.sum()), "pixel_f1": round(float(f1[best][sel].mean()), 4),
                        "auc_top_evidence": None if auc is None else round(auc, 4)}
    return {"threshold": best, "pixel_f1": round(float(f1[best].mean()), 4),
            "pixel_f1_by_threshold": {str(t): round(float(v.mean()), 4) for t, v in f1.items()},
            "by_method": by_method, "n_manipulated": int(len(man)), "n_real": int(len(real)),
            "top_k": TOP_K, "tta_views": tta_views, "by_views": by_views}


def _flip_rot(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random mirror and quarter turn for a batch of images and their masks."""
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    k = int(rng.integers(4))
    return torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))


def train_localizer(data: str | Path, out_dir: str | Path, *, name: str = "localizer",
                    architecture: str = "localizer-unet", config: dict | None = None, steps: int = 3000,
                    batch_size: int = 16, lr: float = 2e-3, seed: int = 0, device: str = "auto",
                    manipulated_share: float = 0.75, online_manipulations: float = 0.0,
                    max_minutes: float | None = None, augment=None, init_from: str | Path | None = None,
                    method_balance: float = 0.0, tta_views: int = 8, command: str | None = None,
                    log=print) -> dict:
    """Train a localizer on `data`'s split=train real and manipulated rows; choose its mask threshold on
    split=val; write `<name>.safetensors` (fp16) and `<name>.json` to `out_dir`. Returns the card.

    Every batch gets a random mirror and quarter turn (image and mask alike); `augment` (an `AugmentConfig`)
    adds the detectors' augmentation (JPEG, resampling, blur, noise, contrast), None leaves it out. From scratch at
    CPU budgets it cost most of the map (a run with it and half real draws: val pixel-F1 0.27, without it 0.65;
    benchmarks/RESULTS.md "Stop 49"); as a fine-tune of a clean-trained map it keeps it (the shipped localizer,
    "Stop 52").
    `manipulated_share`: the share of the draws that are manipulated images (the rest real).
    `method_balance` (0–1): within the manipulated draws a method (the manifest's generator column: copy-move,
    splice, retouch, repaint, repaint-ddim, ...) of n rows gets a share ∝ n^(1 − method_balance), as the detectors'
    `generator_balance` (`sampling_weights`): 0 = as the data come, 1 = every method alike (a small one's rows
    repeat).
    `init_from` (a localizer card of the same architecture and config) starts from its weights: a fine-tune, e.g.
    of a clean-trained map with the augmentation, so that it learns recompressed and resampled inputs without
    relearning the map from scratch. With `init_from`, `steps=0` trains nothing (nor loads the training images):
    the base's weights get their thresholds chosen again on val (e.g. for other `tta_views`, or to record
    `thresholds_by_views` on an older card). The new card is the base's with the new thresholds and metrics and a
    `threshold_choice` record; it keeps the base's version and training record, since the weights (and so the
    logits an evidence cue was calibrated on) are the base's bit for bit.
    `tta_views` (1, 2 or 8): the mirrored and turned views a mask averages (`tta_maps`); the threshold is chosen on
    them and the card records them, so that `Localizer.maps` uses the same."""
    from monai.losses import DiceCELoss

    from ..settings import torch_device
    from ._progress import progress_bar
    from .train import (
        _forever, _hardware, _kind, _TorchSet, cache_records, load_records, sampling_weights, total_steps,
    )

    records = load_records(data)
    train_recs = [r for r in records if r.split == "train" and _kind(r) in (0, 2)]
    val_recs = [r for r in records if r.split == "val" and _kind(r) in (0, 2)]
    kinds = Counter(_kind(r) for r in train_recs)
    if not kinds.get(0) or not kinds.get(2):
        raise MedfakeError("a localizer needs real and manipulated (with masks) images in split=train; "
                           f"found {kinds.get(0, 0)} real and {kinds.get(2, 0)} manipulated")
    if not val_recs:
        raise MedfakeError("a localizer needs a split=val with manipulated images (its mask threshold is chosen "
                           "there)")
    if steps < 0 or (steps == 0 and init_from is None):
        raise MedfakeError("steps must be at least 1 (0 only with init_from: the base's threshold chosen again)")
    if tta_views not in TTA_VIEWS:
        raise MedfakeError(f"tta_views must be one of {TTA_VIEWS}, not {tta_views}")
    if not 0.0 < manipulated_share < 1.0:
        raise MedfakeError(f"manipulated_share must be in (0, 1), not {manipulated_share}")
    if not 0.0 <= method_balance <= 1.0:
        raise MedfakeError(f"method_balance must be in [0, 1], not {method_balance}")
    dev = torch_device(device)
    torch.manual_seed(seed)
    if entry(architecture).kind != "localizer":
        raise MedfakeError(f"{architecture} is not a localizer architecture (registered: "
                           f"{', '.join(names('localizer'))})")
    cfg = make_config(architecture, config or {})
    model = create(architecture, cfg)
    init_card = None
    if init_from is not None:
        init_card = read_card(init_from)
        if init_card.get("kind") != "localizer" or init_card.get("architecture") != architecture or \
                make_config(architecture, init_card.get("config", {})) != cfg:
            raise MedfakeError(f"--init-from {init_from}: that model is {init_card.get('kind')!r} "
                               f"{init_card.get('architecture')!r} with its own config; a fine-tune needs a localizer "
                               f"of the same architecture ({architecture}) and config")
        load_weights(model, Path(init_card["_path"]).with_name(init_card["weights"]))
    model = model.to(dev)
    if steps == 0:
        return _choose_thresholds_again(model, init_card, cache_records(val_recs, "load val"), dev, tta_views,
                                        name, Path(out_dir), data, command)
    train = cache_records(train_recs, "load train")
    val = cache_records(val_recs, "load val")
    keep = (train.kind == 0) | train.has_mask  # a manipulated row without a mask cannot teach a map
    if not keep.all():
        log(f"left out {int((~keep).sum())} manipulated training rows without a mask")
        train = dataclasses.replace(train, **{f.name: getattr(train, f.name)[keep]
                                              for f in dataclasses.fields(train) if getattr(train, f.name) is not None})
    man = train.kind == 2
    w = sampling_weights(train.kind, train.group, method_balance)  # each kind sums to 1
    w = np.where(man, manipulated_share * w, (1.0 - manipulated_share) * w)
    sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), num_samples=max(len(w), batch_size),
                                                     replacement=True, generator=torch.Generator().manual_seed(seed))
    ds = _TorchSet(train, augment is not None, 1, seed, online_manipulations, "classical", augment)
    batches = _forever(torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=0,
                                                   drop_last=True))
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    losses: list[float] = []
    t0 = time.time()
    step = 0
    model.train()
    with progress_bar(steps, f"train {name}") as advance:
        while step < steps:
            b = next(batches)
            x, y = _flip_rot(b["image"], b["mask"], rng)
            loss = loss_fn(model(x.to(dev)), y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            recent = losses[-50:]
            advance(info=f"loss {sum(recent) / len(recent):.4f}")
            if max_minutes is not None and time.time() - t0 > max_minutes * 60:
                break
    minutes = (time.time() - t0) / 60
    with torch.no_grad():  # validate exactly the fp16 weights that ship
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    model.eval()
    metrics = validate(model, val, dev, tta_views)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_weights(model, out_dir / f"{name}.safetensors", fp16=True)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    n_first = max(1, min(50, len(losses) // 10))
    card = {
        "name": name,
        "kind": "localizer",
        "architecture": architecture,
        "version": time.strftime("%Y%m%d") + f"-s{step}-{digest}",
        "config": dataclasses.asdict(cfg),
        "weights": weights.name,
        "dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "threshold": metrics["threshold"],
        "tta_views": tta_views,
        "thresholds_by_views": {v: m["threshold"] for v, m in metrics["by_views"].items()},
        "metrics": metrics,
        "data": str(data),
        "train_images": {"real": int((train.kind == 0).sum()), "manipulated": int((train.kind == 2).sum())},
        "val_images": {"real": metrics["n_real"], "manipulated": metrics["n_manipulated"]},
        "methods": sorted(set(train.group[train.kind == 2])) if train.group is not None else [],
        "steps": step,
        "total_steps": step + total_steps(init_card),
        "init_from": ({"name": init_card.get("name"), "version": init_card.get("version"),
                       "steps": init_card.get("steps"), "total_steps": total_steps(init_card),
                       "minutes": init_card.get("minutes")} if init_card else None),
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "manipulated_share": manipulated_share,
        "method_balance": method_balance,
        "method_draw_shares": {m: round(float(w[man & (train.group == m)].sum() / w[man].sum()), 4)
                               for m in sorted(set(train.group[man]))} if train.group is not None else {},
        "online_manipulations": online_manipulations,
        "augment": "flips and quarter turns" + ("" if augment is None else f" + the detectors' ({augment.changed()})"),
        "hardware": _hardware(dev),
        "minutes": round(minutes, 2),
        "command": command,
        "loss_first": round(float(np.mean(losses[:n_first])), 4) if losses else None,
        "loss_last": round(float(np.mean(losses[-n_first:])), 4) if losses else None,
        "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
        "medfake_version": __version__,
    }
    write_card(out_dir / f"{name}.json", card)
    return card


def _choose_thresholds_again(model, base: dict, val, dev, tta_views: int, name: str, out_dir: Path, data,
                             command: str | None) -> dict:
    """`train_localizer(steps=0)`: the base card with thresholds and val metrics chosen again over `tta_views`."""
    model.eval()
    metrics = validate(model, val, dev, tta_views)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_weights(model, out_dir / f"{name}.safetensors", fp16=True)
    base_weights = Path(base["_path"]).with_name(base["weights"])
    if weights.resolve() != base_weights.resolve() and \
            hashlib.sha256(weights.read_bytes()).digest() != hashlib.sha256(base_weights.read_bytes()).digest():
        raise MedfakeError(f"{base_weights} did not round-trip bit for bit; train a step instead of --steps 0")
    card = {k: v for k, v in base.items() if not k.startswith("_")}
    card.update({
        "name": name,
        "weights": weights.name,
        "threshold": metrics["threshold"],
        "tta_views": tta_views,
        "thresholds_by_views": {v: m["threshold"] for v, m in metrics["by_views"].items()},
        "metrics": metrics,
        "val_images": {"real": metrics["n_real"], "manipulated": metrics["n_manipulated"]},
        "threshold_choice": {"date": time.strftime("%Y-%m-%d"), "data": str(data), "tta_views": tta_views,
                             "command": command, "medfake_version": __version__,
                             "note": "the weights and version are the base's (steps=0); the thresholds and val "
                                     "metrics were chosen again"},
    })
    write_card(out_dir / f"{name}.json", card)
    return card


def localizer_of(card: dict, models_dir: str | Path, device, views: int | None = None) -> Localizer | None:
    """The localizer a detector card names (`"localizer"`), loaded from the same folder with masks over `views`
    test-time views (None: its card's); None when it names none. A named localizer that is missing is an error: the
    card was shipped with it."""
    lname = card.get("localizer")
    if not lname:
        return None
    if not (Path(models_dir) / f"{lname}.json").is_file():
        raise MedfakeError(f"{card.get('name')}: its card names the localizer {lname!r}, but {models_dir} has no "
                           f"{lname}.json")
    return load_localizer(lname, models_dir, device, views)


__all__ = ["Localizer", "load_localizer", "threshold_for_views", "train_localizer", "validate", "localizer_of", "view_maps", "tta_maps",
           "THRESHOLD_GRID", "TTA_VIEWS"]
