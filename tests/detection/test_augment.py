"""Training augmentation: shapes, range, 8-bit output, the resampling kernels; shifted copies for calibration."""

from __future__ import annotations

import numpy as np
import pytest

from medfake.detection.augment import UP_MODES, AugmentConfig, RandOverlayd, RandResizeDownUpd, detector_transforms
from medfake.detection.train import shifted_copies


def _img(seed=0):
    from .conftest import blobs

    return blobs(np.random.default_rng(seed))[None]


@pytest.mark.parametrize("mode", UP_MODES)
def test_resize_down_up_keeps_shape_and_range_and_removes_detail(mode):
    t = RandResizeDownUpd("image", prob=1.0, scale=(0.3, 0.3))
    t.set_random_state(0)
    t.randomize()
    x = _img()
    x[0, ::2] += 0.1  # row stripes: the finest detail, lost when resampled from 38 px
    t.randomize = lambda data=None: None  # keep the chosen kernel for this call
    t._do_transform, t._mode, t._s = True, mode, 0.3
    y = t({"image": x.copy()})["image"]
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    stripe = lambda a: np.abs(np.diff(a[0], axis=0)).mean()  # noqa: E731
    assert stripe(y) < 0.5 * stripe(x)


def test_transforms_output_8bit_values_and_keep_masks_binary():
    t = detector_transforms(True)
    t.set_random_state(seed=3)
    mask = np.zeros((1, 128, 128), np.float32)
    mask[0, 40:80, 30:90] = 1
    for i in range(12):
        out = t({"image": _img(i), "mask": mask.copy()})
        x = out["image"].numpy()
        assert x.shape == (1, 128, 128) and 0 <= x.min() and x.max() <= 1
        assert np.abs(x * 255 - np.round(x * 255)).max() < 1e-4  # quantised as every image at detection time
        assert set(np.unique(out["mask"].numpy())) <= {0.0, 1.0} and out["mask"].sum() == mask.sum()


def test_shifted_copies_are_seeded_and_differ_from_the_originals():
    ims = np.stack([_img(i)[0] for i in range(5)])
    a, b = shifted_copies(ims, 2, seed=1), shifted_copies(ims, 2, seed=1)
    assert a.shape == (10, 128, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.mean([not np.allclose(a[i], ims[i % 5], atol=1 / 255) for i in range(10)]) >= 0.5
    assert shifted_copies(ims, 0).shape == (0, 128, 128)


def test_resample_p_sets_how_often_images_are_resampled_and_blurred():
    """`--resample-p`: at 1.0 every image is resized down and up (finest detail gone), at 0.0 none is."""
    from monai.transforms import RandGaussianSmoothd

    def stripe_loss(p):
        t = detector_transforms(True, AugmentConfig(resample_p=p))
        t.set_random_state(seed=5)
        lost = []
        for i in range(10):
            x = _img(i)
            x[0, ::2] = np.clip(x[0, ::2] + 0.1, 0, 1)
            y = t({"image": x.copy(), "mask": np.zeros_like(x)})["image"].numpy()
            y = y[:, :, ::-1] if np.abs(y - x[:, :, ::-1]).mean() < np.abs(y - x).mean() else y  # undo the flip
            lost.append(np.abs(np.diff(y[0], axis=0)).mean() < 0.6 * np.abs(np.diff(x[0], axis=0)).mean())
        return np.mean(lost)

    assert stripe_loss(1.0) == 1.0 and stripe_loss(0.0) <= 0.2
    probs = {type(t).__name__: t.prob for t in detector_transforms(True, AugmentConfig(resample_p=0.6)).transforms if hasattr(t, "prob")}
    assert probs["RandResizeDownUpd"] == 0.6 and probs[RandGaussianSmoothd.__name__] == pytest.approx(0.24)


def test_lowres_noise_adds_blob_sized_noise_only_when_asked():
    """`--lowres-noise-p`: noise added at the small size of the resize-down-up, so it comes out spatially correlated
    (the look of a natively small, noisy scan upsampled); at 0 a flat image stays flat."""
    from medfake.detection.augment import RandResizeDownUpd

    flat = np.full((1, 128, 128), 0.5, np.float32)
    quiet = RandResizeDownUpd("image", prob=1.0, noise_p=0.0)
    quiet.set_random_state(seed=0)
    assert np.abs(quiet({"image": flat.copy()})["image"] - 0.5).max() < 1e-3
    noisy = RandResizeDownUpd("image", prob=1.0, scale=(0.5, 0.5), noise_p=1.0, noise_std=(0.04, 0.04))
    noisy.set_random_state(seed=0)
    y = noisy({"image": flat.copy()})["image"][0] - 0.5
    assert 0.01 < y.std() < 0.05
    lag1 = np.corrcoef(y[:, :-1].ravel(), y[:, 1:].ravel())[0, 1]
    assert lag1 > 0.4  # upsampled from 64 px: neighbours share their noise (pixel-level white noise would give ≈ 0)
    again = RandResizeDownUpd("image", prob=1.0, scale=(0.5, 0.5), noise_p=1.0, noise_std=(0.04, 0.04))
    again.set_random_state(seed=0)
    np.testing.assert_array_equal(again({"image": flat.copy()})["image"][0] - 0.5, y)
    probs = [t for t in detector_transforms(True, AugmentConfig(resample_p=0.6, lowres_noise_p=0.5)).transforms
             if isinstance(t, RandResizeDownUpd)]
    assert probs[0].noise_p == 0.5


def test_cli_augmentation_defaults_are_the_library_defaults():
    """The CLI keeps its imports light, so it spells the defaults out; they must not drift from augment.py's."""
    import dataclasses

    import typer.main

    from medfake.cli import app

    train = typer.main.get_command(app).commands["train"].commands
    defaults = {p.name: p.default for p in train["detector"].params}
    for f in dataclasses.fields(AugmentConfig):
        assert defaults[f.name] == f.default, f.name
    localizer = {p.name: p.default for p in train["localizer"].params}
    for k in ("jpeg_p", "resample_p"):  # the two knobs a localizer's --augment exposes
        assert localizer[k] == getattr(AugmentConfig, k), k


def test_jpeg_p_sets_how_often_images_are_recompressed():
    """`--jpeg-p`: at 1.0 every image goes through a JPEG round trip (its 8×8 blocks show), at 0.0 none does; the
    default keeps the probability every earlier detector and localizer trained with (0.25)."""
    from medfake.detection.augment import RandJPEGd

    def jpeg(p):
        return [t for t in detector_transforms(True, AugmentConfig(jpeg_p=p)).transforms if isinstance(t, RandJPEGd)]

    assert jpeg(0.25)[0].prob == 0.25 and AugmentConfig().jpeg_p == 0.25
    assert jpeg(0.7)[0].prob == 0.7 and AugmentConfig(jpeg_p=0.7).changed() == {"jpeg_p": 0.7}
    x = _img(3)
    for p, changed in ((1.0, True), (0.0, False)):
        t = RandJPEGd("image", prob=p, quality=(50, 50))
        t.set_random_state(seed=0)
        y = t({"image": x.copy()})["image"]
        assert (np.abs(np.asarray(y) - x).max() > 1e-3) == changed, p


def test_augment_config_checks_ranges_and_reports_changes():
    assert AugmentConfig().changed() == {}
    assert AugmentConfig(overlay_p=0.3, resample_p=0.25).changed() == {"overlay_p": 0.3}
    with pytest.raises(ValueError, match="overlay_p"):
        AugmentConfig(overlay_p=1.5)


def test_overlay_burns_in_annotations_and_leaves_the_mask():
    """`--overlay-p`: captions, calipers, boxes and scale bars drawn into the image (near-white or near-black), the
    mask untouched; seeded; at 0 the transform is not in the pipeline and the other transforms' stream is unchanged."""
    x = np.full((1, 128, 128), 0.4, np.float32)
    mask = np.zeros_like(x)
    mask[0, 40:60, 40:60] = 1
    t = RandOverlayd("image", prob=1.0, max_items=5)
    t.set_random_state(seed=1)
    changed = []
    for _ in range(20):
        out = t({"image": x.copy(), "mask": mask.copy()})
        diff = np.abs(out["image"] - x)[0]
        changed.append((diff > 0.3).mean())
        np.testing.assert_array_equal(out["mask"], mask)
        assert out["image"].shape == x.shape and out["image"].dtype == np.float32
        assert 0 <= out["image"].min() and out["image"].max() <= 1
        ink = out["image"][0][diff > 0]
        assert ((ink >= 0.9 - 1e-6) | (ink <= 0.1 + 1e-6)).all()  # drawn pixels are ink, near-white or near-black
    assert min(changed) > 0 and max(changed) < 0.2  # always something, never a filled image
    t2 = RandOverlayd("image", prob=1.0, max_items=5)
    t2.set_random_state(seed=1)
    t.set_random_state(seed=1)
    np.testing.assert_array_equal(t({"image": x.copy()})["image"], t2({"image": x.copy()})["image"])
    tiny = np.full((1, 20, 24), 0.4, np.float32)
    np.testing.assert_array_equal(t({"image": tiny.copy()})["image"], tiny)  # too small to annotate: unchanged
    names = [type(u).__name__ for u in detector_transforms(True).transforms]
    assert "RandOverlayd" not in names
    with_overlay = detector_transforms(True, AugmentConfig(overlay_p=0.2)).transforms
    assert "RandOverlayd" in [type(u).__name__ for u in with_overlay]
    # overlay_p = 0 keeps the pipeline exactly as before it existed: same outputs for the same seed
    a, b = detector_transforms(True), detector_transforms(True, AugmentConfig(overlay_p=0.0))
    a.set_random_state(seed=3)
    b.set_random_state(seed=3)
    for i in range(5):
        np.testing.assert_array_equal(a({"image": _img(i), "mask": np.zeros((1, 128, 128), np.float32)})["image"],
                                      b({"image": _img(i), "mask": np.zeros((1, 128, 128), np.float32)})["image"])


def test_acquisition_artifacts_as_training_augmentation():
    """`--acquisition-p`: bias field, Gibbs ringing, Rician noise and an intensity curve on the image (never the
    mask), values in [0, 1] and 8-bit like every other training image; seeded; at 0 not in the pipeline."""
    names = [type(u).__name__ for u in detector_transforms(True).transforms]
    assert "Compose" not in names  # nothing nested by default
    t = detector_transforms(True, AugmentConfig(acquisition_p=1.0))
    inner = [u for u in t.transforms if type(u).__name__ == "Compose"]
    assert [type(u).__name__ for u in inner[0].transforms] == [
        "RandBiasFieldd", "RandGibbsNoised", "RandRicianNoised", "RandHistogramShiftd"]
    mask = np.zeros((1, 128, 128), np.float32)
    mask[0, 30:50, 30:50] = 1
    t.set_random_state(seed=5)
    outs = []
    for i in range(4):
        out = t({"image": _img(i), "mask": mask.copy()})
        a = np.asarray(out["image"])
        assert a.shape == (1, 128, 128) and 0 <= a.min() and a.max() <= 1
        np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-3)
        m = np.asarray(out["mask"])
        assert np.array_equal(m, mask) or np.array_equal(m, mask[..., ::-1])  # flipped or not, never altered
        outs.append(a)
    artifacts = inner[0]
    changed = [np.abs(np.asarray(artifacts({"image": _img(i), "mask": mask.copy()})["image"]) - _img(i)).mean()
               for i in range(4)]
    assert min(changed) > 0.005  # every artifact drawn (p = 1): each image changes
    t.set_random_state(seed=5)
    np.testing.assert_array_equal(np.asarray(t({"image": _img(0), "mask": mask.copy()})["image"]), outs[0])
    assert AugmentConfig(acquisition_p=0.3).changed() == {"acquisition_p": 0.3}
