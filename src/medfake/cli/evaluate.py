"""`medfake dataset build` and `medfake eval` (thin shells over medfake.evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, fail

dataset_app = typer.Typer(help="Build forensic data sets (real + synthetic + manipulated).", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


def _names(text: str, allowed: tuple, what: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()] if text else []
    bad = [n for n in names if n not in allowed]
    if bad:
        fail(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
    return names


def _report(head: str, summary: dict) -> None:
    """A build's or merge's summary line (counts per kind/generator) and its shortcut-audit result."""
    from rich.console import Console

    c = Console()
    c.print(f"{head}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items())))
    if "audit" in summary:
        c.print(f"shortcut audit passed: file-level AUC {summary['audit']['auc']:.3f} < {summary['audit']['limit']}")


@dataset_app.command("build")
def build_cmd(
    real: Path = typer.Option(..., "--real", help="manifest CSV or folder <modality>/<label>/*"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (resumed when it holds the same build, "
                             "extended when this one adds generators/methods)"),
    synthetic: str = typer.Option("ddpm,ddim,dcgan,vae", help="generators: ddpm (ancestral), ddim (DDIM), dcgan, vae "
                                  "(KL-autoencoder reconstructions of real images); '' for none"),
    manipulated: str = typer.Option("repaint,repaint-ddim,copy-move,splice,retouch", help="manipulation methods; '' for none"),
    per_modality: int = typer.Option(100, help="images per generator/method and modality"),
    real_per_modality: Optional[int] = typer.Option(None, help="real images per modality (default: all)"),
    modalities: Optional[str] = typer.Option(None, help="comma-separated modalities (default: all in --real)"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(1, help="processes for reals and classical manipulations"),
    models_dir: Optional[Path] = typer.Option(None, help="generator weights/cards (default: models/)"),
    ddpm_steps: Optional[int] = typer.Option(None, help="ancestral DDPM steps (default 1000; cut on CPU)"),
    ddim_steps: Optional[int] = typer.Option(None, help="DDIM steps (default 50)"),
    repaint_steps: Optional[int] = typer.Option(None, help="diffusion steps for repaint manipulations"),
    feather: Optional[float] = typer.Option(None, min=0.0, help="feather (px) of every manipulation's mask "
                                            "(default: each method's default, as `medfake manipulate`: RePaint "
                                            "2, the classical methods 0)"),
    repaint_eta: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="η of repaint-ddim (default 1; the "
                                                "first benchmark build used 0)"),
    sampling: str = typer.Option("plain", help="the DDPM's fakes: plain (guidance 1, η 0, the benchmark's) or "
                                 "card (the settings its card chose per modality, as `medfake synth` by default)"),
    steps: Optional[int] = typer.Option(None, help="shorthand: the same step count for ddpm, ddim and repaint"),
    audit: bool = typer.Option(True, help="run the shortcut audit (fails the build at AUC >= 0.6)"),
    count: Optional[str] = typer.Option(None, "--count", help="per-generator/method overrides of --per-modality, e.g. repaint=20,ddpm=40"),
):
    """Build a forensic data set: DIR/images/<kind>/<generator>/<modality>/*.png, masks, manifest.csv, audit.json."""
    from ..evaluation.build import MANIPULATIONS, RECONSTRUCTION, SYNTHETIC, build_dataset
    from ..io.errors import MedfakeError

    syn = _names(synthetic, SYNTHETIC + RECONSTRUCTION, "generator(s)")
    man = _names(manipulated, MANIPULATIONS, "manipulation(s)")
    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    counts = {}
    for part in (count or "").split(","):
        if part.strip():
            name, _, num = part.partition("=")
            if not num.strip().isdigit():
                fail(f"--count expects NAME=N pairs, got {part!r}")
            counts[name.strip()] = int(num)
    try:
        s = build_dataset(real, out, synthetic=syn, manipulated=man, per_modality=per_modality,
                          real_per_modality=real_per_modality, modalities=mods, seed=seed, workers=workers,
                          models_dir=models_dir, ddpm_steps=ddpm_steps or steps, ddim_steps=ddim_steps or steps,
                          repaint_steps=repaint_steps or steps, audit=audit, counts=counts or None,
                          feather=feather, repaint_eta=repaint_eta, sampling=sampling)
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    _report(f"wrote {s['n']} images to [bold]{out}[/] ({s['resumed']} already there)", s)


@dataset_app.command("merge")
def merge_cmd(
    src: Path = typer.Argument(..., help="a built data set holding the new rows (same --real as the target)"),
    into: Path = typer.Option(..., "--into", help="the built data set to add them to"),
    rename: str = typer.Option(..., "--rename", help="OLD=NEW pairs: which of SRC's generators/methods to take and "
                               "their names in the target, e.g. ddpm=ddpm-v,repaint-ddim=repaint-ddim-v"),
    replace: bool = typer.Option(False, "--replace", help="replace rows an earlier merge added under these names "
                                 "(their files are moved to INTO/replaced/<time>/, not deleted)"),
    audit: bool = typer.Option(True, help="run the shortcut audit on the merged set before writing"),
):
    """Add another build's rows of some generators/methods to a built data set under new names (e.g. a newer
    model's fakes beside the old ones); later `dataset build` runs on the target keep them."""
    from ..evaluation.merge import merge_build, parse_renames
    from ..io.errors import MedfakeError

    try:
        s = merge_build(src, into, parse_renames(rename), replace=replace, audit=audit)
    except MedfakeError as e:
        fail(str(e))
    _report(f"merged {s['added']} rows into [bold]{into}[/] ({s['replaced']} replaced; {s['n']} rows now)", s)


@app.command("eval")
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="manifest.csv of a built data set (or its folder)"),
    out: Path = typer.Option(..., "--out", "-o", help="writes results.json and report.html here"),
    split: str = typer.Option("test", help="split to evaluate ('' or a manifest without splits: all rows)"),
    detector: str = typer.Option("default", help="detector name (model card in --models-dir)"),
    models_dir: Optional[Path] = typer.Option(None),
    robustness: bool = typer.Option(True, help="JPEG/resize/noise/blur/16-bit conditions"),
    adversarial: bool = typer.Option(True, help="FGSM/PGD at 1, 2, 4 /255"),
    external: bool = typer.Option(True, help="false alarms on real images from outside the data set (shipped "
                                             "inside pydicom/pydicom-data, matplotlib, nibabel)"),
    external_more: Path = typer.Option(Path("data_cache/external/files"), help="with --external, also the second "
                                       "set of outside reals where benchmarks/external_fetch.py put it (skipped when "
                                       "absent)"),
    logo: bool = typer.Option(False, "--logo", help="also run the leave-one-generator-out protocol (trains detectors)"),
    logo_config: str = typer.Option("resnet18-12", help="detector architecture trained by --logo"),
    logo_steps: int = typer.Option(50, help="training steps per LOGO detector"),
    threshold: Optional[float] = typer.Option(None, help="decision threshold (default: the detector card's, else 0.5)"),
    adversarial_max: int = typer.Option(256, min=0, help="attack at most this many images (random, seeded; 0: "
                                        "no attacks, as --no-adversarial)"),
    seed: int = typer.Option(0),
    copy_move: Optional[bool] = typer.Option(None, "--copy-move/--no-copy-move",
                                             help="the detector's copy-move cue (default: on when its card has it, "
                                                  "as medfake detect runs it)"),
):
    """Evaluate a detector: metrics by modality/label/generator, localization, robustness, attacks, report."""
    from rich.console import Console

    from ..evaluation.run import evaluate
    from ..io.errors import MedfakeError

    if not data.exists():
        fail(f"{data} does not exist")
    try:
        res = evaluate(data, out, split=split or None, detector=detector, models_dir=models_dir,
                       robustness=robustness, adversarial=adversarial, external=external,
                       external_more=external_more if external else None, logo=logo,
                       logo_options={"detector_config": logo_config, "steps": logo_steps}, threshold=threshold,
                       seed=seed, adversarial_max=adversarial_max, copy_move=copy_move)
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    o = res["overall"]
    Console().print(f"{res['n']} images: AUC {o['roc_auc']}, F1 {o['f1']:.3f}, EER {o['eer']}, "
                    f"TPR@1%FPR {o['tpr_at_1pct_fpr']}; wrote {out}/results.json and {out}/report.html")
