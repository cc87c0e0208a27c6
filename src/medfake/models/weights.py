"""Safetensors save/load, strict: a checkpoint that does not match the architecture is an error."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io.errors import MedfakeError


class WeightsMismatchError(MedfakeError):
    pass


def save_weights(module: torch.nn.Module | dict, path: str | Path, fp16: bool = True, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = module.state_dict() if isinstance(module, torch.nn.Module) else module
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if fp16 and v.is_floating_point():
            v = v.half()
        out[k] = v.contiguous()
    save_file(out, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise MedfakeError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise MedfakeError(f"{path}: not a readable safetensors file ({e})") from None


def load_weights(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    sd = load_state(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if bad:
            parts.append(f"{len(bad)} with wrong shape (e.g. {bad[0]}: {tuple(sd[bad[0]].shape)} vs {tuple(own[bad[0]].shape)})")
        raise WeightsMismatchError(f"{path}: checkpoint does not match the architecture: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return module
