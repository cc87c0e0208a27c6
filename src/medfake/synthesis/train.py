"""Training loops for the DDPM, the DCGAN and the KL autoencoder (VAE): progress bar, EMA, checkpoints and resume, bf16 autocast on a
GPU, works on the CPU. Output: <out>/<name>.safetensors (EMA weights, fp16) + <out>/<name>.json (model card)."""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import __version__
from ..data.datasets import ImageDataset, train_transforms
from ..data.manifest import Record
from ..models.cards import write_card
from ..models.registry import create, make_config
from ..models.weights import save_weights


# generator family → registered architecture
FAMILIES = {"ddpm": "ddpm-unet", "dcgan": "dcgan", "vae": "vae-kl"}


def vae_loss(model, x: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """L1 reconstruction + kl_weight · KL(q(z|x) || N(0, I)), the first-stage loss of latent diffusion without its
    perceptual and adversarial terms (both need networks we cannot download)."""
    recon, mu, sigma = model(x)
    kl = 0.5 * (mu.float().pow(2) + sigma.float().pow(2) - torch.log(sigma.float().pow(2) + 1e-8) - 1).sum((1, 2, 3))
    return torch.nn.functional.l1_loss(recon.float(), x.float()) + kl_weight * kl.mean()


def ddpm_target(sched, prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser learns to output for x_t = sched.add_noise(x0, ε, t): ε, or v = √ᾱ ε − √(1−ᾱ) x0 (MONAI's
    `get_velocity`, which the schedulers' `prediction_type="v_prediction"` inverts)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return sched.get_velocity(x0, noise, t)
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def _loader(records, batch_size: int, seed: int, augment: bool = True, workers: int = 0):
    ds = ImageDataset(records, train_transforms(augment=augment))
    g = torch.Generator().manual_seed(seed)
    return ds, torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=len(ds) >= batch_size,
                                           generator=g, num_workers=workers, persistent_workers=workers > 0,
                                           pin_memory=workers > 0 and torch.cuda.is_available())


def _forever(loader):
    while True:
        yield from loader


def label_prior(records: list[Record]) -> dict:
    c = Counter((r.modality, r.label) for r in records)
    out: dict = {}
    for (m, lab), k in c.items():
        out.setdefault(m, {})[lab] = k
    return {m: {lab: v / sum(d.values()) for lab, v in d.items()} for m, d in out.items()}


def _hardware(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _progress(total: int, desc: str, initial: int = 0):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    p = Progress(TextColumn(desc), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
    task = p.add_task(desc, total=total, completed=initial, info="")
    return p, task


def train_generator(
    family: str,
    records: list[Record],
    out_dir: str | Path,
    *,
    name: str | None = None,
    config: dict | None = None,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float | None = None,
    ema_decay: float = 0.999,
    seed: int = 0,
    device: str = "auto",
    ckpt_every: int = 500,
    resume: bool = True,
    max_minutes: float | None = None,
    cfg_dropout: float = 0.1,
    data_desc: str = "",
    command: str | None = None,
    log_every: int = 50,
    init_from: str | Path | None = None,
    workers: int | None = None,
) -> dict:
    """Train `family` ('ddpm', 'dcgan' or 'vae') for `steps` optimizer steps; returns the model card.

    `init_from` = a shipped model card (e.g. models/ddpm.json) to continue from when no training checkpoint is at
    hand: its architecture and config are used, its (EMA, fp16) weights start both the model and the EMA, and the
    step count and minutes go on from the card's, so `steps` is the total to reach. The optimizer starts fresh
    (a DCGAN card holds the EMA generator and the last discriminator).

    `workers`: data-loading processes (PNG decoding and augmentation). None: 0 on a CPU (they would take its cores
    from training) and 8 on a GPU, where one process fed the lent H200 only 5.6 steps/s at batch 64."""
    from ..settings import torch_device

    if family not in FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; choose {', '.join(FAMILIES)}")
    if not records:
        raise ValueError("no training images")
    dev = torch_device(device)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or family
    arch = FAMILIES[family]
    init_card = None
    if init_from is not None:
        from ..models.cards import read_card

        init_card = read_card(init_from)
        if init_card.get("architecture") != arch:
            raise ValueError(f"{init_from}: a {init_card.get('architecture')!r} card cannot start a {arch!r} model")
        config = {**init_card.get("config", {}), **(config or {})}
    cfg = make_config(arch, config or {})
    model = create(arch, cfg).to(dev)
    if init_card is not None:
        from ..models.weights import load_weights

        load_weights(model, Path(init_card["_path"]).with_name(init_card["weights"]))  # strict: shapes must match
    amp = dev.type == "cuda"
    if workers is None:
        workers = 8 if dev.type == "cuda" else 0
    _, loader = _loader(records, batch_size, seed, workers=max(0, int(workers)))
    it = _forever(loader)
    ckpt = out_dir / f"{name}.ckpt.pt"
    losses: list[float] = []

    if family == "ddpm":
        from monai.networks.schedulers import DDPMScheduler

        sched = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule)
        opt = torch.optim.AdamW(model.parameters(), lr=lr or 2e-4, weight_decay=0.0)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
        opts = {"opt": opt}
    elif family == "vae":
        opt = torch.optim.Adam(model.parameters(), lr=lr or 3e-4)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
        opts = {"opt": opt}
    else:
        G, D = model.generator, model.discriminator
        opt_g = torch.optim.Adam(G.parameters(), lr=lr or 2e-4, betas=(0.0, 0.99))
        opt_d = torch.optim.Adam(D.parameters(), lr=lr or 2e-4, betas=(0.0, 0.99))
        ema = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        opts = {"opt_g": opt_g, "opt_d": opt_d}

    start, elapsed0 = 0, 0.0
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("config") != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt}: checkpoint config differs from the requested config; use a new --out or --no-resume")
        model.load_state_dict(state["model"], strict=True)
        ema.load_state_dict(state["ema"], strict=True)
        for k, o in opts.items():
            o.load_state_dict(state[k])
            if lr is not None:  # an explicit --lr overrides the resumed optimizer's rate
                for group in o.param_groups:
                    group["lr"] = lr
        start, elapsed0 = int(state["step"]), float(state.get("elapsed", 0.0))
        losses = list(state.get("losses", []))
    elif init_card is not None:
        start, elapsed0 = int(init_card.get("steps", 0)), 60.0 * float(init_card.get("training_minutes", 0.0))

    def save_ckpt(step, elapsed):
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "step": step, "elapsed": elapsed,
                 "config": dataclasses.asdict(cfg), "losses": losses[-2000:]}
        state.update({k: o.state_dict() for k, o in opts.items()})
        tmp = ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt)

    t0 = time.time()
    step = start
    prog, task = _progress(steps, f"train {name}", initial=start)
    with prog:
        while step < steps:
            batch = next(it)
            x = batch["image"].to(dev)
            cls = torch.as_tensor(batch["cls"]).to(dev).long()
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                if family == "ddpm":
                    drop = torch.rand(cls.shape, device=dev) < cfg_dropout
                    cls_in = torch.where(drop, torch.full_like(cls, cfg.num_classes), cls)
                    t = torch.randint(0, cfg.num_train_timesteps, (x.shape[0],), device=dev)
                    noise = torch.randn_like(x)
                    xt = sched.add_noise(x, noise, t)
                    target = ddpm_target(sched, cfg.prediction_type, x, noise, t)
                    loss = torch.nn.functional.mse_loss(model(xt, t, cls_in).float(), target.float())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    ema.update_parameters(model)
                elif family == "vae":
                    loss = vae_loss(model, x, cfg.kl_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    ema.update_parameters(model)
                else:
                    z = torch.randn(x.shape[0], cfg.z_dim, device=dev)
                    fake = G(z, cls)
                    d_loss = torch.relu(1 - D(x, cls)).mean() + torch.relu(1 + D(fake.detach(), cls)).mean()
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()
                    g_loss = -D(fake, cls).mean()
                    opt_g.zero_grad(set_to_none=True)
                    g_loss.backward()
                    opt_g.step()
                    ema.update_parameters(G)
                    loss = g_loss + d_loss
            losses.append(float(loss.detach()))
            step += 1
            elapsed = elapsed0 + time.time() - t0
            if step % log_every == 0 or step == steps:
                recent = losses[-log_every:]
                info = f"loss {sum(recent) / len(recent):.4f}"
                prog.update(task, completed=step, info=info)
                if not prog.console.is_terminal:  # plain log lines when writing to a file
                    prog.console.log(f"{name} step {step}/{steps} {info} {elapsed / 60:.1f} min")
            else:
                prog.update(task, completed=step)
            if step % ckpt_every == 0:
                save_ckpt(step, elapsed)
            if max_minutes is not None and elapsed > max_minutes * 60:
                break
    elapsed = elapsed0 + time.time() - t0
    save_ckpt(step, elapsed)

    extra = {"continued_from": {k: init_card.get(k) for k in ("version", "steps", "training_minutes", "hardware",
                                                              "command")}} if init_card is not None else None
    return _export(family, arch, cfg, model, ema, out_dir, name, records=records, step=step, losses=losses,
                   batch_size=batch_size, ema_decay=ema_decay, cfg_dropout=cfg_dropout, seed=seed,
                   hardware=_hardware(dev), minutes=elapsed / 60, data_desc=data_desc, command=command, extra=extra)


def _export(family, arch, cfg, model, ema, out_dir: Path, name: str, *, records, step, losses, batch_size, ema_decay,
            cfg_dropout, seed, hardware, minutes, data_desc, command, extra: dict | None = None) -> dict:
    """Write the EMA weights (fp16 safetensors) and the model card."""
    export = create(arch, cfg)
    if family in ("ddpm", "vae"):
        export.load_state_dict(ema.module.state_dict(), strict=True)
    else:
        export.load_state_dict(model.state_dict(), strict=True)
        export.generator.load_state_dict(ema.module.state_dict(), strict=True)
        recalibrate_batchnorm(export.generator)
    weights = save_weights(export, out_dir / f"{name}.safetensors", fp16=True)
    n_first = max(1, min(100, len(losses) // 10))
    card = {
        "name": name,
        "family": family,
        "architecture": arch,
        "version": time.strftime("%Y%m%d") + f"-s{step}",
        "config": dataclasses.asdict(cfg),
        "weights": weights.name,
        "dtype": "float16",
        "parameters": sum(p.numel() for p in export.parameters()),
        "data": data_desc or f"{len(records)} images",
        "train_images": len(records),
        "label_prior": label_prior(records),
        "steps": step,
        "batch_size": batch_size,
        "ema_decay": ema_decay,
        "cfg_dropout": cfg_dropout if family == "ddpm" else None,
        "conditional": family != "vae",
        "seed": seed,
        "hardware": hardware,
        "training_minutes": round(minutes, 1),
        "command": command or " ".join(sys.argv),
        "loss_first": round(sum(losses[:n_first]) / n_first, 5) if losses else None,
        "loss_last": round(sum(losses[-n_first:]) / n_first, 5) if losses else None,
        "medfake_version": __version__,
        "metrics": {},
        **(extra or {}),
    }
    write_card(out_dir / f"{name}.json", card)
    return card


@torch.no_grad()
def recalibrate_batchnorm(generator, batches: int = 50, batch_size: int = 64, seed: int = 0) -> None:
    """Recompute BatchNorm running statistics for the EMA generator's averaged weights (the EMA of the running
    statistics does not match the averaged weights; without this, samples come out washed out)."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    generator.train()
    for _ in range(batches):
        z = torch.randn(batch_size, generator.cfg.z_dim, generator=gen)
        cls = torch.randint(0, generator.cfg.num_classes, (batch_size,), generator=gen)
        generator(z, cls)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    generator.eval()


def export_checkpoint(ckpt: str | Path, family: str, records: list[Record], out_dir: str | Path, *, name: str | None = None,
                      ema_decay: float = 0.999, batch_size: int = 0, data_desc: str = "", command: str | None = None,
                      hardware: str | None = None) -> dict:
    """Export a training checkpoint (e.g. of an interrupted run) as shipped weights + model card."""
    ckpt = Path(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    arch = FAMILIES[family]
    cfg = make_config(arch, state["config"])
    model = create(arch, cfg)
    model.load_state_dict(state["model"], strict=True)
    ema = AveragedModel(model.generator if family == "dcgan" else model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                        use_buffers=family == "dcgan")
    ema.load_state_dict(state["ema"], strict=True)
    return _export(family, arch, cfg, model, ema, Path(out_dir), name or family, records=records, step=int(state["step"]),
                   losses=list(state.get("losses", [])), batch_size=batch_size, ema_decay=ema_decay, cfg_dropout=0.1,
                   seed=0, hardware=hardware or _hardware(torch.device("cpu")), minutes=float(state.get("elapsed", 0)) / 60,
                   data_desc=data_desc, command=command)
