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


def interpolate_states(base: dict[str, torch.Tensor], other: dict[str, torch.Tensor],
                       weight: float) -> dict[str, torch.Tensor]:
    """(1 − weight)·base + weight·other, tensor by tensor: the weight-space ensemble of two fine-tunes of one
    network (WiSE-FT, Wortsman et al. 2022). Floating tensors (parameters and BatchNorm running statistics) are
    blended in float32 and returned in base's dtype; the others (e.g. `num_batches_tracked`) are base's. Both must
    hold the same keys and shapes, else WeightsMismatchError."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {weight}")
    if set(base) != set(other):
        diff = sorted(set(base) ^ set(other))
        raise WeightsMismatchError(f"the two weight sets hold different tensors ({len(diff)}, e.g. {diff[:3]})")
    out = {}
    for k, a in base.items():
        b = other[k]
        if tuple(a.shape) != tuple(b.shape):
            raise WeightsMismatchError(f"{k}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        if a.is_floating_point():
            out[k] = torch.lerp(a.float(), b.to(a.device).float(), float(weight)).to(a.dtype)
        else:
            out[k] = a.clone()
    return out
