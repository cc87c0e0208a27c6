"""Model cards: JSON next to each weights file. The card holds the architecture name and config, so
`load_model(card)` rebuilds the exact network; it also records data, steps, command, hardware, metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..io.errors import MedfakeError
from ..settings import get_settings
from .registry import create, make_config
from .weights import load_weights


def card_path(name_or_path: str | Path, models_dir: Path | None = None) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return p
    models_dir = models_dir or get_settings().models_dir
    cand = models_dir / f"{name_or_path}.json"
    if cand.exists():
        return cand
    avail = ", ".join(sorted(c.stem for c in models_dir.glob("*.json"))) or "none"
    raise MedfakeError(f"unknown model {name_or_path!r}; available in {models_dir}: {avail}")


def read_card(name_or_path: str | Path, models_dir: Path | None = None) -> dict[str, Any]:
    p = card_path(name_or_path, models_dir)
    try:
        card = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise MedfakeError(f"{p}: model card is not valid JSON ({e})") from None
    card["_path"] = str(p)
    return card


def write_card(path: str | Path, card: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in card.items() if not k.startswith("_")}
    path.write_text(json.dumps(clean, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def list_cards(models_dir: Path | None = None) -> list[dict]:
    models_dir = models_dir or get_settings().models_dir
    out = []
    for p in sorted(models_dir.glob("*.json")):
        try:
            out.append(read_card(p))
        except MedfakeError:
            continue
    return out


def load_model(name_or_path: str | Path, models_dir: Path | None = None, device="cpu"):
    """(module, card): rebuild from the card's architecture + config, load weights strictly, eval mode."""
    card = read_card(name_or_path, models_dir)
    arch = card.get("architecture")
    if not arch:
        raise MedfakeError(f"{card['_path']}: model card names no architecture")
    cfg = make_config(arch, card.get("config", {}))
    module = create(arch, cfg)
    weights = Path(card["_path"]).with_name(card.get("weights", Path(card["_path"]).stem + ".safetensors"))
    load_weights(module, weights)
    module.eval().to(device)
    return module, card
