"""Detection throughput end to end: read PNG → canonicalise → infer → verdict → write CSV, images/s and peak memory.

Target: ≥ 150 img/s on 2 CPU cores with the default detector (dual-srm).

    python benchmarks/detect_speed.py                          # default detector from models/, medimg128 test PNGs
    python benchmarks/detect_speed.py --untrained dual-srm     # the architecture with random weights (no models yet)
    python benchmarks/detect_speed.py --models-dir DIR --detector NAME --n 2000 --threads 2
    python benchmarks/detect_speed.py --no-copy-move           # without the copy-move cue (on by default, as in detect)
    python benchmarks/detect_speed.py --repeat 5               # the median of 5 timed runs (a noisy machine)

Appends a line to benchmarks/RESULTS.md (command, machine, date, numbers) unless --no-record.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def untrained_detector(arch: str, out: Path) -> str:
    """A card + fp16 weights for `arch` with its default config and random weights (speed only)."""
    import dataclasses

    from medfake.models import create, make_config, save_weights, write_card

    cfg = make_config(arch, {})
    save_weights(create(arch, cfg), out / "bench.safetensors")
    write_card(out / "bench.json", {
        "name": "bench", "kind": "detector", "architecture": arch, "version": "untrained",
        "config": dataclasses.asdict(cfg), "weights": "bench.safetensors",
        "temperature": {"synthetic": 1.0, "manipulated": None if arch == "resnet18-12" else 1.0},
        "thresholds": {"synthetic": 0.5, "manipulated": None if arch == "resnet18-12" else 0.5},
        "heads": {"synthetic": True, "manipulated": arch != "resnet18-12"},
    })
    return "bench"


def input_pngs(n: int, work: Path) -> list[Path]:
    from medfake.settings import get_settings

    manifest = get_settings().shared_data / "manifest.csv"
    if manifest.exists():
        from medfake.data import read_manifest

        files = [r.path for r in read_manifest(manifest) if r.split == "test"][:n]
        if files:
            return files
    from PIL import Image as PILImage
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        a = gaussian_filter(rng.random((128, 128)), 6)
        a = (a - a.min()) / (np.ptp(a) + 1e-8)
        p = work / f"{i:05d}.png"
        PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--untrained", default=None, help="benchmark this architecture with random weights instead")
    ap.add_argument("--n", type=int, default=1000, help="number of images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs over the same files; img/s is their median, each run's rate is listed too "
                         "(a shared or throttled machine varies from run to run)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                    help="the copy-move cue on / off (default: as medfake detect, on when the card has it)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from medfake.detection import detect_paths, load_detector, write_csv
    from medfake.detection.detector import use_copy_move

    tmp = Path(tempfile.mkdtemp(prefix="detect_speed_"))
    models_dir, name = args.models_dir, args.detector
    if args.untrained:
        models_dir, name = tmp, untrained_detector(args.untrained, tmp)
    files = input_pngs(args.n, tmp / "png")
    det = load_detector(name, models_dir)  # model load is not part of the timed run (it is cached in a server)
    det = use_copy_move(det, args.copy_move)
    detect_paths(files[: args.batch_size], detector=det, batch_size=args.batch_size, copy_move=args.copy_move)  # warm
    rates, cpus, times = [], [], []
    for _ in range(max(1, args.repeat)):
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        rows = detect_paths(files, detector=det, batch_size=args.batch_size, copy_move=args.copy_move)
        write_csv(rows, tmp / "out.csv")
        times.append(time.perf_counter() - t0)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
        rates.append(len(rows) / times[-1])
    mid = int(np.argsort(rates)[len(rates) // 2])  # the median run (the upper one of an even count)
    dt, cpu_s = times[mid], cpus[mid]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    members = (det.primary, *det.seconds) if hasattr(det, "primary") else (det,)  # an ensemble: all its networks
    res = {
        "detector": f"{det.name} ({det.card.get('architecture') or det.card.get('kind')}, {det.version}"
                    f"{', with the copy-move cue' if det.copy_move is not None else ''})",
        "parameters": sum(p.numel() for m in members for p in m.module.parameters()),
        "images": len(rows), "seconds": round(dt, 2), "images_per_s": round(len(rows) / dt, 1),
        "runs_images_per_s": [round(r, 1) for r in rates],
        "peak_rss_mb": round(peak_mb, 1),
        # CPU time used: on a shared/busy machine, images / (cpu_seconds / threads) estimates the idle-machine rate
        "cpu_seconds": round(cpu_s, 2), "images_per_cpu_s": round(len(rows) / max(cpu_s, 1e-9), 1),
        "load_average_1m": round(__import__("os").getloadavg()[0], 2), "threads": args.threads, "batch_size": args.batch_size,
    }
    print(json.dumps(res, indent=2))
    if not args.no_record:
        machine = f"{platform.machine()} {platform.processor() or ''} ({args.threads} torch threads)".replace("  ", " ")
        line = (f"\n## detect_speed — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
                f"- command: `python benchmarks/detect_speed.py {shlex.join(argv if argv is not None else sys.argv[1:])}`\n"
                f"- machine: {machine}\n"
                f"- detector: {res['detector']}, {res['parameters']:,} parameters\n"
                f"- {res['images']} PNGs end to end (read, canonicalise, infer, verdict, CSV): "
                f"**{res['images_per_s']} img/s**"
                + (f" (median of {len(rates)} runs: {', '.join(map(str, res['runs_images_per_s']))})"
                   if len(rates) > 1 else "")
                + f", {res['seconds']} s, peak RSS {res['peak_rss_mb']} MB "
                f"(batch {res['batch_size']}); {res['cpu_seconds']} CPU-s = {res['images_per_cpu_s']} img per CPU-s; "
                f"1-min load average during the run {res['load_average_1m']}\n")
        with (ROOT / "benchmarks" / "RESULTS.md").open("a") as fh:
            fh.write(line)
    return res


if __name__ == "__main__":
    main()
