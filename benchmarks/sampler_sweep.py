"""Sampler settings of the shipped DDPM, chosen per modality on the validation split, reported on the test split.

    .venv/bin/python benchmarks/sampler_sweep.py [--settings ddim50:w1,ddim50:w1.5,...] [--n 32]
        [--ddpm-card ddpm] [--write-card]

Each setting is `<sampler><steps>[e<eta>]:w<guidance>` (e.g. `ddim50:w1.5`, `ddim50e1:w1`, `ddpm250:w1`). For each
modality and setting: the Fréchet distance (project-trained features, as benchmarks/synthesis_quality.py) of n samples
against the real validation images (what the choice is made on) and against the real test images (what is reported).
The same seed for every setting, so the columns differ by the setting, not by the draw. `--write-card` stores the
choice as the card's `sampling` defaults (used by `medfake synth`, the service and `medfake manipulate` when no
--guidance is given). Needs ../shared/datasets/medimg128.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from _common import ROOT, SHARED, append
from medfake.data import MODALITY_NAMES, filter_records, read_manifest, to_canonical
from medfake.io import read_image
from medfake.synthesis import load_generator
from medfake.synthesis.quality import features, frechet_distance, load_feature_net

SETTING = re.compile(r"^(ddim|ddpm)(\d+)(?:e([\d.]+))?:w([\d.]+)$")


def parse(setting: str) -> dict:
    m = SETTING.match(setting)
    if not m:
        raise SystemExit(f"bad setting {setting!r}: use <ddim|ddpm><steps>[e<eta>]:w<guidance>, e.g. ddim50:w1.5")
    return {"sampler": m[1], "steps": int(m[2]), "eta": float(m[3] or 0.0), "guidance": float(m[4])}


def merge_sampling(old: dict | None, new: dict) -> tuple[dict, list[str]]:
    """Per sampler and modality, keep the old setting unless the new one has a lower validation distance; the
    per-modality choice is then the best of those. The two must come from the same number of samples and seed
    (older cards without `n`/`seed` record the sweep's default n, 32, and seed 1 in `chosen_on`), else the distances
    are not comparable and this is an error. Returns the merged `sampling` and the modalities whose choice stayed."""
    if not old:
        return new, []
    n_old = old.get("n", 32 if "32 samples" in old.get("chosen_on", "") else None)
    if n_old != new["n"] or old.get("seed", 1) != new["seed"]:
        raise SystemExit(f"--merge-card: the card's choice was made with n={n_old}, seed={old.get('seed', 1)}; "
                         f"this sweep has n={new['n']}, seed={new['seed']}: the distances are not comparable")
    by = {fam: dict(per) for fam, per in by_sampler(new).items()}
    for fam, per in by_sampler(old).items():
        for m, choice in per.items():
            if m not in by.get(fam, {}) or choice["fd_val"] <= by[fam][m]["fd_val"]:
                by.setdefault(fam, {})[m] = choice
    kept = [m for m, fd in old["fd_val"].items() if fd <= new["fd_val"].get(m, float("inf"))]
    return {**new, "chosen_on": old.get("chosen_on", "") + "; merged with " + new["chosen_on"],
            **with_choice(by)}, kept


def by_sampler(sampling: dict) -> dict:
    """The best setting per sampler and modality that a card's `sampling` records (`by_sampler`; a card written
    before it had one gives its per-modality choices, each the best of its own sampler)."""
    if "by_sampler" in sampling:
        return sampling["by_sampler"]
    out: dict = {}
    for m, choice in sampling["per_modality"].items():
        out.setdefault(choice["sampler"], {})[m] = {
            **{k: choice[k] for k in ("steps", "eta", "guidance")},
            "fd_val": sampling["fd_val"][m], "fd_test": sampling["fd_test"][m]}
    return out


def with_choice(by: dict) -> dict:
    """`by_sampler` plus what is derived from it: per modality the sampler setting with the lowest validation
    distance (`per_modality`, what a caller who names no sampler gets) and its distances."""
    best = {}
    for fam, per in by.items():
        for m, choice in per.items():
            if m not in best or choice["fd_val"] < best[m][1]["fd_val"]:
                best[m] = (fam, choice)
    order = [m for m in MODALITY_NAMES if m in best] + sorted(set(best) - set(MODALITY_NAMES))
    return {"by_sampler": by,
            "per_modality": {m: {"sampler": best[m][0], **{k: best[m][1][k] for k in ("steps", "eta", "guidance")}}
                             for m in order},
            "fd_val": {m: best[m][1]["fd_val"] for m in order},
            "fd_test": {m: best[m][1]["fd_test"] for m in order}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--ddpm-card", default="ddpm")
    ap.add_argument("--settings", default="ddim50:w1,ddim50:w1.5,ddim50:w2")
    ap.add_argument("--n", type=int, default=32, help="samples per modality and setting")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write-card", action="store_true", help="store the per-modality choice in the card")
    ap.add_argument("--merge-card", action="store_true",
                    help="with --write-card: the card's current choice competes as an incumbent with its stored "
                         "validation distance (same n and seed), so a sweep of new settings only replaces a "
                         "modality's choice where one of them is better on validation")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "sampler_sweep")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/datasets/medimg128")
    settings = args.settings.split(",")
    parsed = {s: parse(s) for s in settings}
    recs = read_manifest(args.data)
    fnet, fcard = load_feature_net("features", args.models_dir)
    gen = load_generator(args.ddpm_card, models_dir=args.models_dir)

    def feats(split, m):
        rs = [r for r in filter_records(recs, split) if r.modality == m]
        return features(fnet, np.stack([to_canonical(read_image(r.path)) for r in rs]))

    res: dict = {"card": args.ddpm_card, "version": gen.version, "n": args.n, "seed": args.seed, "per_modality": {},
                 "seconds": {}}
    with Progress() as prog:
        task = prog.add_task("sampling", total=len(settings) * len(MODALITY_NAMES))
        for m in MODALITY_NAMES:
            f_val, f_test = feats("val", m), feats("test", m)
            row = res["per_modality"][m] = {}
            for s in settings:
                p = parsed[s]
                t0 = time.time()
                imgs = gen.sample(m, None, args.n, sampler=p["sampler"], steps=p["steps"], eta=p["eta"],
                                  guidance=p["guidance"], seed=args.seed)
                res["seconds"][s] = res["seconds"].get(s, 0.0) + time.time() - t0
                f = features(fnet, np.stack([i.array for i in imgs]))
                row[s] = {"val": round(frechet_distance(f, f_val), 2), "test": round(frechet_distance(f, f_test), 2)}
                prog.advance(task)
            row["chosen"] = min(settings, key=lambda s: row[s]["val"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2))

    head = "| modality | " + " | ".join(f"{s} val / test" for s in settings) + " | chosen on val |"
    lines = [head, "|" + "---|" * (len(settings) + 2)]
    for m in MODALITY_NAMES:
        r = res["per_modality"][m]
        cells = [(f"**{r[s]['val']} / {r[s]['test']}**" if s == r["chosen"] else f"{r[s]['val']} / {r[s]['test']}")
                 for s in settings]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {r['chosen']} |")
    per_s = {s: round(len(MODALITY_NAMES) * args.n / res["seconds"][s], 2) for s in settings}
    body = (f"Generator `{args.ddpm_card}` {gen.version}; Fréchet distance on {fcard['architecture']} features of "
            f"{args.n} samples per modality and setting (seed {args.seed}, the same draw for every setting) against "
            "the real validation images (the choice) and the real test images (the report); lower is better.\n\n"
            + "\n".join(lines) + "\n\nSamples/s: " + ", ".join(f"{s} {v}" for s, v in per_s.items()) + ".")
    if args.write_card:
        path = args.models_dir / f"{args.ddpm_card}.json"
        card = json.loads(path.read_text())
        by: dict = {}  # the best of each sampler, for callers who name one (the demo, the service)
        for m in MODALITY_NAMES:
            for st in sorted(settings, key=lambda st: res["per_modality"][m][st]["val"]):
                best = by.setdefault(parsed[st]["sampler"], {})
                if m not in best:
                    best[m] = {**{k: parsed[st][k] for k in ("steps", "eta", "guidance")},
                               "fd_val": res["per_modality"][m][st]["val"],
                               "fd_test": res["per_modality"][m][st]["test"]}
        new = {"chosen_on": f"validation-split Fréchet distance, {args.n} samples per modality and setting "
                            f"(benchmarks/sampler_sweep.py --settings {args.settings})",
               "n": args.n, "seed": args.seed, **with_choice(by)}
        if args.merge_card:
            new, kept = merge_sampling(card.get("sampling"), new)
            body += ("\n\nMerged with the card's previous choice (`--merge-card`): kept for "
                     + (", ".join(kept) if kept else "no modality") + ".")
        card["sampling"] = new
        path.write_text(json.dumps(card, indent=2) + "\n")
        body += f"\n\nWritten to `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` as `sampling`."
    print(body)
    if not args.no_append:
        append("DDPM sampler settings per modality (benchmarks/sampler_sweep.py)", body)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
