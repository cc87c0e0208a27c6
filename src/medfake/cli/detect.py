"""`medfake detect` and `medfake train detector` (thin shells over medfake.detection)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._app import app, fail, train_app


@app.command("detect")
def detect_cmd(
    paths: List[Path] = typer.Argument(..., help="image files and/or folders (searched recursively): PNG, JPEG, "
                                                 "TIFF, DICOM, NIfTI"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write a CSV here (default: a table on the terminal)"),
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", help="write Grad-CAM overlays and predicted "
                                                                     "manipulation masks (PNG) to this folder"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="few-shot references: DIR/real/*, "
                                                                       "DIR/synthetic/* (or fake/), DIR/manipulated/*"),
    detector: str = typer.Option("default", "--detector", help="detector card name in the models folder "
                                 "('default' = detector-ensemble.json where it exists, else detector-default.json)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="images scored per batch (as the speed benchmark)"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="models folder (default: settings)"),
    copy_move: Optional[bool] = typer.Option(None, "--copy-move/--no-copy-move",
                                             help="the copy-move cue (duplicated texture) fused into p_manipulated, "
                                                  "with the thresholds calibrated with it; default: on when the "
                                                  "detector's card has it (the shipped one does); off is ~2× faster"),
    device: Optional[str] = typer.Option(None, "--device", help="auto (a CUDA GPU when there is one), cpu, cuda, "
                                                                "cuda:N; default: MEDFAKE_DEVICE or auto"),
    summary: Optional[Path] = typer.Option(None, "--summary", help="also write one row per DICOM series (or "
                                           "study, --group-by) to this CSV: image counts per verdict and the "
                                           "group's verdict: synthetic/manipulated only when more of its images "
                                           "are called so than a real group of its size shows by chance (the "
                                           "detector's per-image 1 %), uncertain with any such image; a file "
                                           "without "
                                           "UIDs is its own group"),
    mask_views: Optional[int] = typer.Option(None, "--mask-views", help="test-time views the --heatmaps masks "
                                             "average: 1, 2 or 8 (default: MEDFAKE_MASK_VIEWS, else the localizer "
                                             "card's; fewer is faster, slightly less accurate)"),
    group_by: str = typer.Option("series", "--group-by", help="what --summary groups by: series, study or file"),
    slices: str = typer.Option("middle", "--slices", help="NIfTI, NRRD and MetaImage volumes and Siemens mosaic "
                                                          "DICOMs: the "
                                                          "middle axial slice (middle) "
                                                          "or every axial slice (all: rows path#k; the file is one "
                                                          "group in --summary)"),
):
    """Score images: p_synthetic, p_manipulated and a verdict per image (per frame for multi-frame files)."""
    from ..detection import detect_paths, write_csv
    from ..detection.summary import GROUP_BY, detector_rates, summarize, write_summary_csv
    from ..io.errors import MedfakeError

    if group_by not in GROUP_BY:
        fail(f"--group-by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    if mask_views is not None and mask_views not in (1, 2, 8):
        fail(f"--mask-views must be 1, 2 or 8, not {mask_views}")
    missing = [str(p) for p in paths if not p.exists()]
    if missing and len(missing) == len(paths):
        fail(f"no such file or folder: {', '.join(missing)}")
    left_out: list = []
    try:
        rows = detect_paths(paths, detector=detector, models_dir=models_dir, reference=reference,
                            batch_size=batch_size, heatmaps=heatmaps, progress=out is not None,
                            copy_move=copy_move, device=device, nifti_slices=slices, left_out=left_out,
                            mask_views=mask_views)
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    if not rows:
        fail("no image files found" + (f" (left out {len(left_out)} mask/heat-map file(s) medfake wrote)"
                                       if left_out else ""))
    from rich.console import Console

    console = Console()
    if left_out:
        console.print(f"left out {len(left_out)} mask/heat-map file(s) that medfake wrote beside the images (listed "
                      "in its JSON sidecars or heat-map index; name a file on its own to score it)")
    if out is not None:
        write_csv(rows, out)
        counts: dict = {}
        for r in rows:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        console.print(f"wrote {len(rows)} row(s) to [bold]{out}[/]: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    else:
        from rich.table import Table

        from rich.table import Column

        table = Table(Column("path", overflow="fold"), "modality", "p_synthetic", "p_manipulated", "verdict",
                      "anomaly", Column("message", overflow="fold"))
        colour = {"real": "green", "synthetic": "red", "manipulated": "magenta", "uncertain": "yellow",
                  "error": "bold red"}
        for r in rows:
            f = lambda v: "" if v in (None, "") else f"{v:.3f}"  # noqa: E731
            table.add_row(r["path"], r["modality"], f(r["p_synthetic"]), f(r["p_manipulated"]),
                          f"[{colour.get(r['verdict'], 'white')}]{r['verdict']}[/]", f(r.get("anomaly")),
                          r.get("message") or "")
        console.print(table)
    if summary is not None:
        groups = summarize(rows, group_by, *detector_rates(detector, models_dir))
        write_summary_csv(groups, summary)
        counts = {}
        for g in groups:
            counts[g["verdict"]] = counts.get(g["verdict"], 0) + 1
        kinds = {k: sum(g["group_by"] == k for g in groups) for k in GROUP_BY}
        what = ", ".join(f"{n} {k if k != 'file' else 'file(s) without UIDs'}" for k, n in kinds.items() if n)
        console.print(f"wrote {len(groups)} group(s) ({what}) to [bold]{summary}[/]: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@train_app.command("detector")
def train_detector_cmd(
    config: str = typer.Option("dual-srm", "--config", help="architecture: dual-srm, spatial-cnn, manip-supcon, "
                                                            "resnet18-12, effnet-attn"),
    data: Path = typer.Option(..., "--data", help="data-set manifest (path, modality, label, split, kind, generator, "
                                                  "mask)"),
    out: Path = typer.Option(Path("runs/detect"), "--out"),
    name: Optional[str] = typer.Option(None, help="model name (default: the architecture)"),
    steps: int = typer.Option(2000, min=0, help="optimiser steps (0 with --init-from: recalibrate those weights only)"),
    supcon_steps: Optional[int] = typer.Option(None, help="SupCon warm-up steps (default: steps/3 for "
                                                          "manip-supcon, else 0)"),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    ckpt_every: int = typer.Option(500),
    resume: bool = typer.Option(True, help="resume from <out>/<name>.ckpt.pt if present"),
    max_minutes: Optional[float] = typer.Option(None, help="stop (and calibrate/export) after this many minutes"),
    overrides: Optional[str] = typer.Option(None, "--overrides", help="JSON object of architecture config overrides"),
    retrieval_weight: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="weight w of the kNN score: "
                                                     "p = (1-w)·p_clf + w·p_knn (default: chosen per head on "
                                                     "validation from 0.1, 0.2, 0.3, 0.5)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="fine-tune: start from this model card's "
                                                                       "weights (same architecture and config)"),
    calibration_shifts: int = typer.Option(2, min=0, help="shifted (augmented) copies of each real val image "
                                                          "added to the real pool the thresholds are set on"),
    online_manipulations: float = typer.Option(0.0, min=0.0, max=1.0, help="probability that a drawn manipulated "
                                               "example is replaced by a fresh manipulation of a real one"),
    online_kind: str = typer.Option("pseudo", help="what --online-manipulations makes: 'pseudo' (self-blends and "
                                    "splices), 'classical' (the shipped copy-move/splice/retouch) or 'generated' "
                                    "(a region of a synthetic training image blended in, as an inpainting)"),
    generator_balance: float = typer.Option(0.0, min=0.0, max=1.0, help="even out the generators (and methods) "
                                            "within each kind: a group of n rows is drawn with a share ∝ n^(1 − "
                                            "this); 0 = as the data come, 1 = every generator alike"),
    other_reals_share: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="share of the real draws given "
                                                      "to reals of no known modality (real scans of other sources, "
                                                      "benchmarks/train_reals_fetch.py); default: as the data come"),
    per_modality_thresholds: bool = typer.Option(True, help="raise the thresholds of a modality whose val reals "
                                                            "score higher than the others (per-modality FPR bound)"),
    copy_move_cue: bool = typer.Option(True, help="also calibrate the copy-move cue (then detect, eval and the "
                                                  "service run it by default; see docs/detection.md)"),
    seg_mix: bool = typer.Option(True, help="let validation mix the segmentation map's top-64 evidence into "
                                            "the manipulation score (docs/detection.md)"),
    resample_p: float = typer.Option(0.25, min=0.0, max=1.0, help="training augmentation: probability of the "
                                     "resize-down-up (blur: 0.4 × it), for real and fake images alike"),
    jpeg_p: float = typer.Option(0.25, min=0.0, max=1.0, help="training augmentation: probability of the JPEG round "
                                 "trip (quality 50–95), for every kind alike"),
    lowres_noise_p: float = typer.Option(0.0, min=0.0, max=1.0, help="training augmentation: share of those "
                                         "resizes that add noise at the small size (a natively small scan's noise)"),
    overlay_p: float = typer.Option(0.0, min=0.0, max=1.0, help="training augmentation: probability of burned-in "
                                    "annotations (captions, label bars, calipers, ROI boxes, scale bars), for "
                                    "every kind alike"),
    acquisition_p: float = typer.Option(0.0, min=0.0, max=1.0, help="training augmentation: probability of each "
                                        "acquisition artifact (bias field, Gibbs ringing, Rician noise, intensity "
                                        "curve), for every kind alike"),
    anchor: float = typer.Option(0.0, min=0.0, help="fine-tune only: weight of the penalty on real images' "
                                 "synthetic/manipulated logits rising above those of the --init-from weights"),
    interpolate: Optional[Path] = typer.Option(None, "--interpolate", help="with --init-from and --steps 0: "
                                               "blend the --init-from weights with this card's (a fine-tune of "
                                               "them; WiSE-FT) and calibrate the blend"),
    interpolate_weight: float = typer.Option(0.5, min=0.0, max=1.0, help="the --interpolate card's share of the "
                                             "blend: (1-w)·init + w·other"),
    test_time_flip: bool = typer.Option(False, help="calibrate (and later run) the detector on the mean of each "
                                        "image's and its mirror image's outputs (twice the network's work)"),
    acquisition_shifts: int = typer.Option(0, min=0, help="copies of each real val image with acquisition "
                                           "artifacts (bias field, Gibbs ringing, Rician noise, intensity curve) "
                                           "added to the real pool the thresholds are set on"),
    train_only: str = typer.Option("", help="fine-tune only the parameters whose names start with one of these "
                                   "comma-separated prefixes (e.g. seg_,head_manip); the rest stay frozen, batch "
                                   "norm included, so the other heads' scores do not change"),
):
    """Train a detector on split=train, calibrate on split=val, export weights + model card to --out."""
    import json

    from rich.console import Console

    from ..detection import train_detector
    from ..detection.augment import AugmentConfig
    from ..io.errors import MedfakeError

    if not data.exists():
        fail(f"data-set manifest not found: {data}")
    try:
        cfg = json.loads(overrides) if overrides else None
    except json.JSONDecodeError as e:
        fail(f"--overrides is not valid JSON ({e})")
    try:
        card = train_detector(
            config, data, out, name=name, config=cfg, steps=steps, supcon_steps=supcon_steps, batch_size=batch_size,
            lr=lr, seed=seed, device=device, ckpt_every=ckpt_every, resume=resume, max_minutes=max_minutes,
            retrieval_weight=retrieval_weight, init_from=init_from, calibration_shifts=calibration_shifts,
            online_manipulations=online_manipulations, online_kind=online_kind, generator_balance=generator_balance,
            other_reals_share=other_reals_share, per_modality_thresholds=per_modality_thresholds,
            copy_move_cue=copy_move_cue, seg_mix=seg_mix,
            augment=AugmentConfig(resample_p=resample_p, lowres_noise_p=lowres_noise_p, overlay_p=overlay_p,
                                  acquisition_p=acquisition_p, jpeg_p=jpeg_p),
            anchor=anchor, interpolate=interpolate, interpolate_weight=interpolate_weight,
            test_time_flip=test_time_flip, acquisition_shifts=acquisition_shifts,
            train_only=tuple(p.strip() for p in train_only.split(",") if p.strip()),
            command="medfake " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    m = card["metrics"]
    auc = {h: (m.get(h) or {}).get("auc") for h in ("synthetic", "manipulated")}
    Console().print(f"trained {card['name']}: {card['steps']} steps in {card['minutes']} min on {card['hardware']}; "
                    f"loss {card['loss_first']} → {card['loss_last']}; val AUC {auc}; wrote {out}/{card['name']}.json")


@train_app.command("localizer")
def train_localizer_cmd(
    data: Path = typer.Option(..., "--data", help="data-set manifest: real and manipulated rows with masks in "
                                                  "split=train and split=val"),
    out: Path = typer.Option(Path("runs/localizer"), "--out"),
    name: str = typer.Option("localizer", help="model name (the card a detector names as its localizer)"),
    config: str = typer.Option("localizer-unet", "--config", help="architecture: localizer-unet, localizer-fast "
                                                                  "(~4.5x faster: for the detectors' evidence cue), "
                                                                  "or localizer-stem (experimental)"),
    steps: int = typer.Option(3000, min=0, help="training steps (0 with --init-from: train nothing, choose the "
                                                "threshold of its weights again, e.g. for other --tta-views)"),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(2e-3, help="peak learning rate (one-cycle)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    max_minutes: Optional[float] = typer.Option(None, help="stop (then validate and export) after this many "
                                                           "minutes"),
    online_manipulations: float = typer.Option(0.0, min=0.0, max=1.0, help="probability that a drawn manipulated "
                                               "example is replaced by a fresh copy-move, splice or retouch of a "
                                               "real training image (with its exact mask)"),
    manipulated_share: float = typer.Option(0.75, min=0.01, max=0.99, help="share of the draws that are "
                                            "manipulated images (the rest real)"),
    augment: bool = typer.Option(False, help="add the detectors' augmentation (JPEG, resampling, blur, noise, "
                                             "contrast) to the mirrors and quarter turns every batch gets"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="fine-tune: start from this localizer card's "
                                                                       "weights (same --config and config)"),
    method_balance: float = typer.Option(0.0, min=0.0, max=1.0, help="within the manipulated draws a method of n "
                                         "rows gets a share ∝ n^(1 − this): 0 = as the data come, 1 = every method "
                                         "alike"),
    tta_views: int = typer.Option(8, help="test-time views a mask averages: 1 (the image), 2 (and its mirror) or 8 "
                                          "(all mirrors and quarter turns); the threshold is chosen on them"),
    jpeg_p: float = typer.Option(0.25, min=0.0, max=1.0, help="with --augment: probability of the JPEG round trip"),
    resample_p: float = typer.Option(0.25, min=0.0, max=1.0, help="with --augment: probability of the "
                                     "resize-down-up (blur: 0.4 × it)"),
):
    """Train a manipulation localizer (a per-pixel map network) and choose its mask threshold on split=val. A
    detector card that names it (`"localizer": NAME`) takes its mask from it (docs/detection.md)."""
    from rich.console import Console

    from ..detection.augment import AugmentConfig
    from ..detection.localizer import train_localizer
    from ..io.errors import MedfakeError

    if not data.exists():
        fail(f"data-set manifest not found: {data}")
    if not augment and (jpeg_p, resample_p) != (0.25, 0.25):
        fail("--jpeg-p and --resample-p set the augmentation's probabilities: add --augment")
    try:
        card = train_localizer(data, out, name=name, architecture=config, steps=steps, batch_size=batch_size, lr=lr,
                               seed=seed, device=device, online_manipulations=online_manipulations,
                               manipulated_share=manipulated_share, max_minutes=max_minutes,
                               augment=AugmentConfig(jpeg_p=jpeg_p, resample_p=resample_p) if augment else None,
                               init_from=init_from, method_balance=method_balance, tta_views=tta_views,
                               command="medfake " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    m = card["metrics"]
    views = ", ".join(f"{v} view{'s' if v != '1' else ''} {b['pixel_f1']} at {b['threshold']}"
                      for v, b in m["by_views"].items())
    if steps == 0:
        Console().print(f"chose the thresholds of {card['name']} {card['version']} again on val (weights unchanged): "
                        f"pixel-F1 {views}; masks use {card['tta_views']}; wrote {out}/{card['name']}.json")
        return
    Console().print(f"trained {card['name']}: {card['steps']} steps in {card['minutes']} min on {card['hardware']}; "
                    f"loss {card['loss_first']} → {card['loss_last']}; val pixel-F1 {m['pixel_f1']} at threshold "
                    f"{m['threshold']} ({views}); wrote {out}/{card['name']}.json")


@train_app.command("evidence")
def train_evidence_cmd(
    data: Path = typer.Option(..., "--data", help="data-set manifest with a val split (real images at least)"),
    localizer: str = typer.Option("localizer-fast", help="card name of the localizer whose evidence is the cue "
                                                         "(shipped: localizer-fast, localizer)"),
    detector: str = typer.Option("default", help="card name of the detector (or ensemble) that gets the cue"),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="folder with both cards; the detector's "
                                                                         "card is rewritten there"),
    budget: float = typer.Option(0.003, min=0.0001, max=0.5, help="share of the real val pool the cue alone may "
                                                                  "call manipulated"),
    uncertain_budget: float = typer.Option(0.004, min=0.0002, max=0.9, help="... or uncertain (larger)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the calibration, write nothing"),
):
    """Calibrate a localizer's top evidence as a manipulation alarm of the detector (detection.evidence): its cuts
    on real val images and their shifted copies, written into the detector's card. No training."""
    from rich.console import Console

    from ..detection.evidence import fit_evidence
    from ..io.errors import MedfakeError

    if not data.exists():
        fail(f"data-set manifest not found: {data}")
    try:
        sec = fit_evidence(detector, localizer, data, models_dir, budget=budget, uncertain_budget=uncertain_budget,
                           command="medfake " + " ".join(shlex.quote(a) for a in sys.argv[1:]), write=not dry_run)
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    chk = sec["val"]["detector"]
    Console().print(f"{'calibrated' if dry_run else 'wrote'} the evidence cue of {localizer} for {detector}: cut "
                    f"{sec['cut']} (uncertain {sec['cut_uncertain']}); val reals above the cut "
                    f"{sec['val']['real_above_cut']:.2%}")
    for kind, w in chk["without"].items():
        Console().print(f"  val {kind} ({w['n']}): called manipulated {w['manipulated']:.1%} → "
                        f"{chk['with'][kind]['manipulated']:.1%}, not real {w['not_real']:.1%} → "
                        f"{chk['with'][kind]['not_real']:.1%}")


@train_app.command("ensemble")
def train_ensemble_cmd(
    data: Path = typer.Option(..., "--data", help="data-set manifest with a val split (kind column)"),
    primary: str = typer.Option("detector-default", help="card name of the primary member (its verdict rule, maps "
                                                          "and explanations are the ensemble's)"),
    second: list[str] = typer.Option(..., help="card name of a second member (it can only lower the primary's "
                                                 "scores); repeat it for a second opinion that is the mean of "
                                                 "several networks"),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="folder with the members' cards; the "
                                                                         "ensemble card is written there"),
    name: str = typer.Option("detector-ensemble", help="the ensemble card's name"),
    kept: float = typer.Option(0.95, min=0.5, max=1.0, help="share of the primary's val catches (per head) the "
                               "veto must keep"),
):
    """Fit an ensemble (detection.ensemble): choose the second opinion's veto levels on split=val and write the
    ensemble's card. No training; the members must already exist."""
    from rich.console import Console
    from rich.progress import Progress

    from ..detection.ensemble import fit_ensemble
    from ..io.errors import MedfakeError

    if not data.exists():
        fail(f"data-set manifest not found: {data}")
    try:
        with Progress(transient=True) as prog:
            task = prog.add_task("score val (all members)", total=None)
            card = fit_ensemble(primary, second[0] if len(second) == 1 else second, data, models_dir, name=name,
                                kept=kept, command="medfake " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                                progress=lambda n: prog.update(task, completed=n))
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    v, chk = card["veto"], card["val_check"]

    def change(key: str, fmt: str = ".1%") -> str:
        a, b = chk["primary"][key], chk["ensemble"][key]
        return "n/a" if a is None or b is None else f"{a:{fmt}} → {b:{fmt}}"

    Console().print(f"wrote {models_dir}/{name}.json: veto levels synthetic {v['synthetic']}, manipulated "
                    f"{v['manipulated']}; val: real alarms {change('real_not_real', '.2%')}, synthetic caught "
                    f"{change('synthetic_caught')}, manipulated caught {change('manipulated_caught')}")
