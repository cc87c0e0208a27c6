"""RePaint (Lugmayr et al., CVPR 2022) on the class-conditional DDPM: the re-noise / merge / resample loop.

At every reverse step the known pixels are re-noised to the current noise level with the forward process
q(x_t | x_0) and merged with the model's sample for the unknown region; every ``jump_length`` steps the chain
jumps back ``jump_length`` steps by re-applying the forward transition q(x_{t+j} | x_t) and denoises again,
``jump_n_sample`` times in all ("resampling"), which lets the generated region harmonise with the known one.

The chain runs on ``steps`` levels with timesteps τ_i = i · (T // steps), i = 0 … steps−1 (T = the model's
num_train_timesteps). Reverse steps use MONAI's schedulers with the noise schedule of the model's config:

* ``sampler="ddpm"`` (RePaint proper): ancestral DDPM. With ``steps == T`` this is ``DDPMScheduler.step``;
  with fewer steps it is the DDPM posterior of the respaced chain, which equals ``DDIMScheduler.step`` with
  η = 1 (Song et al. 2021, eq. 16) — MONAI's ``DDPMScheduler.step`` assumes consecutive timesteps, so it is
  only used when no respacing is needed.
* ``sampler="ddim"`` (the fast variant, "repaint-ddim"): ``DDIMScheduler.step`` with the given η
  (``repaint_ddim`` passes 1 by default: the weakest seam in benchmarks/manipulation_seams.py).

Everything random is drawn from one ``torch.Generator``, so a seed fixes the result.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..synthesis.samplers import guided_eps


def jump_schedule(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """RePaint's time-travel schedule over levels steps−1 … −1 (−1 = the clean image).

    Consecutive pairs (a, b): b < a is a reverse (denoising) step from level a, b > a a forward (re-noising)
    step. ``jump_n_sample = 1`` is plain inpainting without resampling. Same construction as the authors'
    ``get_schedule_jump`` (github.com/andreas128/RePaint, scheduler.py)."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError(f"jump_length and jump_n_sample must be ≥ 1, got {jump_length}, {jump_n_sample}")
    jumps = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    t = steps
    ts: list[int] = []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                ts.append(t)
    ts.append(-1)
    return ts


def count_model_calls(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> int:
    ts = jump_schedule(steps, jump_length, jump_n_sample)
    return sum(1 for a, b in zip(ts[:-1], ts[1:]) if b < a)


def _schedulers(cfg, sampler: str, steps: int):
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    T = int(cfg.num_train_timesteps)
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}] for this model, got {steps}")
    kw = dict(num_train_timesteps=T, schedule=cfg.schedule, clip_sample=True,
              prediction_type=cfg.prediction_type)
    ddim = DDIMScheduler(**kw)
    ddim.set_timesteps(steps)  # step() then moves τ → τ − T // steps, matching our levels
    ddpm = None
    if sampler == "ddpm" and T // steps == 1:
        ddpm = DDPMScheduler(**kw)
        ddpm.set_timesteps(T)
    return ddim, ddpm, T // steps


@torch.no_grad()
def repaint_loop(
    model,
    known: torch.Tensor,
    keep: torch.Tensor,
    cls: torch.Tensor,
    *,
    sampler: str = "ddpm",
    steps: int = 250,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Inpaint: returns x_0 (N, 1, S, S) in [-1, 1] equal to `known` where `keep` is 1.

    model: a DDPMDenoiser (ε- or v-prediction, `model(x, t, cls)`, `.cfg` with num_train_timesteps/schedule/
    prediction_type);
    known: (N, 1, S, S) in [-1, 1]; keep: same shape, 1 = known pixel, 0 = to generate; cls: (N,) class indices."""
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r}; choose ddpm or ddim")
    if known.shape != keep.shape or known.ndim != 4:
        raise ValueError(f"known and keep must both be (N, 1, H, W); got {tuple(known.shape)}, {tuple(keep.shape)}")
    device = next(model.parameters()).device
    ddim, ddpm, ratio = _schedulers(model.cfg, sampler, steps)
    acp = ddim.alphas_cumprod.to(torch.float64)

    def abar(level: int) -> torch.Tensor:
        return acp[level * ratio] if level >= 0 else torch.tensor(1.0, dtype=torch.float64)

    def randn():
        g_dev = generator.device if generator is not None else device
        return torch.randn(known.shape, generator=generator, dtype=torch.float32, device=g_dev).to(device)

    x0 = known.to(device, torch.float32)
    keep = keep.to(device, torch.float32)
    cls = cls.to(device)
    ts = jump_schedule(steps, jump_length, jump_n_sample)
    total = sum(1 for a, b in zip(ts[:-1], ts[1:]) if b < a)
    done = 0
    x = randn()
    for a, b in zip(ts[:-1], ts[1:]):
        if b < a:  # reverse step from level a: merge the re-noised known pixels, then denoise
            ab = abar(a)
            known_t = ab.sqrt().float() * x0 + (1 - ab).sqrt().float() * randn()
            x = keep * known_t + (1 - keep) * x
            tau = a * ratio
            eps = guided_eps(model, x, tau, cls, guidance)
            if ddpm is not None:
                x, _ = ddpm.step(eps, tau, x, generator=generator)
            else:
                x, _ = ddim.step(eps, tau, x, eta=1.0 if sampler == "ddpm" else eta, generator=generator)
            x = x.to(device)
            done += 1
            if progress:
                progress(done, total)
        else:  # forward jump a → b = a + 1: x_b ~ q(x_b | x_a)
            r = (abar(b) / abar(a)).clamp(max=1.0)
            x = r.sqrt().float() * x + (1 - r).sqrt().float() * randn()
    x = keep * x0 + (1 - keep) * x
    return x.clamp(-1, 1)
