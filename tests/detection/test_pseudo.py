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
        region_edit_checks(a, out, mask)


def region_edit_checks(a, out, mask) -> np.ndarray:
    """An on-the-fly edit's contract: 8-bit float32 output of the input's shape, a binary mask of ≥ 16 pixels with a
    visible change inside, the input's pixels far from it (beyond the feather). Returns the mask as bool."""
    from scipy import ndimage

    assert out.shape == mask.shape == a.shape and out.dtype == np.float32
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4) and set(np.unique(mask)) <= {0.0, 1.0}
    inside = mask > 0
    assert inside.sum() >= 16 and np.abs(out - a)[inside].mean() >= MIN_CHANGE - 1e-6
    far = ~ndimage.binary_dilation(inside, iterations=14)
    assert np.abs(out - a)[far].max() <= 1 / 255 + 1e-6
    return inside


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


def test_generated_splice_brings_the_donor_texture_into_the_region_only():
    """generated_splice: inside the mask the donor's texture (tone-matched to the region it replaces), far outside
    the input's pixels; 8-bit output; without a donor a self-blend."""
    from scipy import ndimage

    from medfake.detection.pseudo import generated_splice

    rng = np.random.default_rng(7)
    for k in range(12):
        a = np.round(blobs(np.random.default_rng(k)) * 255) / 255
        noisy = np.clip(0.5 + np.random.default_rng(200 + k).normal(0, 0.2, a.shape), 0, 1)  # a "generator" texture
        out, mask = generated_splice(a, rng, noisy)
        inside = region_edit_checks(a, out, mask)
        # the region's tone is kept (mean within a few grey levels unless clipped), its texture is the donor's
        core = ndimage.binary_erosion(inside, iterations=4)
        if core.sum() >= 16:
            assert abs(out[core].mean() - a[core].mean()) < 0.08
            hf = lambda x: np.abs(x - ndimage.uniform_filter(x, 3))[core].mean()  # noqa: E731
            assert hf(out.astype(np.float64)) > 2 * hf(a)
    out, mask = generated_splice(a, rng, None)
    assert mask.sum() >= 16


def test_training_set_draws_generated_donors_from_the_synthetic_images_of_the_modality():
    rng = np.random.default_rng(8)
    n = 30
    images = np.stack([blobs(rng) for _ in range(n)]).astype(np.float32)
    images[10:20] = 0.5  # the synthetic rows: flat grey, so a spliced region is flat inside
    kind = np.array([0] * 10 + [1] * 10 + [2] * 10)
    data = CachedSet(images, np.zeros_like(images), np.ones(n, bool), kind, np.zeros(n, int))
    on = _TorchSet(data, augment=False, online_p=1.0, seed=9, online_kind="generated")
    made = [on[i] for i in range(20, 30)]
    assert all(s["mask"].sum() >= 16 and s["kind"] == 2 for s in made)
    for s in made:  # a flat donor, tone-matched: the region is (nearly) one grey level
        core = s["mask"][0].numpy() > 0
        assert s["image"][0].numpy()[core].std() < 0.03


def test_sampling_weights_balance_kinds_and_optionally_generators():
    """Kinds are drawn alike whatever the balance; within a kind, balance 0 keeps the data's proportions, 1 draws
    every generator alike, 0.5 in between (shares ∝ √n); the cached set names each row's generator."""
    import pytest

    from medfake.detection.train import sampling_weights

    kind = np.array([0] * 50 + [1] * 40 + [1] * 10 + [2] * 30)
    group = np.array(["real"] * 50 + ["big"] * 40 + ["small"] * 10 + ["cm"] * 30)
    for balance in (0.0, 0.5, 1.0):
        w = sampling_weights(kind, group, balance)
        assert np.allclose([w[kind == k].sum() for k in range(3)], 1.0) and (w > 0).all()
        small = w[90:100].sum()  # the small generator's share of the synthetic draws
        assert np.isclose(small, {0.0: 0.2, 0.5: np.sqrt(10) / (np.sqrt(10) + np.sqrt(40)), 1.0: 0.5}[balance])
        assert np.allclose(w[50:90], w[50]) and np.allclose(w[90:100], w[90])  # alike within a group
    assert np.array_equal(sampling_weights(kind, None, 1.0), sampling_weights(kind, group, 0.0))
    with pytest.raises(ValueError, match="balance"):
        sampling_weights(kind, group, 1.5)


def test_sampling_weights_give_reals_of_other_sources_their_share():
    """other_reals_share: the reals of no known modality (modality −1) get that share of the real draws, the other
    reals the rest, each part as before within itself; fakes are untouched; a set without such reals, or a share
    outside (0, 1), is refused."""
    import pytest

    from medfake.detection.train import sampling_weights

    kind = np.array([0] * 90 + [0] * 10 + [1] * 40 + [2] * 30)
    modality = np.array([0] * 45 + [3] * 45 + [-1] * 10 + [2] * 40 + [-1] * 30)  # a fake's modality is not counted
    plain = sampling_weights(kind, None, 0.0, modality)
    assert np.isclose(plain[90:100].sum(), 0.1)  # as the data come: 10 of 100 reals
    w = sampling_weights(kind, None, 0.0, modality, 0.3)
    assert np.isclose(w[90:100].sum(), 0.3) and np.isclose(w[:90].sum(), 0.7)
    assert np.allclose(w[:90], w[0]) and np.allclose(w[90:100], w[90])
    assert np.allclose(w[100:], plain[100:])  # synthetic and manipulated draws unchanged
    with pytest.raises(ValueError, match="no known modality"):
        sampling_weights(kind, None, 0.0, np.zeros_like(modality), 0.3)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="other_reals_share"):
            sampling_weights(kind, None, 0.0, modality, bad)

def test_cached_rows_carry_their_generator(tiny_dataset):
    from medfake.detection.train import cache_records, load_records

    data = cache_records(load_records(tiny_dataset))
    assert set(data.group[data.kind == 0]) == {"real"} and set(data.group[data.kind > 0]) == {"checker"}


def test_a_modality_without_synthetic_images_gets_self_blends_not_real_splices():
    rng = np.random.default_rng(10)
    n = 20
    images = np.stack([blobs(rng) for _ in range(n)]).astype(np.float32)
    kind = np.array([0] * 8 + [1] * 4 + [2] * 8)
    modality = np.array([0] * 4 + [1] * 4 + [0] * 4 + [1] * 8)  # synthetic images of modality 0 only
    data = CachedSet(images, np.zeros_like(images), np.ones(n, bool), kind, modality)
    on = _TorchSet(data, augment=False, online_p=1.0, seed=11, online_kind="generated")
    assert on.donors.keys() == {0} and len(on.no_donor) == 0
    seen = []  # (the real image's modality, the donor given to the maker)
    make = on.make

    def recording(img, rng, donor):
        row = next(j for j in range(n) if np.array_equal(img, images[j]))
        seen.append((int(modality[row]), donor))
        return make(img, rng, donor)

    on.make = recording
    made = [on._source(i) for i in range(12, 20) for _ in range(6)]
    assert all(m[1].sum() >= 16 and m[2] for m in made)
    assert {m for m, _ in seen} == {0, 1}
    for m, donor in seen:  # modality 0: a synthetic image of it; modality 1: no donor (a self-blend)
        assert (donor is None) if m == 1 else any(np.array_equal(donor, images[j]) for j in range(8, 12))
