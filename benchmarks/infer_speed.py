"""Detector inference throughput on one device, without file reading: issue #5's "≥ 5,000 images/s on an H100 for
inference; peak memory reported" (the 2-core end-to-end target, files to CSV, is `detect_speed.py`).

Two stages are timed for each batch size:
- `tensor`: a batch of canonical 128 px images already on the device → the network's logits and, with the cue,
  the copy-move scores (what the accelerator does; synchronised before the clock stops);
- `predict`: in-memory images → verdicts through `ShippedDetector.predict` (canonicalise on the CPU, network and
  cue on the device, calibration, retrieval kNN, anomaly score, verdict rule), as `medfake detect` runs it once a
  file is decoded.
Peak memory: the device's peak allocation on a GPU (torch.cuda.max_memory_allocated), the process's peak RSS on the
CPU. `--amp bf16|fp16` runs the network under autocast on a GPU (`tensor` stage only; the shipped path is fp32).

    python benchmarks/infer_speed.py                                # auto device, batches 64 and 256, cue as detect
    python benchmarks/infer_speed.py --device cuda --batch-sizes 256,1024,4096 --amp bf16
    python benchmarks/infer_speed.py --no-copy-move --seconds 5 --no-append
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, append, device_from_args  # noqa: E402


def input_images(n: int, seed: int = 0):
    """n in-memory Images: the medimg128 test split's first n (repeated if fewer), else smooth random images."""
    from medfake.io.image import Image

    if SHARED.exists():
        from medfake.data import read_manifest
        from medfake.io.readers import read_image

        files = [r.path for r in read_manifest(SHARED) if r.split == "test"][:n]
        if files:
            ims = [read_image(f) for f in files]
            return [ims[i % len(ims)] for i in range(n)], f"medimg128 test PNGs ({len(ims)} distinct)"
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    ims = []
    for _ in range(min(n, 256)):
        a = gaussian_filter(rng.random((128, 128)), 4).astype(np.float32)
        ims.append(Image(array=(a - a.min()) / (np.ptp(a) + 1e-8)))
    return [ims[i % len(ims)] for i in range(n)], "smooth random images (no ../shared)"


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rate(fn, n_images: int, dev, seconds: float, min_reps: int = 3) -> float:
    """Images per second of fn() (n_images each call) over at least `seconds` and `min_reps` calls, after a warm-up."""
    fn()
    _sync(dev)
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    _sync(dev)
    return reps * n_images / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="default")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--batch-sizes", default="64,256", help="comma-separated")
    ap.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="autocast for the tensor stage (GPU)")
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per stage and batch size (at least)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                    help="the copy-move cue on / off (default: as medfake detect, on when the card has it)")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from medfake.detection.copymove import copy_move_scores
    from medfake.detection.detector import load_detector, use_copy_move

    dev = device_from_args(ap, args.device, args.threads)
    det = use_copy_move(load_detector(args.detector, args.models_dir, device=str(dev)), args.copy_move)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if not sizes or min(sizes) < 1:
        ap.error("--batch-sizes: positive integers, e.g. 64,256")
    images, source = input_images(max(sizes))
    amp = args.amp != "off" and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16

    def tensor_stage(x):
        with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp):
            out = det.module(x)
        if det.copy_move is not None:
            copy_move_scores(x, det.copy_move.config)
        return out

    rows = []
    for b in sizes:
        x = det.canonical_batch(images[:b]).to(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t_rate = _rate(lambda: tensor_stage(x), b, dev, args.seconds)
        t_peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        p_rate = _rate(lambda: det.predict(images[:b], batch_size=b), b, dev, args.seconds)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        rows.append({"batch": b, "tensor_img_s": t_rate, "predict_img_s": p_rate, "tensor_peak_mb": t_peak,
                     "peak_mb": peak})
        print(f"batch {b}: tensor {t_rate:,.0f} img/s, predict {p_rate:,.0f} img/s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    where = f"GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else f"CPU, {args.threads} torch threads"
    mem_head = "device peak MB (tensor / predict)" if dev.type == "cuda" else "process peak RSS MB"
    lines = [f"| batch | tensor stage img/s | predict img/s | {mem_head} |", "|---|---|---|---|"]
    for r in rows:
        mem = f"{r['tensor_peak_mb']:,.0f} / {r['peak_mb']:,.0f}" if r["peak_mb"] is not None else f"{rss:,.0f}"
        lines.append(f"| {r['batch']} | {r['tensor_img_s']:,.0f} | {r['predict_img_s']:,.0f} | {mem} |")
    body = (f"Detector `{args.detector}` (version {det.version}) on {where}; autocast "
            f"{args.amp if amp else 'off'} for the tensor stage; inputs: {source}; ≥ {args.seconds:g} s per cell. "
            f"Target: ≥ 5,000 img/s on an H100 (tensor stage).\n\n" + "\n".join(lines))
    if args.no_append:
        print(body)
    else:
        append("Inference speed (benchmarks/infer_speed.py)", body)
    return {"rows": rows, "version": det.version, "device": str(dev)}


if __name__ == "__main__":
    main()
