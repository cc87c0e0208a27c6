"""`medfake synth` and `medfake train synth`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from ._app import app, fail, train_app


@app.command("synth")
def synth_cmd(
    modality: str = typer.Option(..., "--modality", "-m", help="brain_mri, chest_xray, lung_ct, kidney_ct, breast_us, knee_xray"),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="class label (default: drawn from the training prior)"),
    n: int = typer.Option(16, "-n", help="number of images"),
    sampler: Optional[str] = typer.Option(None, help="ddpm (ancestral, 1000 steps; slow on a CPU) or ddim (fast) "
                                          "(default: the model card's choice for the modality, else ddim)"),
    steps: Optional[int] = typer.Option(None, help="sampling steps (default: the card's choice for the modality "
                                        "and sampler, else ddim 50, ddpm 1000)"),
    eta: Optional[float] = typer.Option(None, help="DDIM eta (default: the card's choice, else 0)"),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance scale (1 = conditional, >1 "
                                             "stronger; default: the card's choice for the modality, else 1)"),
    seed: int = typer.Option(0),
    model: str = typer.Option("ddpm", help="generator name in models/ (ddpm, dcgan)"),
    fmt: str = typer.Option("png", "--format", help="png or dicom"),
    bits: int = typer.Option(8, help="bit depth of the written files (8 or 16)"),
    out: Path = typer.Option(Path("synth_out"), "--out", "-o"),
):
    """Sample synthetic images from a shipped generator."""
    from rich.console import Console
    from rich.progress import Progress

    from ..data.modalities import check_label, check_modality
    from ..io.errors import MedfakeError
    from ..synthesis.generate import load_generator
    from ..synthesis.io import save_images

    if fmt not in ("png", "dicom"):
        fail(f"unknown format {fmt!r}; choose png or dicom")
    if sampler not in (None, "ddpm", "ddim"):
        fail(f"unknown sampler {sampler!r}; choose ddpm or ddim")
    try:
        check_modality(modality)
        check_label(modality, label)
        gen = load_generator(model)
        if gen.family == "vae":
            raise MedfakeError(f"{model!r} is an autoencoder: it reconstructs real images for the data-set builder "
                               "(medfake dataset build --synthetic vae) and cannot sample; use ddpm or dcgan")
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    st = gen.sampling_settings(modality, sampler, steps, eta, guidance)
    console = Console(stderr=True, soft_wrap=True)
    if st:
        why = "" if sampler else " (the model card's choice for the modality)"
        console.print(f"{model} {gen.version}, {modality}: {st['sampler']} {st['steps']} steps, "
                      f"eta {st['eta']:g}, guidance {st['guidance']:g}{why}")
        if st["sampler"] == "ddpm" and st["steps"] >= 250 and str(gen.device).startswith("cpu"):
            per = 0.008 * st["steps"] * (2 if st["guidance"] != 1 else 1)  # measured: 1000 steps ≈ 8 s on 2 cores
            console.print(f"ancestral sampling on a CPU: ~{per:.0f} s per image on 2 cores (in chunks of 16); "
                          "--sampler ddim draws ~10× faster with its own tuned settings")
    with Progress(transient=True) as prog:
        task = prog.add_task(f"{model} {st.get('sampler', '')} {modality}", total=1.0)
        imgs = gen.sample(modality, label, n, **st, seed=seed,
                          progress=lambda i, t: prog.update(task, completed=i / max(t, 1)))
    paths = save_images(imgs, out, gen.provenance(**st, seed=seed), fmt=fmt, bits=bits, prefix=f"{modality}_{model}")
    Console().print(f"wrote {len(paths)} {fmt.upper()} file(s) to [bold]{out}[/]")


@train_app.command("synth")
def train_synth_cmd(
    model: str = typer.Option("ddpm", "--model", help="ddpm, dcgan or vae (the KL autoencoder whose reconstructions "
                              "the data-set builder uses as latent-diffusion-style fakes)"),
    data: Path = typer.Option(..., "--data", help="manifest.csv or folder root/<modality>/<label>/*"),
    split: str = typer.Option("train", help="manifest split to train on ('' = all rows)"),
    out: Path = typer.Option(Path("runs/synth"), "--out"),
    name: Optional[str] = typer.Option(None, help="model name (default: the family)"),
    steps: int = typer.Option(5000),
    batch_size: int = typer.Option(32),
    lr: Optional[float] = typer.Option(None),
    ema: float = typer.Option(0.999, help="EMA decay"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    ckpt_every: int = typer.Option(500),
    resume: bool = typer.Option(True, help="resume from <out>/<name>.ckpt.pt if present"),
    max_minutes: Optional[float] = typer.Option(None, help="stop (and export) after this many minutes of "
                                               "training in all (a resumed or continued run counts its earlier minutes)"),
    config: Optional[str] = typer.Option(None, help="JSON object of architecture config overrides"),
    limit_per_class: Optional[int] = typer.Option(None, help="use at most N images per (modality, label)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="continue a shipped model (its card, e.g. "
                                             "models/ddpm.json) when no checkpoint is at hand; --steps is the total"),
    workers: Optional[int] = typer.Option(None, help="data-loading processes (default: 0 on a CPU, 8 on a GPU)"),
):
    """Train the class-conditional DDPM, the DCGAN or the KL autoencoder on a manifest split."""
    import json

    from rich.console import Console

    from ..data.manifest import filter_records, read_manifest
    from ..synthesis.train import train_generator

    recs = filter_records(read_manifest(data), split or None, limit_per_class=limit_per_class)
    if not recs:
        fail(f"no images in {data} (split {split!r})")
    try:
        card = train_generator(
            model, recs, out, name=name, config=json.loads(config) if config else None, steps=steps,
            batch_size=batch_size, lr=lr, ema_decay=ema, seed=seed, device=device, ckpt_every=ckpt_every,
            resume=resume, max_minutes=max_minutes, data_desc=f"{data} split={split or 'all'} ({len(recs)} images)",
            command="medfake " + " ".join(shlex.quote(a) for a in sys.argv[1:]), init_from=init_from,
            workers=workers,
        )
    except ValueError as e:  # unknown family, a checkpoint or card of another config/architecture: one line
        fail(str(e))
    Console().print(f"trained {card['name']}: {card['steps']} steps in {card['training_minutes']} min on "
                    f"{card['hardware']}; loss {card['loss_first']} → {card['loss_last']}; wrote {out}/{card['name']}.json")
