"""Pseudo-manipulations for training: exact masks, pixels outside the region unchanged, visible change inside,
8-bit output; the training set swaps them in for manipulated examples at the asked rate."""

from __future__ import annotations

import numpy as np

from medfake.detection.pseudo import MIN_CHANGE, pseudo_manipulation, random_region
from medfake.detection.train import CachedSet, _TorchSet

from .conftest import blobs


def test_region_sizes_and_softness():
    rng = np.random.default_rng(0)
    for _ in range(30):
        r = random_region(rng, 128)
        assert r.shape == (128, 128) and 0 <= r.min() and r.max() <= 1
        frac = (r >= 0.5).mean()
        assert 0.003 < frac < 0.2


def test_pseudo_manipulation_changes_only_the_region():
    rng = np.random.default_rng(1)
    for k in range(20):
        a = np.round(blobs(np.random.default_rng(k)) * 255) / 255
        donor = np.round(blobs(np.random.default_rng(100 + k)) * 255) / 255
        out, mask = pseudo_manipulation(a, rng, donor)
        assert out.shape == mask.shape == a.shape and out.dtype == np.float32
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-4) and set(np.unique(mask)) <= {0.0, 1.0}
        inside = mask > 0
        assert inside.sum() >= 16 and np.abs(out - a)[inside].mean() >= MIN_CHANGE - 1e-6
        # far from the region (beyond the feather), pixels are the input's
        from scipy import ndimage

        far = ~ndimage.binary_dilation(inside, iterations=14)
        assert np.abs(out - a)[far].max() <= 1 / 255 + 1e-6


def test_training_set_swaps_in_pseudo_manipulations_at_the_rate():
    rng = np.random.default_rng(2)
    n = 40
    images = np.stack([blobs(rng) for _ in range(n)]).astype(np.float32)
    kind = np.array([0] * 20 + [2] * 20)
    masks = np.zeros_like(images)
    data = CachedSet(images, masks, np.ones(n, bool), kind, np.array([0, 1] * 20))
    off = _TorchSet(data, augment=False, online_p=0.0)
    on = _TorchSet(data, augment=False, online_p=0.5, seed=3)
    assert all(off[i]["mask"].sum() == 0 for i in range(20, 40))  # the cached manipulated rows have empty masks
    swapped = [on[i] for i in range(20, 40) for _ in range(5)]
    share = np.mean([s["mask"].sum() > 0 for s in swapped])
    assert 0.3 < share < 0.7 and all(s["kind"] == 2 for s in swapped)
    assert all(on[i]["mask"].sum() == 0 for i in range(20))  # reals are never swapped


def test_classical_manipulations_are_the_shipped_methods_with_exact_masks():
    """classical_manipulation: copy-move / splice / retouch of medfake.manipulation inside a builder-style mask;
    every pixel outside the mask is the input's, the inside changes visibly, 8-bit output; no donor → no splice."""
    from medfake.detection.pseudo import classical_manipulation

    rng = np.random.default_rng(4)
    for k in range(12):
        a = (np.round(blobs(np.random.default_rng(k)) * 255) / 255).astype(np.float32)
        donor = (np.round(blobs(np.random.default_rng(50 + k)) * 255) / 255).astype(np.float32) if k % 2 else None
        out, mask = classical_manipulation(a, rng, donor)
        assert out.shape == mask.shape == a.shape and out.dtype == np.float32
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-4) and set(np.unique(mask)) <= {0.0, 1.0}
        inside = mask > 0
        assert inside.sum() >= 16 and np.abs(out - a)[inside].mean() >= MIN_CHANGE - 1e-6
        assert np.array_equal(out[~inside], a[~inside])


def test_training_set_makes_classical_manipulations_when_asked():
    import pytest

    rng = np.random.default_rng(5)
    n = 20
    images = np.stack([blobs(rng) for _ in range(n)]).astype(np.float32)
    kind = np.array([0] * 10 + [2] * 10)
    data = CachedSet(images, np.zeros_like(images), np.ones(n, bool), kind, np.zeros(n, int))
    on = _TorchSet(data, augment=False, online_p=1.0, seed=6, online_kind="classical")
    made = [on[i] for i in range(10, 20)]
    assert all(s["mask"].sum() >= 16 and s["kind"] == 2 for s in made)
    with pytest.raises(ValueError, match="online_kind"):
        _TorchSet(data, augment=False, online_kind="gan")
