"""The service's view of models: names from the model cards in Settings.models_dir, never a client path.

Stage packages are imported lazily through their public functions (synthesis.load_generator,
detection.load_detector, manipulation.manipulate), so the service starts even when one is missing.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from ..io.errors import MedfakeError
from ..settings import Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MODEL_PATH_REFUSED = "model paths are not accepted; choose a model by name from GET /v1/models"
_KINDS = {"ddpm": "generator", "dcgan": "generator"}


_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def redact(text: str, settings: Settings | None = None) -> str:
    """Error text for a client: the models folder becomes 'models', other absolute paths their file name."""
    if settings is not None:
        text = text.replace(str(settings.models_dir), "models")
    return _ABS_PATH.sub(lambda m: m.group(1), text)


def _registry_kind(arch: str | None) -> str | None:
    if not arch:
        return None
    try:
        from ..models.registry import entry

        return entry(arch).kind
    except MedfakeError:
        return None


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """One row per model card in models_dir: name, version, kind, modalities, metrics (+ the card)."""
    from ..data.modalities import MODALITY_NAMES
    from ..detection.ensemble import ENSEMBLE_KIND, second_names
    from ..models.cards import list_cards

    d = Path(settings.models_dir)
    if not d.is_dir():
        return []
    rows = []
    for card in list_cards(d):
        name = card.get("name") or Path(card["_path"]).stem
        stem = Path(card["_path"]).stem
        kind = card.get("kind") or _registry_kind(card.get("architecture")) or _KINDS.get(card.get("family", ""), "unknown")
        arch = card.get("architecture")
        if kind == ENSEMBLE_KIND:  # a detector made of two member cards (detection.ensemble)
            members = card.get("members") or {}
            seconds = second_names(members)
            kind, arch = "detector", f"ensemble of {members.get('primary')} and {' + '.join(seconds)}"
        mods = card.get("modalities") or sorted(card.get("label_prior", {})) or list(MODALITY_NAMES)
        public = {k: v for k, v in card.items() if not k.startswith("_") and k not in ("command",)}
        rows.append({"name": stem, "card_name": name, "version": str(card.get("version", "0")), "kind": kind,
                     "family": card.get("family"), "architecture": arch, "modalities": mods,
                     "metrics": card.get("metrics", {}), "card": public})
    return rows


_ready_cache: dict[tuple[str, int, int], str | None] = {}


def _loadable(card_file: Path) -> str | None:
    """None when the card's network can be rebuilt and its weights load strictly; else the problem.
    Cached per (card, card mtime, weights mtime), so /readyz loads each model once."""
    import json

    from ..detection.ensemble import ENSEMBLE_KIND
    from ..models.cards import load_model

    try:
        card = json.loads(card_file.read_text())
        if isinstance(card, dict) and card.get("kind") == ENSEMBLE_KIND:
            return _ensemble_loadable(card_file)
        w = card_file.with_name(card.get("weights", card_file.stem + ".safetensors"))
        if not w.is_file():
            return "weights file missing"
        key = (str(card_file), card_file.stat().st_mtime_ns, w.stat().st_mtime_ns)
    except (OSError, ValueError) as e:
        return f"unreadable model card ({type(e).__name__})"
    if key not in _ready_cache:
        try:
            load_model(card_file, device="cpu")
            _ready_cache[key] = None
        except (MedfakeError, TypeError, ValueError, RuntimeError, OSError) as e:
            _ready_cache[key] = redact(str(e).replace(str(card_file.parent), "models"))[:300]
    return _ready_cache[key]


def _ensemble_loadable(card_file: Path) -> str | None:
    """`_loadable` of an ensemble card: it and both members load (members are checked as their own cards too)."""
    from ..detection.detector import load_detector

    try:
        load_detector(card_file.stem, card_file.parent)
        return None
    except (MedfakeError, TypeError, ValueError, RuntimeError, OSError) as e:
        return redact(str(e).replace(str(card_file.parent), "models"))[:300]


def _mask_views_problem(card_file: Path, views: int) -> str | None:
    """A localizer card without a mask threshold for MEDFAKE_MASK_VIEWS: explained detections would answer 503."""
    import json

    from ..detection.localizer import threshold_for_views

    card = json.loads(card_file.read_text())
    if card.get("kind") != "localizer":
        return None
    try:
        threshold_for_views(card, views)
        return None
    except MedfakeError as e:
        return f"MEDFAKE_MASK_VIEWS={views}: {e}"[:300]


def model_check(settings: Settings) -> list[dict]:
    """Readiness: every model card in models_dir rebuilds its architecture and loads its weights strictly."""
    d = Path(settings.models_dir)
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        problem = _loadable(p)
        if problem is None and settings.mask_views is not None:
            problem = _mask_views_problem(p, settings.mask_views)
        out.append({"name": p.stem, "ok": problem is None, "problem": problem})
    return out


def check_name(name: str | None, settings: Settings, kind: str | None = None, what: str = "model") -> str:
    """A model name from a client → the card stem in models_dir. Anything path-like is refused."""
    if name is None or name == "":
        raise HTTPException(422, f"{what}: a model name is required")
    if not NAME.match(name) or name.endswith(".json") or ".." in name:
        raise HTTPException(400, MODEL_PATH_REFUSED)
    models = {m["name"]: m for m in list_models(settings)}
    if name not in models:
        avail = ", ".join(sorted(n for n, m in models.items() if kind is None or m["kind"] == kind)) or "none"
        raise HTTPException(404, f"unknown {what} {name!r}; available: {avail} (see GET /v1/models)")
    if kind is not None and models[name]["kind"] != kind:
        raise HTTPException(422, f"{name!r} is a {models[name]['kind']}, not a {kind}")
    return name


def default_model(settings: Settings, kind: str, preferred: tuple[str, ...]) -> str | None:
    models = [m for m in list_models(settings) if m["kind"] == kind]
    names = [m["name"] for m in models]
    for p in preferred:
        if p in names:
            return p
    return names[0] if names else None


# ------------------------------------------------------------------ loaders (lazy, cached, thread-safe)
_lock = threading.Lock()
infer_lock = threading.Lock()  # one inference at a time per process: CPU-bound, keeps memory flat


def generator(name: str, settings: Settings):
    from ..synthesis import load_generator

    with _lock:
        return load_generator(name, models_dir=settings.models_dir)


def detector(name: str | None, settings: Settings):
    """The detector by card name (None → the detection package's default). detection.load_detector caches
    per card file and modification time, so a replaced model is picked up without a restart."""
    try:
        from ..detection import load_detector
    except ImportError:
        raise HTTPException(503, "detection is not available in this installation") from None
    from ..settings import torch_device

    try:
        device = str(torch_device(settings.device))  # MEDFAKE_DEVICE: auto (a GPU when there is one), cpu, cuda
    except ValueError as e:
        raise HTTPException(503, f"detector {name or 'default'!r} cannot be loaded: {e}") from None
    try:
        return load_detector(name or "default", models_dir=settings.models_dir, device=device,
                             mask_views=settings.mask_views)
    except MedfakeError as e:
        raise HTTPException(503, f"detector {name or 'default'!r} cannot be loaded: {redact(str(e), settings)}") from None


def manipulation():
    try:
        from .. import manipulation as m

        m.manipulate  # noqa: B018 - the public function must exist
    except (ImportError, AttributeError):
        raise HTTPException(503, "manipulation is not available in this installation") from None
    return m


def method_names(m) -> list[str]:
    methods = getattr(m, "METHODS", ())
    return list(methods.keys()) if isinstance(methods, dict) else list(methods)


def is_diffusion(method: str) -> bool:
    return "repaint" in method or "diffusion" in method or "ddpm" in method
