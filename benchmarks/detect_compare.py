"""Detector comparison on a built benchmark: architectures at a matched training-time budget, and the SupCon
ablation of the manipulation detector (the same steps with and without the contrastive warm-up).

    python benchmarks/detect_compare.py --data data_cache/bench/manifest.csv --minutes 6 \
        --runs dual-srm,resnet18-12,effnet-attn --supcon-ablation 900:300

Each run trains with `medfake.detection.train_detector` into OUT/<name>/ (steps set from a measured step time so
that every architecture gets about `--minutes` of training), then `medfake.evaluation.evaluate` scores it on the test
split (no robustness/adversarial sweeps). Appends one table to benchmarks/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import append


def step_seconds(config: str, batch_size: int, n: int = 6) -> float:
    """Seconds per training step of `config` at `batch_size` on this machine (forward + backward, random data)."""
    import torch

    from medfake.models import create

    model = create(config).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.rand(batch_size, 1, 128, 128)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        out = model(x)
        loss = sum(v.float().mean() for k, v in out.items() if v is not None and k != "emb" and v.requires_grad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times) * 1.15  # data loading and augmentation on top


def run_one(name: str, config: str, records, out: Path, data: Path, steps: int, supcon: int, batch_size: int,
            seed: int) -> dict:
    from medfake.detection import train_detector
    from medfake.evaluation.run import evaluate

    t0 = time.time()
    card = train_detector(config, records, out / name, name=name, steps=steps, supcon_steps=supcon,
                          batch_size=batch_size, seed=seed, data_desc=str(data),
                          command=f"benchmarks/detect_compare.py ({config}, {steps} steps, supcon {supcon})")
    minutes = (time.time() - t0) / 60
    res = evaluate(data, out / name / "eval", detector=name, models_dir=out / name, robustness=False,
                   adversarial=False, progress=False)
    tasks = res.get("by_task") or {}
    loc = res.get("localization") or {}

    def f(task, key):
        v = (tasks.get(task) or {}).get(key)
        return round(float(v), 3) if v is not None else None

    reals = [p for p in res["per_image"] if p["kind"] == "real"]
    return {"name": name, "config": config, "params": card["parameters"], "steps": card["steps"],
            "supcon_steps": card["supcon_steps"], "train_minutes": round(minutes, 1),
            "synthetic_f1": f("synthetic", "f1"), "synthetic_auc": f("synthetic", "roc_auc"),
            "manipulated_f1": f("manipulated", "f1"), "manipulated_auc": f("manipulated", "roc_auc"),
            "any_fake_auc": round(float(res["overall"]["roc_auc"]), 3),
            "pixel_f1": round(float(loc["pixel_f1"]), 3) if loc.get("pixel_f1") is not None else None,
            "real_not_real": round(sum(p["verdict"] != "real" for p in reals) / max(1, len(reals)), 4)}


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", default="dual-srm,resnet18-12,effnet-attn", help="architectures, time-matched")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget per architecture")
    ap.add_argument("--supcon-ablation", default="900:300",
                    help="FINETUNE:SUPCON steps for manip-supcon with and without warm-up ('' to skip)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("bench_out/compare"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from medfake.detection.train import load_records

    records = load_records(args.data)
    plans = []
    for config in [c for c in args.runs.split(",") if c]:
        steps = max(20, int(args.minutes * 60 / step_seconds(config, args.batch_size)))
        plans.append((config, config, steps, 0))
    if args.supcon_ablation:
        ft, sc = (int(v) for v in args.supcon_ablation.split(":"))
        plans += [("manip-supcon", "manip-supcon", ft, sc), ("manip-no-supcon", "manip-supcon", ft, 0)]
    rows = []
    for name, config, steps, supcon in plans:
        print(f"== {name}: {config}, {steps} steps, supcon {supcon}", flush=True)
        rows.append(run_one(name, config, records, args.out, args.data, steps, supcon, args.batch_size, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(rows, indent=2))
    keys = ["name", "config", "params", "steps", "supcon_steps", "train_minutes", "synthetic_f1", "synthetic_auc",
            "manipulated_f1", "manipulated_auc", "any_fake_auc", "pixel_f1", "real_not_real"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r[k] is None else (f"{r[k]:,}" if k == "params" else str(r[k]))
                                       for k in keys) + " |")
    body = (f"Test split of `{args.data}`, batch {args.batch_size}; architectures get ~{args.minutes} min of training "
            f"each (steps from a measured step time); the SupCon pair has the same fine-tuning steps, with and without "
            f"the contrastive warm-up. F1 at each card's calibrated threshold (1 % FPR on real validation images); "
            f"`real_not_real` = share of real test images given any verdict but real.\n\n" + "\n".join(lines))
    if args.no_record:
        print(body)
    else:
        append("Detector comparison and SupCon ablation (benchmarks/detect_compare.py)", body)
    return rows


if __name__ == "__main__":
    main()
