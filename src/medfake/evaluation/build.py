"""Forensic data-set builder: reals re-written through the canonical writer, synthetic images from the
shipped generators, manipulated images from the manipulation stage, one manifest, no split leakage, and a
shortcut audit that fails the build when file-level features give the answer away.

Layout of a built data set DIR:

    DIR/images/<kind>/<generator-or-method>/<modality>/<id>.png   (kind: real | synthetic | manipulated)
    DIR/masks/manipulated/<method>/<modality>/<id>.png            (0/255, 128 px)
    DIR/manifest.csv   DIR/audit.json   DIR/build.json   DIR/items.jsonl (resume log)
    DIR/merged.csv DIR/merges.json DIR/replaced/   (only after `medfake dataset merge`, evaluation.merge)
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.canonical import write_canonical
from ..data.manifest import Record, read_manifest, write_manifest
from ..data.modalities import HEALTHY, IMAGE_SIZE, MODALITIES, check_modality
from ..io.errors import MedfakeError
from ..manipulation.api import default_feather
from ..manipulation.masks import feather_mask, mask_from_geometry, random_mask_geometry  # noqa: F401 (re-exported)

SYNTHETIC = ("ddpm", "ddim", "dcgan")
# reconstruction generators: each item re-synthesises one real image (its `source`, same split) through the model
RECONSTRUCTION = ("vae",)
MANIPULATIONS = ("repaint", "repaint-ddim", "copy-move", "splice", "retouch")
DIFFUSION_METHODS = ("repaint", "repaint-ddim")
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
MERGED_FILE = "merged.csv"  # rows added by `medfake dataset merge` (evaluation.merge), kept by every later build
# builder generator name → (model card name, sampler)
GENERATOR_MODELS = {"ddpm": ("ddpm", "ddpm"), "ddim": ("ddpm", "ddim"), "dcgan": ("dcgan", None), "vae": ("vae", None)}
MANIFEST_COLUMNS = ["path", "modality", "label", "split", "kind", "generator", "source", "mask", "seed",
                    "model_version", "donor", "source_label", "sha256_pixels"]


class BuildError(MedfakeError):
    pass


# ---------------------------------------------------------------- planning (pure, deterministic)

def _rng(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


def _item_seed(seed: int, key: str) -> int:
    return int(np.random.SeedSequence([int(seed), zlib.crc32(key.encode())]).generate_state(1)[0] % (2**31))


def _file_id(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def assign_splits(n: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """n splits in the given proportions (largest remainder), shuffled by rng."""
    names = [s for s in SPLITS if fractions.get(s, 0) > 0] or list(SPLITS[:1])
    total = sum(fractions[s] for s in names)
    raw = np.array([fractions[s] / total * n for s in names])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    out = [s for s, c in zip(names, counts) for _ in range(c)]
    return [out[i] for i in rng.permutation(n)]


def _load_reals(real: str | Path, modalities: Sequence[str] | None, seed: int) -> list[Record]:
    path = Path(real)
    if not path.exists():
        raise BuildError(f"real data {path} does not exist (give a manifest CSV or a folder <modality>/<label>/*)")
    recs = read_manifest(path)
    if not recs:
        raise BuildError(f"no real images found in {path}")
    unknown = sorted({r.modality for r in recs} - set(MODALITIES))
    if unknown:
        raise BuildError(f"{path}: unknown modality/modalities {unknown}; expected some of {list(MODALITIES)}")
    if modalities:
        for m in modalities:
            check_modality(m)
        recs = [r for r in recs if r.modality in modalities]
    bad = sorted({r.split for r in recs if r.split and r.split not in SPLITS})
    if bad:
        raise BuildError(f"{path}: unknown split(s) {bad}; expected {SPLITS}")
    # a folder (or a manifest without splits): assign 70/15/15 per modality, deterministically
    by_mod: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_mod[r.modality].append(r)
    for m, rs in by_mod.items():
        unsplit = sorted((r for r in rs if not r.split), key=lambda r: str(r.path))
        for r, s in zip(unsplit, assign_splits(len(unsplit), DEFAULT_SPLIT_FRACTIONS, _rng(seed, "split", m))):
            r.split = s
    return recs


def _source_name(r: Record, root: Path) -> str:
    try:
        return str(Path(r.path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(r.path).resolve())


def plan_build(records: list[Record], real_root: Path, *, synthetic: Sequence[str], manipulated: Sequence[str],
               per_modality: int, real_per_modality: int | None, seed: int,
               counts: dict[str, int] | None = None) -> list[dict]:
    """Every item of the data set, deterministic in the seed. Items are plain dicts (picklable).
    `counts` overrides `per_modality` for single generators/methods (e.g. fewer slow RePaint edits on a CPU)."""
    counts = dict(counts or {})
    items: list[dict] = []
    by_mod: dict[str, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: str(r.path)):
        by_mod[r.modality].append(r)
    mods = [m for m in MODALITIES if m in by_mod]
    chosen: dict[str, list[dict]] = {}
    for m in mods:
        rs = by_mod[m]
        order = _rng(seed, "real", m).permutation(len(rs))
        if real_per_modality is not None:
            order = order[:real_per_modality]
        chosen[m] = []
        for i in sorted(order):
            r = rs[i]
            src = _source_name(r, real_root)
            key = f"real:{src}"
            it = {"key": key, "kind": "real", "generator": "real", "modality": m, "label": r.label,
                  "split": r.split, "source": src, "source_abs": str(r.path), "seed": "", "mask": "",
                  "path": f"images/real/real/{m}/{_file_id(key)}.png"}
            chosen[m].append(it)
            items.append(it)

    for g in synthetic:
        if g not in GENERATOR_MODELS:
            raise BuildError(f"unknown generator {g!r}; choose from {', '.join(GENERATOR_MODELS)}")
        n_g = counts.get(g, per_modality)
        if g in RECONSTRUCTION:
            for m in mods:
                pool = chosen[m]
                if not pool:
                    continue
                rng = _rng(seed, "reconstruction", g, m)
                for i, j in enumerate(rng.choice(len(pool), size=min(n_g, len(pool)), replace=False)):
                    src = pool[int(j)]
                    key = f"synthetic:{g}:{m}:{i:06d}"
                    items.append({"key": key, "kind": "synthetic", "generator": g, "modality": m, "label": src["label"],
                                  "split": src["split"], "source": src["source"], "source_abs": src["source_abs"],
                                  "mask": "", "seed": "", "path": f"images/synthetic/{g}/{m}/{_file_id(key)}.png"})
            continue
        for m in mods:
            fr = Counter(r.split for r in by_mod[m])
            rng = _rng(seed, "synthetic", g, m)
            splits = assign_splits(n_g, {s: fr.get(s, 0) for s in SPLITS}, rng)
            labels = list(MODALITIES[m])
            # balanced labels, shuffled
            labs = [labels[i % len(labels)] for i in range(n_g)]
            labs = [labs[i] for i in rng.permutation(n_g)]
            for i in range(n_g):
                key = f"synthetic:{g}:{m}:{i:06d}"
                items.append({"key": key, "kind": "synthetic", "generator": g, "modality": m, "label": labs[i],
                              "split": splits[i], "source": "", "mask": "", "seed": _item_seed(seed, key),
                              "path": f"images/synthetic/{g}/{m}/{_file_id(key)}.png"})

    for meth in manipulated:
        if meth not in MANIPULATIONS:
            raise BuildError(f"unknown manipulation {meth!r}; choose from {', '.join(MANIPULATIONS)}")
        for m in mods:
            pool = chosen[m]
            if not pool:
                continue
            rng = _rng(seed, "manipulated", meth, m)
            for i in range(counts.get(meth, per_modality)):
                src = pool[int(rng.integers(len(pool)))]
                key = f"manipulated:{meth}:{m}:{i:06d}"
                fid = _file_id(key)
                it = {"key": key, "kind": "manipulated", "generator": meth, "modality": m, "label": src["label"],
                      "source_label": src["label"], "split": src["split"], "source": src["source"],
                      "source_abs": src["source_abs"], "seed": _item_seed(seed, key),
                      "geometry": random_mask_geometry(rng),
                      "path": f"images/manipulated/{meth}/{m}/{fid}.png",
                      "mask": f"masks/manipulated/{meth}/{m}/{fid}.png"}
                if meth in DIFFUSION_METHODS:
                    lesions = [lab for lab in MODALITIES[m] if lab != HEALTHY[m]]
                    if rng.random() < 0.5 or not lesions:
                        it["label"] = HEALTHY[m]  # remove: paint healthy tissue
                    else:
                        it["label"] = lesions[int(rng.integers(len(lesions)))]  # inject a lesion
                if meth == "splice":
                    donors = [d for d in pool if d["split"] == src["split"] and d["source"] != src["source"]]
                    if not donors:
                        donors = [d for d in pool if d["split"] == src["split"]]
                    d = donors[int(rng.integers(len(donors)))]
                    it["donor"], it["donor_abs"] = d["source"], d["source_abs"]
                items.append(it)
    return items


# ---------------------------------------------------------------- doing one item

def read_rows(path: str | Path) -> list[dict]:
    """A manifest CSV's rows as dicts of strings (paths as written, not resolved)."""
    import csv

    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def merged_rows(root: str | Path) -> list[dict]:
    """The rows `medfake dataset merge` added to the build in `root` ([] when there were none)."""
    p = Path(root) / MERGED_FILE
    return read_rows(p) if p.exists() else []


def _sha_pixels(path: Path) -> str:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return hashlib.sha256(np.asarray(im).tobytes()).hexdigest()


def _row(item: dict, root: Path, **extra) -> dict:
    row = {k: item.get(k, "") for k in MANIFEST_COLUMNS if k != "sha256_pixels"}
    row.update(extra)
    row["key"] = item["key"]
    row["sha256_pixels"] = _sha_pixels(root / item["path"])
    return row


def _canonical_image(path: str, modality: str, label: str):
    from ..data.canonical import to_canonical
    from ..io.image import Image, Meta
    from ..io.readers import read_image

    return Image(to_canonical(read_image(path)), Meta(source=path, modality=modality, label=label, format="png"))


def _do_real(item: dict, root: Path) -> dict:
    from ..io.readers import read_image

    write_canonical(read_image(item["source_abs"]), root / item["path"])
    return _row(item, root, model_version="")


def _do_manipulated(item: dict, root: Path, models_dir: str | None, params: dict) -> dict:
    from PIL import Image as PILImage

    from ..io.writers import write_png
    from ..manipulation import manipulate

    img = _canonical_image(item["source_abs"], item["modality"], item["source_label"])
    mask = mask_from_geometry(item["geometry"], img.shape[0])
    if item.get("feather"):
        mask = feather_mask(mask, item["feather"])
    kw = dict(params.get(item["generator"], {}))  # the method's own settings, e.g. RePaint's steps
    if item["generator"] == "splice":
        kw["donor"] = _canonical_image(item["donor_abs"], item["modality"], "")
    if item["generator"] in DIFFUSION_METHODS:
        kw["label"] = item["label"]
    res = manipulate(img, mask, item["generator"], seed=int(item["seed"]), models_dir=models_dir, **kw)
    out_mask = np.asarray(res.mask, dtype=bool)
    if out_mask.shape != (IMAGE_SIZE, IMAGE_SIZE):
        out_mask = np.asarray(PILImage.fromarray(out_mask.astype(np.uint8) * 255).resize(
            (IMAGE_SIZE, IMAGE_SIZE), PILImage.Resampling.NEAREST)) > 127
    write_canonical(res.image, root / item["path"])
    write_png(out_mask.astype(np.float32), root / item["mask"])
    rec = res.record if isinstance(res.record, dict) else {}
    return _row(item, root, model_version=str(rec.get("model_version", "") or ""))


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _do_cpu_item(item: dict, root: str, models_dir: str | None, params: dict) -> dict:
    root_p = Path(root)
    if item["kind"] == "real":
        return _do_real(item, root_p)
    return _do_manipulated(item, root_p, models_dir, params)


def _run_synthetic(items: list[dict], done: set, root: Path, models_dir, steps: dict, chunk: int,
                   on_row: Callable, sampling: str = "plain") -> None:
    """Sample in fixed chunks of the planned items (so a resumed build draws the very same images) and write the
    items of each chunk that are not done yet."""
    from ..synthesis import load_generator

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for it in items:
        groups[(it["generator"], it["modality"], it["label"])].append(it)
    for (g, m, lab), its in groups.items():
        card, sampler = GENERATOR_MODELS[g]
        for start in range(0, len(its), chunk):
            part = its[start : start + chunk]
            if all(it["key"] in done for it in part):
                continue
            gen = load_generator(card, models_dir=models_dir)
            if g in RECONSTRUCTION:
                todo = [it for it in part if it["key"] not in done]
                srcs = [_canonical_image(it["source_abs"], m, lab) for it in todo]
                for it, img in zip(todo, gen.reconstruct(srcs)):
                    write_canonical(img, root / it["path"])
                    on_row(_row(it, root, model_version=f"{gen.name}-{gen.version}"))
                continue
            if not sampler:
                kw = {}
            elif sampling == "card":  # the card's per-modality choice (Generator.sampling_settings), as the CLI
                kw = {"sampler": sampler, "steps": steps.get(g)}
            else:  # the plain settings, whatever the card chose, so a rebuild draws the benchmark's images
                kw = {"sampler": sampler, "steps": steps.get(g) or (50 if sampler == "ddim" else 1000), "eta": 0.0,
                      "guidance": 1.0}
            imgs = gen.sample(m, lab, len(part), seed=int(part[0]["seed"]), chunk=len(part), **kw)
            for it, img in zip(part, imgs):
                if it["key"] in done:
                    continue
                write_canonical(img, root / it["path"])
                on_row(_row(it, root, model_version=f"{gen.name}-{gen.version}", seed=int(part[0]["seed"])))


# ---------------------------------------------------------------- the builder

def _extends(old: dict, new: dict) -> bool:
    """True when `new` is `old` plus more generators/methods (each planned independently of the others, so the
    items already built stay exactly what `new` plans for them)."""
    fixed = (set(old) | set(new)) - {"synthetic", "manipulated", "counts", "feather"}
    if any(old.get(k) != new.get(k) for k in fixed):
        return False
    old_f, new_f = old.get("feather") or {}, new.get("feather") or {}
    if any(old_f.get(m, 0.0) != new_f.get(m, 0.0) for m in old["manipulated"]):
        return False
    if not (set(old["synthetic"]) <= set(new["synthetic"]) and set(old["manipulated"]) <= set(new["manipulated"])):
        return False
    per = old.get("per_modality")
    old_counts, new_counts = old.get("counts") or {}, new.get("counts") or {}
    return all(old_counts.get(g, per) == new_counts.get(g, per) for g in [*old["synthetic"], *old["manipulated"]])


def _read_log(log: Path, root: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if not log.exists():
        return done
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run
        if (root / row["path"]).exists() and (not row.get("mask") or (root / row["mask"]).exists()):
            done[row["key"]] = row
    return done


def build_dataset(
    real: str | Path,
    out: str | Path,
    *,
    synthetic: Sequence[str] = SYNTHETIC + RECONSTRUCTION,
    manipulated: Sequence[str] = MANIPULATIONS,
    per_modality: int = 100,
    real_per_modality: int | None = None,
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    workers: int = 1,
    models_dir: str | Path | None = None,
    ddpm_steps: int | None = None,
    ddim_steps: int | None = None,
    repaint_steps: int | None = None,
    chunk: int = 16,
    audit: bool = True,
    progress: bool = True,
    counts: dict[str, int] | None = None,
    feather: float | None = None,
    repaint_eta: float | None = None,
    sampling: str = "plain",
) -> dict:
    """Build (or resume) a forensic data set in `out`; returns a summary. See the module docstring.

    `feather` (px) feathers every manipulation's mask; None uses each method's default, as `medfake manipulate`
    does (RePaint 2 px, the classical methods none). The feathers used go into build.json. `repaint_eta` sets
    `repaint-ddim`'s η (None: its default, 1; the first benchmark build used 0). `sampling` "plain" draws the
    DDPM's fakes at guidance 1 and η 0 (the benchmark's setting); "card" with the settings the DDPM's card chose per
    modality (what `medfake synth` does by default); --ddpm-steps/--ddim-steps win over the card's steps.

    Raises BuildError on bad arguments, LeakageError on split leakage and ShortcutAuditError when the
    file-level shortcut audit reaches AUC >= 0.6 (audit.json is written either way)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .audit import audit_manifest
    from .leakage import check_leakage

    if per_modality < 0 or (real_per_modality is not None and real_per_modality < 1):
        raise BuildError("--per-modality must be >= 0 and --real-per-modality >= 1")
    if workers < 1:
        raise BuildError("--workers must be >= 1")
    if feather is not None and not (np.isfinite(feather) and feather >= 0):
        raise BuildError(f"--feather must be >= 0 pixels, got {feather}")
    synthetic, manipulated = list(synthetic), list(manipulated)
    real_path = Path(real)
    records = _load_reals(real_path, modalities, seed)
    real_root = real_path if real_path.is_dir() else real_path.parent
    items = plan_build(records, real_root, synthetic=synthetic, manipulated=manipulated, per_modality=per_modality,
                       real_per_modality=real_per_modality, seed=seed, counts=counts)
    unknown = set(counts or {}) - set(synthetic) - set(manipulated)
    if unknown:
        raise BuildError(f"--count names {', '.join(sorted(unknown))}, which the build does not include")
    if manipulated and per_modality:
        try:
            from ..manipulation import manipulate  # noqa: F401
        except ImportError as e:
            raise BuildError(f"manipulations requested but medfake.manipulation is unavailable ({e})") from None
    if synthetic and per_modality:
        from ..models.cards import card_path

        for card in sorted({GENERATOR_MODELS[g][0] for g in synthetic}):
            card_path(card, Path(models_dir) if models_dir else None)  # MedfakeError naming what is available

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    config = {"real": str(real_path.resolve()), "synthetic": synthetic, "manipulated": manipulated,
              "per_modality": per_modality, "real_per_modality": real_per_modality,
              "modalities": list(modalities) if modalities else None, "seed": seed, "ddpm_steps": ddpm_steps,
              "ddim_steps": ddim_steps, "repaint_steps": repaint_steps, "chunk": chunk}
    if counts:
        config["counts"] = dict(sorted(counts.items()))
    feathers = {m: float(default_feather(m) if feather is None else feather) for m in manipulated}
    feathers = {m: f for m, f in sorted(feathers.items()) if f > 0}
    if feathers:  # absent: every mask sharp (and builds from before feathering resume unchanged)
        config["feather"] = feathers
    if sampling not in ("plain", "card"):
        raise BuildError(f"--sampling must be plain or card, got {sampling!r}")
    if sampling != "plain":  # absent: plain (builds from before the option resume unchanged)
        config["sampling"] = sampling
    if repaint_eta is not None:
        if not 0.0 <= repaint_eta <= 1.0:
            raise BuildError(f"--repaint-eta must be in [0, 1], got {repaint_eta}")
        config["repaint_eta"] = float(repaint_eta)
    cfg_file = root / "build.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        if old != config and not _extends(old, config):
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise BuildError(f"{root} holds a build with different settings ({', '.join(diff)}); "
                             "use a new --out, the same settings to resume, or the same settings plus more "
                             "generators/methods to extend it")
    cfg_file.write_text(json.dumps(config, indent=2) + "\n")

    log = root / "items.jsonl"
    done = _read_log(log, root)
    todo = [it for it in items if it["key"] not in done]
    for it in items:  # how each mask is feathered: part of the item, like its geometry
        if it["kind"] == "manipulated":
            it["feather"] = feathers.get(it["generator"], 0.0)
    params = {m: {"steps": repaint_steps} if repaint_steps else {} for m in DIFFUSION_METHODS}  # method → settings
    if repaint_eta is not None:
        params["repaint-ddim"]["eta"] = float(repaint_eta)
    steps = {"ddpm": ddpm_steps, "ddim": ddim_steps}

    with log.open("a") as fh, Progress(TextColumn("build {task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as prog:
        task = prog.add_task("build", total=len(items), completed=len(items) - len(todo), what="")

        def on_row(row: dict) -> None:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            done[row["key"]] = row
            prog.update(task, advance=1, what=f"{row['kind']}/{row['generator']}")

        cpu = [it for it in todo if it["kind"] == "real" or
               (it["kind"] == "manipulated" and it["generator"] not in DIFFUSION_METHODS)]
        diffusion = [it for it in todo if it["kind"] == "manipulated" and it["generator"] in DIFFUSION_METHODS]
        synth = [it for it in items if it["kind"] == "synthetic"]  # all planned: chunks are fixed
        md = str(models_dir) if models_dir else None
        if workers > 1 and len(cpu) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
                futs = [ex.submit(_do_cpu_item, it, str(root), md, params) for it in cpu]
                for f in futs:
                    on_row(f.result())
        else:
            for it in cpu:
                on_row(_do_cpu_item(it, str(root), md, params))
        for it in diffusion:  # one process: the generator is loaded once (on the GPU when there is one)
            on_row(_do_manipulated(it, root, md, params))
        _run_synthetic(synth, set(done), root, md, steps, chunk, on_row, sampling)

    rows = [{k: v for k, v in done[it["key"]].items() if k != "key"} for it in items]
    rows += merged_rows(root)  # earlier merges' rows stay in the manifest (their names are never the builder's)
    check_leakage(rows)
    write_manifest(root / "manifest.csv", rows, MANIFEST_COLUMNS)
    summary = {"out": str(root), "n": len(rows), "resumed": len(items) - len(todo),
               "counts": dict(Counter(f"{r['kind']}/{r['generator']}" for r in rows)),
               "splits": dict(Counter(r["split"] for r in rows))}
    if audit and any(r["kind"] == "real" for r in rows) and any(r["kind"] != "real" for r in rows):
        summary["audit"] = audit_manifest(rows, root, out=root / "audit.json", seed=seed)
    return summary
