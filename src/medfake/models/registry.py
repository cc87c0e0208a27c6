"""Name → (config dataclass, builder). Every model is rebuilt from its config saved in its model card."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..io.errors import MedfakeError


@dataclass
class Entry:
    name: str
    kind: str  # "generator" | "detector" | ...
    config_cls: type
    builder: Callable[[Any], Any]


_REGISTRY: dict[str, Entry] = {}


def register(name: str, kind: str, config_cls: type):
    def deco(builder):
        _REGISTRY[name] = Entry(name, kind, config_cls, builder)
        return builder

    return deco


def entry(name: str) -> Entry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise MedfakeError(f"unknown model architecture {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names(kind: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def make_config(name: str, values: dict | None = None):
    e = entry(name)
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(e.config_cls)}
    unknown = set(values) - fields
    if unknown:
        raise MedfakeError(f"{name}: unknown config field(s) {sorted(unknown)}")
    for f in dataclasses.fields(e.config_cls):  # JSON gives lists; configs use tuples
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return e.config_cls(**values)


def create(name: str, config=None, **overrides):
    e = entry(name)
    if config is None:
        config = make_config(name, overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return e.builder(config)


def _ensure_loaded():
    # Importing the architecture modules registers them.
    from . import detectors, features, generators, localizers  # noqa: F401
