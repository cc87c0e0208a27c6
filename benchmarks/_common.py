"""Helpers shared by the benchmark scripts: machine description and appending to RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SHARED = ROOT.parent / "shared" / "datasets" / "medimg128" / "manifest.csv"


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def append(title: str, body: str) -> None:
    cmd = "python " + " ".join([Path(sys.argv[0]).relative_to(ROOT).as_posix() if Path(sys.argv[0]).is_absolute() else sys.argv[0]] + sys.argv[1:])
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = f"\n## {title}\n\n- command: `{cmd}`\n- machine: {machine()}\n- date: {stamp}\n\n{body.strip()}\n"
    with RESULTS.open("a") as fh:
        fh.write(text)
    print(text)


def device_from_args(ap, device: str, threads: int):
    """torch threads set, `device` (auto, cpu, cuda, cuda:N) as a torch.device; one that does not exist here is the
    parser's usage error (exit 2), not a traceback."""
    import torch

    from medfake.settings import torch_device

    torch.set_num_threads(threads)
    try:
        return torch_device(device)
    except ValueError as e:
        ap.error(str(e))
