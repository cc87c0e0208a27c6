"""RePaint / RePaint-DDIM on a tiny real DDPM trained 2 steps: determinism, known pixels kept, DICOM in/out."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch

from medfake.data import HEALTHY
from medfake.io import read_image
from medfake.manipulation import (
    ManipulationError, count_model_calls, jump_schedule, make_mask, manipulate, repaint_loop, save_result,
)
from medfake.synthesis import load_generator

from .conftest import native_pixels


def test_jump_schedule_matches_repaint():
    ts = jump_schedule(10, 2, 2)
    assert ts[0] == 9 and ts[-1] == -1
    assert all(abs(a - b) == 1 for a, b in zip(ts[:-1], ts[1:]))
    assert ts[:7] == [9, 8, 7, 6, 7, 8, 7]  # jump back 2 levels once at level 6
    assert jump_schedule(5, 10, 1) == [4, 3, 2, 1, 0, -1]  # no resampling
    assert count_model_calls(250, 10, 10) == 2410  # the paper's setting: ~10× the steps
    assert count_model_calls(50, 5, 2) == 95
    with pytest.raises(ValueError):
        jump_schedule(0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_repaint_loop_keeps_known_pixels_exactly(tiny_ddpm_dir, sampler):
    gen = load_generator("ddpm", tiny_ddpm_dir)
    known = torch.rand(1, 1, 128, 128) * 2 - 1
    keep = torch.ones_like(known)
    keep[..., 40:80, 50:90] = 0
    g = torch.Generator().manual_seed(0)
    x = repaint_loop(gen.module, known, keep, torch.tensor([0]), sampler=sampler, steps=8, jump_length=2,
                     jump_n_sample=2, generator=g)
    assert x.shape == known.shape and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[keep == 1], known[keep == 1])
    assert not torch.allclose(x[keep == 0], known[keep == 0])


def test_repaint_ddim_deterministic_with_seed(inputs, tiny_ddpm_dir):
    img = read_image(inputs["png8"])
    mask = make_mask(img.shape, ellipse=(64, 64, 20, 14))
    kw = dict(label="glioma", modality="brain_mri", models_dir=tiny_ddpm_dir, steps=6, jump_length=2,
              jump_n_sample=2)
    a = manipulate(img, mask, "repaint-ddim", seed=11, **kw)
    b = manipulate(img, mask, "repaint-ddim", seed=11, **kw)
    c = manipulate(img, mask, "repaint-ddim", seed=12, **kw)
    assert np.array_equal(a.stored, b.stored)
    assert not np.array_equal(a.stored, c.stored)
    before = native_pixels(inputs["png8"])
    assert np.array_equal(a.stored[~a.mask], before[~a.mask])
    rec = a.record
    assert rec["method"] == "repaint-ddim" and rec["operation"] == "inject" and rec["label"] == "glioma"
    assert rec["model"] == "ddpm" and rec["model_version"].startswith("ddpm-")
    assert rec["params"]["model_calls"] == count_model_calls(6, 2, 2)


def test_repaint_ddpm_removal_on_dicom(inputs, tiny_ddpm_dir, tmp_path):
    img = read_image(inputs["mr"])  # 64×64 int16 MR
    mask = make_mask(img.shape, rect=(20, 20, 40, 36), feather=2)
    res = manipulate(img, mask, "repaint", label=HEALTHY["brain_mri"], modality="brain_mri", seed=1,
                     models_dir=tiny_ddpm_dir, steps=5, jump_length=2, jump_n_sample=2)
    assert res.record["operation"] == "remove"
    files = save_result(res, tmp_path, "mr")
    ds = pydicom.dcmread(files["image"])
    before = pydicom.dcmread(inputs["mr"]).pixel_array
    assert ds.pixel_array.dtype == before.dtype and ds.pixel_array.shape == before.shape
    assert np.array_equal(ds.pixel_array[~res.mask], before[~res.mask])
    assert "repaint" in ds.DerivationDescription and "MANIPULATED" in ds.DerivationDescription
    assert "model=ddpm-" in ds.DerivationDescription


def test_diffusion_input_errors(inputs, tiny_ddpm_dir):
    img = read_image(inputs["png8"])
    mask = make_mask(img.shape, rect=(10, 10, 30, 30))
    with pytest.raises(ManipulationError, match="modality is unknown"):
        manipulate(img, mask, "repaint-ddim", label="glioma", models_dir=tiny_ddpm_dir)
    with pytest.raises(ValueError, match="unknown label 'COVID' for brain_mri; choose one of: glioma"):
        manipulate(img, mask, "repaint-ddim", label="COVID", modality="brain_mri", models_dir=tiny_ddpm_dir)
    with pytest.raises(ManipulationError, match="needs a target label"):
        manipulate(img, mask, "repaint", modality="brain_mri", models_dir=tiny_ddpm_dir)
    with pytest.raises(ManipulationError, match="steps must be"):
        manipulate(img, mask, "repaint", label="glioma", modality="brain_mri", models_dir=tiny_ddpm_dir, steps=2000)


class _Oracle(torch.nn.Module):
    """A denoiser that knows the clean image: ε = (x − √ᾱ_t x0) / √(1 − ᾱ_t) under the model's own schedule."""

    def __init__(self, x0, cfg):
        super().__init__()
        from monai.networks.schedulers import DDPMScheduler

        self.cfg = cfg
        self.x0 = x0
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.acp = DDPMScheduler(cfg.num_train_timesteps, schedule=cfg.schedule).alphas_cumprod
        self.null_class = 0

    def forward(self, x, t, cls):
        a = self.acp[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("sampler, steps", [("ddpm", 20), ("ddpm", 1000), ("ddim", 10)])
def test_repaint_loop_with_an_oracle_denoiser_recovers_the_image(sampler, steps):
    from medfake.models.generators import DDPMConfig

    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 16, 16, generator=g) * 1.6 - 0.8
    keep = torch.ones_like(x0)
    keep[..., 4:12, 4:12] = 0
    known = torch.where(keep == 1, x0, torch.zeros_like(x0))  # the hole holds no information
    model = _Oracle(x0, DDPMConfig())
    x = repaint_loop(model, known, keep, torch.tensor([0]), sampler=sampler, steps=steps, jump_length=3,
                     jump_n_sample=2, generator=g)
    assert torch.allclose(x, x0, atol=1e-3)  # float32 round-off over 1000 steps
