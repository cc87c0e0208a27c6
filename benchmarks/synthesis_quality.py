"""Generator quality (Fréchet distance on project-trained features), memorisation, speed and sample grids.

    .venv/bin/python benchmarks/synthesis_quality.py [--n 64] [--n-ddpm 8 (0 skips it)] [--ddpm-steps 1000]
        [--models-dir models]

Needs ../shared/datasets/medimg128. Trains the feature network (models/features.*) if it is missing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, SHARED, append
from medfake.data import MODALITY_NAMES, filter_records, read_manifest, to_canonical
from medfake.io import read_image
from medfake.synthesis import load_generator
from medfake.synthesis.quality import features, frechet_distance, load_feature_net, memorisation, train_feature_net


def grid(arrays: list[np.ndarray], rows: int, path: Path, labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(arrays) // rows
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.imshow(arrays[i], cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        if i % cols == 0:
            ax.set_title(labels[i // cols], fontsize=6, loc="left")
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--n", type=int, default=64, help="DDIM-50 and DCGAN samples per modality")
    ap.add_argument("--n-ddpm", type=int, default=8, help="DDPM-1000 samples per modality (slow on CPU; 0 skips it)")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--ddpm-steps", type=int, default=1000, help="ancestral steps (fewer: the respaced chain)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "synthesis")
    ap.add_argument("--only", default="ddim,dcgan,ddpm", help="which of ddim, dcgan, ddpm to run")
    ap.add_argument("--ddpm-card", default="ddpm", help="the DDPM card's name (e.g. ddpm-v)")
    ap.add_argument("--grid-suffix", default="", help="docs/img/grid_<key><suffix>.png")
    ap.add_argument("--guidance", default="1", help="classifier-free guidance scales of the DDPM's samples, "
                    "comma-separated (one column each; 1 = plain conditional)")
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    ap.add_argument("--card-settings", action="store_true", help="the DDPM samples with the settings its card chose "
                    "per modality (`sampling`, benchmarks/sampler_sweep.py) instead of --guidance/--eta/--ddim-steps")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/datasets/medimg128")
    recs = read_manifest(args.data)
    train, test = filter_records(recs, "train"), filter_records(recs, "test")
    if not (args.models_dir / "features.json").exists():
        train_feature_net(train, args.models_dir, epochs=3)
    fnet, fcard = load_feature_net("features", args.models_dir)

    def arrs(rs):
        return np.stack([to_canonical(read_image(r.path)) for r in rs])

    results: dict = {"per_modality": {}, "speed": {}}
    only = set(args.only.split(","))
    cards = {n: json.loads((args.models_dir / f"{n}.json").read_text()) for n in (args.ddpm_card, "dcgan")}
    results["versions"] = {n: c.get("version") for n, c in cards.items()}
    t = {}
    samples: dict = {}
    scales = [float(w) for w in args.guidance.split(",")]
    runs = ([(args.ddpm_card, "ddim", args.ddim_steps, args.n, w) for w in scales]
            + [("dcgan", None, None, args.n, 1.0)]
            + [(args.ddpm_card, "ddpm", args.ddpm_steps, args.n_ddpm, w) for w in scales])
    if args.card_settings:
        runs = [(args.ddpm_card, "card", None, args.n, None)] + [r for r in runs if r[1] != "ddim"]
    for model, sampler, steps, n, w in runs:
        if n <= 0 or {"card": "ddim", None: "dcgan"}.get(sampler, sampler) not in only:
            continue
        key = {"ddim": f"DDIM-{args.ddim_steps}", "ddpm": f"DDPM-{args.ddpm_steps}", None: "DCGAN",
               "card": "DDIM card"}[sampler]
        if sampler == "ddim" and args.eta:
            key += f" eta={args.eta:g}"
        if sampler and w is not None and w != 1.0:
            key += f" w={w:g}"
        gen = load_generator(model, models_dir=args.models_dir)
        t0 = time.time()
        if sampler == "card":  # each modality with the card's settings (gen.sampling_settings)
            samples[key] = {m: np.stack([i.array for i in gen.sample(m, None, n, seed=1)]) for m in MODALITY_NAMES}
            results["card_settings"] = {m: gen.sampling_settings(m) for m in MODALITY_NAMES}
        else:
            samples[key] = {m: np.stack([i.array for i in gen.sample(m, None, n, sampler=sampler or "ddim",
                                                                     steps=steps, eta=args.eta if sampler == "ddim"
                                                                     else 0.0, guidance=w, seed=1)])
                            for m in MODALITY_NAMES}
        dt = time.time() - t0
        t[key] = n * len(MODALITY_NAMES) / dt
        results["speed"][key] = round(t[key], 3)
        print(f"{key}: {t[key]:.2f} samples/s")
    rng = np.random.default_rng(0)
    rows = []
    for m in MODALITY_NAMES:
        tr = [r for r in train if r.modality == m]
        te = [r for r in test if r.modality == m]
        f_train = features(fnet, arrs(tr))
        f_test = features(fnet, arrs(te))
        sub = rng.choice(len(tr), size=len(te), replace=False)
        ref = frechet_distance(f_train[sub], f_test)
        res = {"reference_train_vs_test": round(ref, 2)}
        for key, per in samples.items():
            f_gen = features(fnet, per[m])
            res[f"{key}_vs_test"] = round(frechet_distance(f_gen, f_test), 2)
            res[f"{key}_memorisation"] = memorisation(f_gen, f_train, f_test)
        results["per_modality"][m] = res
        rows.append(m)
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    for key, per in samples.items():
        k = min(8, min(len(v) for v in per.values()))
        arrays = [per[m][i] for m in MODALITY_NAMES for i in range(k)]
        # "DDIM-50 w=2" → grid_ddim_w2, "DDIM card" → grid_ddim_card
        name = key.split(" ")[0].split("-")[0].lower() + "".join(f"_{p.replace('=', '')}" for p in key.split(" ")[1:])
        grid(arrays, len(MODALITY_NAMES), ROOT / "docs" / "img" / f"grid_{name}{args.grid_suffix}.png",
             list(MODALITY_NAMES))
    keys = list(samples)
    head = "| modality | train-vs-test (reference) | " + " | ".join(f"{k} vs test" for k in keys) + " | " + \
        " | ".join(f"{k} frac < p1 NN" for k in keys) + " |"
    sep = "|" + "---|" * (2 + 2 * len(keys))
    lines = [head, sep]
    for m in MODALITY_NAMES:
        r = results["per_modality"][m]
        lines.append(f"| {m} | {r['reference_train_vs_test']} | " + " | ".join(str(r[f'{k}_vs_test']) for k in keys) + " | "
                     + " | ".join(f"{r[f'{k}_memorisation']['frac_gen_closer_than_p1']:.3f}" for k in keys) + " |")
    speed = ", ".join(f"{k}: {v} samples/s" for k, v in results["speed"].items())
    body = (f"Fréchet distance on {fcard['architecture']} features (trained on the real train split, "
            f"{fcard.get('epochs')} epochs); generators: "
            + ", ".join(f"{n} {c.get('version')}" for n, c in cards.items())
            + (f"; DDIM card: each modality with its card's settings {results['card_settings']}"
               if args.card_settings else f"; classifier-free guidance: {args.guidance}; DDIM eta {args.eta:g}")
            + f"; samples per modality: {args.n} (DDIM, DCGAN), {args.n_ddpm} (DDPM-{args.ddpm_steps}; "
            "few samples → the distance is biased upwards; 0 = not run). Memorisation: fraction of generated samples whose nearest "
            "training image (cosine distance in the same feature space) is closer than the 1st percentile of real test "
            "images' nearest-training distances (≈0.01 expected for a non-memorising model).\n\n" + "\n".join(lines)
            + f"\n\nSpeed: {speed}.")
    if not args.no_append:
        append("Synthesis quality, memorisation, speed", body)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
