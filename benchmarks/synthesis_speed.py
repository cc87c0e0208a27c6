"""Samples per second of the shipped generators on one device, without data: DDIM-50 and ancestral DDPM-1000 of the
DDPM and the DCGAN (issue #2: "samples per second for DDPM-1000, DDIM-50 and DCGAN on 2 CPU cores and on a GPU
where available"). `benchmarks/synthesis_quality.py` reports the same speeds beside its Fréchet distances but needs
../shared; this one runs anywhere (the GPU session of benchmarks/gpu/session.sh runs it).

    python benchmarks/synthesis_speed.py                                   # auto device, CPU-sized counts
    python benchmarks/synthesis_speed.py --device cuda --n-ddim 256 --n-ddpm 64 --n-dcgan 4096 --chunk 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append, device_from_args  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--modality", default="brain_mri")
    ap.add_argument("--n-ddim", type=int, default=8, help="DDIM-50 samples (0 skips)")
    ap.add_argument("--n-ddpm", type=int, default=2, help="ancestral DDPM-1000 samples (0 skips; slow on a CPU)")
    ap.add_argument("--n-dcgan", type=int, default=256, help="DCGAN samples (0 skips)")
    ap.add_argument("--chunk", type=int, default=16, help="samples per model call")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from medfake.synthesis import load_generator

    dev = device_from_args(ap, args.device, args.threads)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rows = []
    for model, sampler, steps, n in (("ddpm", "ddim", 50, args.n_ddim), ("ddpm", "ddpm", 1000, args.n_ddpm),
                                     ("dcgan", None, None, args.n_dcgan)):
        if n <= 0:
            continue
        g = load_generator(model, args.models_dir, device=str(dev))
        kw = {"sampler": sampler, "steps": steps, "eta": 0.0, "guidance": 1.0} if sampler else {}
        g.sample(args.modality, n=min(n, 2), seed=1, chunk=args.chunk, **kw)  # warm-up (kernels, caches)
        sync()
        t0 = time.perf_counter()
        out = g.sample(args.modality, n=n, seed=0, chunk=args.chunk, **kw)
        sync()
        dt = time.perf_counter() - t0
        rows.append({"model": model, "version": g.card.get("version"), "sampler": f"{sampler}-{steps}" if sampler
                     else "gan", "n": len(out), "seconds": dt, "samples_per_s": len(out) / dt})
        print(f"{rows[-1]['model']} {rows[-1]['sampler']}: {rows[-1]['samples_per_s']:.3g} samples/s", flush=True)
    where = f"GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else f"CPU, {args.threads} torch threads"
    lines = ["| model (version) | sampler | samples | s | samples/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} ({r['version']}) | {r['sampler']} | {r['n']} | {r['seconds']:.2f} | "
              f"{r['samples_per_s']:.3g} |" for r in rows]
    body = (f"{where}; modality {args.modality}, {args.chunk} samples per model call, η 0, guidance 1 "
            f"(fp32).\n\n" + "\n".join(lines))
    if args.no_append:
        print(body)
    else:
        append("Synthesis speed (benchmarks/synthesis_speed.py)", body)
    return {"rows": rows, "device": str(dev)}


if __name__ == "__main__":
    main()
