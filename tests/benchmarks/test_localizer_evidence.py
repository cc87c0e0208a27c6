"""benchmarks/localizer_evidence.py: its `evidence` gives masks at the localizer's threshold and the mean of the
map's top-64 logits, one per image."""

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from localizer_evidence import degraded, evidence  # noqa: E402

from medfake.detection.localizer import TOP_K, Localizer  # noqa: E402
from medfake.models import create  # noqa: E402


def test_evidence_masks_and_top_k():
    torch.manual_seed(0)
    module = create("localizer-unet", features=(4, 4, 8, 8, 16, 4))
    loc = Localizer(module, {"name": "t", "version": "0", "threshold": 0.5})
    images = np.random.default_rng(0).random((5, 128, 128)).astype(np.float32)
    masks, top = evidence(loc, images, batch=2)
    assert masks.shape == (5, 128, 128) and masks.dtype == bool and top.shape == (5,)
    with torch.no_grad():
        z = module(torch.as_tensor(images[:1])[:, None]).flatten()
    assert np.isclose(top[0], float(z.topk(TOP_K).values.mean()), atol=1e-5)
    assert np.array_equal(masks[0], (torch.sigmoid(z) >= 0.5).numpy().reshape(128, 128))
    # a card with 8 test-time views: the masks are the detectors' (`Localizer.masks`), the evidence the plain view's
    loc8 = Localizer(module, {"name": "t", "version": "0", "threshold": 0.5, "tta_views": 8})
    masks8, top8 = evidence(loc8, images, batch=2)
    np.testing.assert_array_equal(masks8, loc8.masks(torch.as_tensor(images)[:, None]))
    np.testing.assert_allclose(top8, top, atol=1e-6)
    assert not np.array_equal(masks8, masks)
    none, top_only = evidence(loc8, images, batch=2, masks=False)
    assert none is None and np.allclose(top_only, top, atol=1e-6)


def test_degraded_applies_the_robustness_degradations():
    images = np.random.default_rng(1).random((3, 128, 128)).astype(np.float32)
    assert np.array_equal(degraded(images, "clean"), images)
    j = degraded(images, "jpeg75")
    assert j.shape == images.shape and j.dtype == np.float32 and 0 <= j.min() and j.max() <= 1
    assert np.abs(j - images).mean() > 0.01  # JPEG 75 of noise changes it
    r = degraded(images, "resize0.5")
    assert r.std() < images.std()  # halving and bicubic upsampling smooths noise
