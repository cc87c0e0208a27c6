"""Seconds per manipulation on this machine for RePaint and RePaint-DDIM (and the classical baselines).

    .venv/bin/python benchmarks/manipulation_speed.py [--models-dir models] [--repeats 2] [--paper] [--full]

Uses the DDPM card `ddpm` in --models-dir (default models/, the shipped weights). The default settings are the
CPU-sized ones (repaint 50 steps jump 5×2, repaint-ddim 50 steps jump 5×2); --paper adds RePaint's paper
setting (250 steps, jump 10×10 ≈ 2,410 model calls — meant for a GPU); --full the whole 1,000-step schedule with
the same resampling (9,910 model calls; issue #3's "RePaint (1000 steps × resampling)").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, SHARED, append
from medfake.data import filter_records, read_manifest
from medfake.io import Image, read_image
from medfake.manipulation import count_model_calls, make_mask, manipulate


def test_image(data: Path) -> tuple[Image, str]:
    if data.exists():
        r = [r for r in filter_records(read_manifest(data), "test") if r.modality == "brain_mri"][0]
        img = read_image(r.path)
        img.meta.modality = "brain_mri"
        return img, f"medimg128 test image {r.path.name}"
    yy, xx = np.mgrid[:128, :128] / 128.0
    img = Image((0.2 + 0.5 * (((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.1)).astype(np.float32))
    img.meta.modality = "brain_mri"
    return img, "synthetic 128 px disc (medimg128 not present)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--paper", action="store_true", help="also time repaint at 250 steps, jump 10×10")
    ap.add_argument("--full", action="store_true", help="also time repaint at 1000 steps, jump 10×10")
    ap.add_argument("--note", default="", help="free text added to the results section")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if not (args.models_dir / "ddpm.json").exists():
        raise SystemExit(f"no DDPM card {args.models_dir / 'ddpm.json'}; train one or pass --models-dir")
    img, desc = test_image(args.data)
    mask = make_mask(img.shape, ellipse=(64, 60, 18, 14), feather=2)
    configs = [
        ("repaint", dict(steps=50, jump_length=5, jump_n_sample=2)),
        ("repaint-ddim", dict(steps=50, jump_length=5, jump_n_sample=2)),
        ("repaint-ddim", dict(steps=25, jump_length=5, jump_n_sample=1)),
    ]
    if args.paper:
        configs.append(("repaint", dict(steps=250, jump_length=10, jump_n_sample=10)))
    if args.full:
        configs.append(("repaint", dict(steps=1000, jump_length=10, jump_n_sample=10)))
    # load + warm up once (not timed)
    manipulate(img, mask, "repaint-ddim", label="glioma", models_dir=args.models_dir, steps=2, jump_length=1,
               jump_n_sample=1)
    rows = []
    for method, cfg in configs:
        times = []
        for r in range(args.repeats):
            t = time.perf_counter()
            manipulate(img, mask, method, label="glioma", seed=r, models_dir=args.models_dir, **cfg)
            times.append(time.perf_counter() - t)
        calls = count_model_calls(cfg["steps"], cfg["jump_length"], cfg["jump_n_sample"])
        rows.append((method, cfg, calls, float(np.median(times)), float(np.median(times)) / calls))
        print(rows[-1])
    for method, cfg in (("copy-move", {}), ("retouch", {}), ("splice", {"donor": img, "blend": "poisson"})):
        t = time.perf_counter()
        for r in range(10):
            manipulate(img, mask, method, seed=r, **cfg)
        rows.append((method, {k: v for k, v in cfg.items() if k != "donor"}, 0, (time.perf_counter() - t) / 10, 0.0))
    body = [f"Input: {desc}, ellipse mask, feather 2; DDPM from `{args.models_dir}`; torch threads "
            f"{torch.get_num_threads()}; median of {args.repeats} runs (classical: mean of 10). {args.note}", "",
            "| method | settings | model calls | s / manipulation | ms / model call |", "|---|---|---|---|---|"]
    for method, cfg, calls, s, per in rows:
        sets = ", ".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"
        body.append(f"| {method} | {sets} | {calls or '–'} | {s:.3f} | {per * 1000:.1f} |" if calls else
                    f"| {method} | {sets} | – | {s:.4f} | – |")
    text = "\n".join(body)
    if args.no_append:
        print(text)
    else:
        append("Manipulation speed", text)


if __name__ == "__main__":
    main()
