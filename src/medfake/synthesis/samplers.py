"""DDPM / DDIM sampling with MONAI's schedulers and classifier-free guidance."""

from __future__ import annotations

from typing import Callable

import torch

from ..models.generators import DDPMDenoiser


def make_scheduler(model: DDPMDenoiser, sampler: str, steps: int | None = None):
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    cfg = model.cfg
    kw = dict(num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule, clip_sample=True,
              prediction_type=cfg.prediction_type)
    if sampler == "ddpm" and (steps or cfg.num_train_timesteps) >= cfg.num_train_timesteps:
        s = DDPMScheduler(**kw)
        s.set_timesteps(cfg.num_train_timesteps)
    elif sampler == "ddpm":
        # MONAI's DDPMScheduler.step always goes t → t−1, so a respaced ancestral chain uses DDIM's update with
        # eta = 1, which is the ancestral (DDPM) posterior on the respaced timesteps (Song et al. 2021, §4.1).
        s = DDIMScheduler(**kw)
        s.set_timesteps(steps)
    elif sampler == "ddim":
        s = DDIMScheduler(**kw)
        s.set_timesteps(steps or 50)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose ddpm or ddim")
    return s


def guided_eps(model: DDPMDenoiser, x: torch.Tensor, t: torch.Tensor | int, cls: torch.Tensor, guidance: float) -> torch.Tensor:
    """The model's output (ε, or v for a v-prediction model) with classifier-free guidance: ε_u + w (ε_c − ε_u);
    w = 1 is plain conditional, w = 0 unconditional. The guidance is linear, so it is the same for v."""
    n = x.shape[0]
    if not torch.is_tensor(t) or t.ndim == 0:
        t = torch.full((n,), int(t), device=x.device, dtype=torch.long)
    if guidance == 1.0:
        return model(x, t, cls)
    null = torch.full_like(cls, model.null_class)
    if guidance == 0.0:
        return model(x, t, null)
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cls, null]))
    e_c, e_u = eps.chunk(2)
    return e_u + guidance * (e_c - e_u)


@torch.no_grad()
def sample_ddpm_model(
    model: DDPMDenoiser,
    cls: torch.Tensor,
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Samples in [-1, 1], shape (N, 1, S, S), for class indices `cls` (N,)."""
    from monai.networks.schedulers import DDIMScheduler

    device = next(model.parameters()).device
    size = model.cfg.image_size
    sched = make_scheduler(model, sampler, steps)
    x = torch.randn((cls.shape[0], 1, size, size), generator=generator, device="cpu").to(device)
    cls = cls.to(device)
    # MONAI's schedulers draw each step's noise on the model output's device with the generator given, which must
    # live there too: on a GPU, a generator for it is seeded from the CPU one (so a seed still fixes the samples)
    step_gen = generator
    if generator is not None and generator.device != x.device:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        step_gen = torch.Generator(device=x.device).manual_seed(seed)
    timesteps = list(sched.timesteps)
    for i, t in enumerate(timesteps):
        eps = guided_eps(model, x, int(t), cls, guidance)
        if isinstance(sched, DDIMScheduler):
            x, _ = sched.step(eps, int(t), x, eta=eta if sampler == "ddim" else 1.0, generator=step_gen)
        else:
            x, _ = sched.step(eps, int(t), x, generator=step_gen)
        if progress:
            progress(i + 1, len(timesteps))
    return x.clamp(-1, 1)
