"""One settings object for limits, paths and keys; the only place that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parents[1]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"MEDFAKE_{name}", default)


@dataclass(frozen=True)
class Settings:
    models_dir: Path = field(default_factory=lambda: Path(_env("MODELS_DIR", str(PROJECT_ROOT / "models"))))
    shared_data: Path = field(
        default_factory=lambda: Path(_env("DATA", str(PROJECT_ROOT.parent / "shared" / "datasets" / "medimg128")))
    )
    # decoding limits (decompression bombs)
    max_pixels: int = field(default_factory=lambda: int(_env("MAX_PIXELS", str(64_000_000))))
    max_frames: int = field(default_factory=lambda: int(_env("MAX_FRAMES", "1024")))
    # service limits
    max_upload_bytes: int = field(default_factory=lambda: int(_env("MAX_UPLOAD_BYTES", str(32 * 1024 * 1024))))
    max_files_per_request: int = field(default_factory=lambda: int(_env("MAX_FILES", "64")))
    max_synthesis_images: int = field(default_factory=lambda: int(_env("MAX_SYNTH_IMAGES", "64")))
    # network passes a synthesis request may cost: images × steps × 2 with classifier-free guidance ≠ 1
    # (64,000: 64 ancestral 1000-step images at guidance 1, ~8 min on 2 CPU cores, inside the 900 s job timeout)
    max_synthesis_passes: int = field(default_factory=lambda: int(_env("MAX_SYNTH_PASSES", "64000")))
    job_workers: int = field(default_factory=lambda: int(_env("JOB_WORKERS", "1")))
    job_queue: int = field(default_factory=lambda: int(_env("JOB_QUEUE", "16")))
    job_timeout_s: float = field(default_factory=lambda: float(_env("JOB_TIMEOUT_S", "900")))
    request_timeout_s: float = field(default_factory=lambda: float(_env("REQUEST_TIMEOUT_S", "60")))
    result_ttl_s: float = field(default_factory=lambda: float(_env("RESULT_TTL_S", "3600")))
    api_keys: tuple[str, ...] = field(
        default_factory=lambda: tuple(k for k in _env("API_KEYS", "").split(",") if k.strip())
    )
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(o for o in _env("CORS_ORIGINS", "").split(",") if o.strip())
    )
    device: str = field(default_factory=lambda: _env("DEVICE", "auto"))
    # test-time views of the explain masks (1, 2 or 8; unset: the localizer card's): fewer views, faster explained
    # predictions and slightly less accurate masks (benchmarks/RESULTS.md "Stop 54")
    mask_views: int | None = field(default_factory=lambda: _views(_env("MASK_VIEWS", "")))


def _views(value: str) -> int | None:
    if not value.strip():
        return None
    if value.strip() not in ("1", "2", "8"):
        raise ValueError(f"MEDFAKE_MASK_VIEWS must be 1, 2 or 8 (or unset: the localizer card's), not {value!r}")
    return int(value)


def get_settings() -> Settings:
    return Settings()


def torch_device(name: str | None = "auto"):
    """A device name → torch.device: "auto" (or None) is a CUDA GPU when torch sees one, else the CPU; "cpu", "cuda"
    and "cuda:N" as named. A device that does not exist here is a ValueError that says why (not torch's error at the
    first tensor moved there)."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                             f"use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; choose auto, cpu, cuda or cuda:N")
    return dev
