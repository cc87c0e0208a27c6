"""Every detector architecture trains on the tiny generated set and its loss drops; strict loading; SupCon."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medfake.data.manifest import read_manifest
from medfake.detection import load_detector, train_detector
from medfake.detection.augment import AugmentConfig
from medfake.detection.train import cache_records, run_model
from medfake.detection.losses import SegLoss, supcon_loss
from medfake.io.errors import MedfakeError
from medfake.models import WeightsMismatchError, create, load_model, save_weights
from medfake.models.detectors import SRMFilter, count_parameters

from .conftest import TINY


@pytest.mark.parametrize("arch,steps,supcon", [("resnet18-12", 30, 0), ("effnet-attn", 16, 0), ("spatial-cnn", 30, 0),
                                                ("manip-supcon", 30, 10)])
def test_architecture_trains_and_loss_drops(arch, steps, supcon, tiny_dataset, tmp_path):
    card = train_detector(arch, tiny_dataset, tmp_path, config=TINY[arch], steps=steps, supcon_steps=supcon,
                          batch_size=8, lr=3e-3, device="cpu", seed=1, bank_size=24)
    curve = card["loss_curve"]
    if arch == "manip-supcon":
        # its total loss is mostly the modality term, which the tiny set's modality labels (i % 6, not in the
        # pixels) make unlearnable noise; the manipulation head it exists for must beat a fresh network's
        trained, _ = load_model(arch, tmp_path)
        torch.manual_seed(1)
        fresh = create(arch, **TINY[arch])
        data = cache_records(read_manifest(tiny_dataset))
        target = torch.as_tensor(data.kind == 2).float()
        bce = [F.binary_cross_entropy_with_logits(torch.as_tensor(run_model(m, data.images, "cpu")["manip"]),
                                                  target).item() for m in (trained, fresh)]
        assert bce[0] < bce[1] - 0.03, bce
    else:
        assert np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    assert card["kind"] == "detector" and card["architecture"] == arch
    assert (tmp_path / f"{arch}.safetensors").exists() and (tmp_path / f"{arch}.json").exists()
    for key in ("temperature", "thresholds", "metrics", "data", "steps", "command", "hardware", "minutes", "version"):
        assert key in card
    if arch == "manip-supcon":
        assert card["supcon_steps"] == supcon and len(card["supcon_loss_curve"]) == 5
        assert card["thresholds"]["synthetic"] is None and 0 < card["thresholds"]["manipulated"] <= 1
    if arch == "resnet18-12":
        assert card["thresholds"]["manipulated"] is None
    # the exported model loads back strictly and predicts probabilities in [0, 1]
    det = load_detector(arch, tmp_path)
    from medfake.io.image import Image

    preds = det.predict([Image(np.random.default_rng(0).random((128, 128)).astype(np.float32))])
    assert 0 <= preds[0].p_synthetic <= 1 and 0 <= preds[0].p_manipulated <= 1


def test_dual_srm_trained_default_loss_dropped(tiny_models_dir):
    card = json.loads((tiny_models_dir / "tiny-dual.json").read_text())
    curve = card["loss_curve"]
    assert np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    assert card["metrics"]["synthetic"]["auc"] > 0.8  # the checkerboard is easy for the SRM stream


def test_dual_srm_default_size_and_srm_is_fixed():
    m = create("dual-srm")
    n = count_parameters(m)
    assert 0.5e6 <= n <= 1.5e6, n
    srm = [mod for mod in m.modules() if isinstance(mod, SRMFilter)][0]
    assert "weight" in dict(srm.named_buffers()) and not list(srm.parameters())
    out = m.eval()(torch.rand(2, 1, 128, 128))
    assert out["seg"].shape == (2, 1, 128, 128) and out["modality"].shape == (2, 6)
    # SRM residuals of a constant image are zero (high-pass), of a checkerboard are not
    assert srm(torch.full((1, 1, 32, 32), 0.5))[..., 4:-4, 4:-4].abs().max() < 1e-4
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert srm(((x + y) % 2).float()[None, None] * 0.1).abs().max() > 0.5


def test_strict_loading_refuses_mismatched_checkpoint(tiny_models_dir, tmp_path):
    card = json.loads((tiny_models_dir / "tiny-dual.json").read_text())
    other = create("dual-srm", stem=4, widths=(8, 16, 32), seg_channels=4)  # a different width
    save_weights(other, tmp_path / "bad.safetensors")
    card.update(name="bad", weights="bad.safetensors")
    (tmp_path / "bad.json").write_text(json.dumps(card))
    with pytest.raises(WeightsMismatchError, match="does not match"):
        load_model("bad", tmp_path)
    with pytest.raises(WeightsMismatchError):
        load_detector("bad", tmp_path)


def test_unknown_detector_name_is_one_clear_error(tiny_models_dir, tmp_path):
    with pytest.raises(MedfakeError, match="unknown model"):
        load_detector("nope", tiny_models_dir)
    with pytest.raises(MedfakeError, match="detector-default"):
        load_detector("default", tmp_path)


def test_train_rejects_bad_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,modality,label,split,kind\nx.png,brain_mri,,train,weird\n")
    with pytest.raises(MedfakeError, match="kind"):
        train_detector("dual-srm", tmp_path / "m.csv", tmp_path / "out", steps=1)
    assert not (tmp_path / "out" / "dual-srm.safetensors").exists()


def test_supcon_loss_prefers_label_clusters():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.nn.functional.normalize(torch.randn(3, 16), dim=1)
    clustered = torch.nn.functional.normalize(centres[labels][:, None].repeat(1, 2, 1)
                                              + 0.01 * torch.randn(6, 2, 16), dim=2)
    random = torch.nn.functional.normalize(torch.randn(6, 2, 16), dim=2)
    assert supcon_loss(clustered, labels) < supcon_loss(random, labels)
    # gradients flow
    f = random.clone().requires_grad_(True)
    supcon_loss(f, labels).backward()
    assert f.grad.abs().sum() > 0


def test_seg_loss_ignores_weight_zero_and_rewards_overlap():
    loss = SegLoss()
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    good = (target * 2 - 1) * 8
    bad = -good
    w = torch.tensor([1.0, 1.0])
    assert loss(good, target, w) < loss(bad, target, w)
    assert loss(bad, target, torch.zeros(2)) == 0


def test_manipulation_head_reads_the_segmentation_map():
    from medfake.models.detectors import seg_evidence

    torch.manual_seed(0)
    m = create("dual-srm", stem=4, widths=(8, 16, 16), seg_channels=4).eval()
    assert m.head_manip.in_features == 16 + 2
    x = torch.rand(2, 1, 128, 128)
    out = m(x)
    out["manip"].sum().backward()  # image-level manipulation loss reaches the segmentation decoder
    assert m.seg_out[-1].weight.grad is not None and m.seg_out[-1].weight.grad.abs().sum() > 0
    # a map that is hot on 2% of the pixels has top-1% evidence at its hot value, mean evidence near the base
    seg = torch.full((1, 1, 128, 128), -4.0)
    seg[..., :2, :] = 8.0  # 256 of 16,384 pixels
    ev = seg_evidence(seg)[0] * 4
    assert torch.isclose(ev[0], torch.tensor(8.0)) and -4.0 < ev[1] < -3.5
    off = create("dual-srm", stem=4, widths=(8, 16, 16), seg_channels=4, manip_from_seg=False)
    assert off.head_manip.in_features == 16


def test_calibration_pool_includes_shifted_reals(tiny_models_dir):
    card = json.loads((tiny_models_dir / "tiny-dual.json").read_text())
    m = card["metrics"]
    assert "shifted copies" in m["calibration_real_pool"]
    for key in ("shifted_real_called_fake", "shifted_real_called_not_real"):
        assert 0.0 <= m[key] <= 1.0


def test_fine_tune_starts_from_the_given_weights(tiny_models_dir, tiny_dataset, tmp_path):
    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="ft", config=T["dual-srm"], steps=1, lr=1e-9,
                          batch_size=8, device="cpu", bank_size=24, init_from=base, calibration_shifts=0,
                          online_manipulations=0.5, augment=AugmentConfig(overlay_p=0.5, resample_p=0.6))
    assert card["init_from"]["name"] == "tiny-dual" and card["init_from"]["steps"] == 40
    # the card records the augmentation knobs that differ from the defaults, as top-level keys
    assert card["overlay_p"] == 0.5 and card["resample_p"] == 0.6 and "lowres_noise_p" not in card
    assert card["total_steps"] == 41 and card["version"].endswith("-s41")  # never the base's version again
    assert card["online_manipulations"] == 0.5
    a, _ = load_model(base)
    b, _ = load_model(tmp_path / "ft.json")
    for (k, va), vb in zip(a.named_parameters(), b.parameters()):  # one step at lr 1e-9: the same weights
        assert torch.allclose(va.float(), vb.float(), atol=1e-3), k
    fresh = create("dual-srm", **T["dual-srm"])
    assert not all(torch.allclose(p.float(), q.float(), atol=1e-3) for p, q in zip(fresh.parameters(), b.parameters()))
    with pytest.raises(MedfakeError, match="same architecture and config"):
        train_detector("dual-srm", tiny_dataset, tmp_path / "x", config={**T["dual-srm"], "seg_channels": 8},
                       steps=1, batch_size=8, device="cpu", init_from=base)


def test_other_reals_share_trains_and_is_recorded(tiny_models_dir, tiny_dataset, tmp_path):
    """Reals of another source (modality `other`, as benchmarks/train_reals_fetch.py writes them) drawn at a chosen
    share: the fine-tune runs and the card says so; a training split without such reals is a clear error."""
    import csv

    from .conftest import TINY as T

    rows = list(csv.DictReader(open(tiny_dataset, newline="")))
    train_reals = [r for r in rows if r["kind"] == "real" and r["split"] == "train"]
    for r in train_reals[:3]:
        r["modality"] = "other"
    for r in rows:  # the copy lives elsewhere: its paths absolute
        r.update({k: str((tiny_dataset.parent / r[k]).resolve()) for k in ("path", "mask") if r[k]})
    data = tmp_path / "with_other.csv"
    with open(data, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    card = train_detector("dual-srm", data, tmp_path / "o", name="or", config=T["dual-srm"], steps=2, batch_size=8,
                          device="cpu", bank_size=24, init_from=tiny_models_dir / "tiny-dual.json",
                          calibration_shifts=0, other_reals_share=0.4)
    assert card["other_reals_share"] == 0.4 and card["steps"] == 2 and np.isfinite(card["loss_last"])
    for bad, msg in (({"other_reals_share": 1.0}, "in \\(0, 1\\)"), ({"other_reals_share": 0.4}, "another source")):
        with pytest.raises(MedfakeError, match=msg):
            train_detector("dual-srm", tiny_dataset, tmp_path / "x", config=T["dual-srm"], steps=1, batch_size=8,
                           device="cpu", **bad)


def test_generated_splices_and_generator_balance_train_and_are_recorded(tiny_models_dir, tiny_dataset, tmp_path):
    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="gb", config=T["dual-srm"], steps=3,
                          batch_size=8, device="cpu", bank_size=24, init_from=base, calibration_shifts=0,
                          online_manipulations=0.5, online_kind="generated", generator_balance=0.5)
    assert card["online_kind"] == "generated" and card["generator_balance"] == 0.5 and card["steps"] == 3
    assert np.isfinite(card["loss_last"])
    for bad in ({"generator_balance": 1.5}, {"online_kind": "gan", "online_manipulations": 0.5}):
        with pytest.raises(MedfakeError, match="generator_balance|online_kind"):
            train_detector("dual-srm", tiny_dataset, tmp_path / "x", config=T["dual-srm"], steps=1, batch_size=8,
                           device="cpu", **bad)


def test_zero_steps_recalibrates_the_given_weights(tiny_models_dir, tiny_dataset, tmp_path):
    """--steps 0 --init-from CARD: the same weights, new calibration (and the copy-move section), a version that
    says so."""
    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="recal", config=T["dual-srm"], steps=0,
                          batch_size=12, device="cpu", bank_size=30, init_from=base)  # the fixture's settings
    assert card["steps"] == 0 and card["total_steps"] == 40 and re.search(r"-s40-recal-[0-9a-f]{8}$", card["version"])
    assert card["loss_first"] is None and card["loss_last"] is None
    old = json.loads(base.read_text())
    assert card["thresholds"] == old["thresholds"] and card["temperature"] == old["temperature"]  # same calibration
    assert card["copy_move"]["thresholds"]["manipulated"] is not None
    a, _ = load_model(base)
    b, _ = load_model(tmp_path / "recal.json")
    for va, vb in zip(a.parameters(), b.parameters()):
        assert torch.equal(va, vb)


def test_anchor_keeps_real_scores_near_the_base(tiny_models_dir, tiny_dataset, tmp_path):
    """--anchor: the fine-tune learns as before, but the real images' synthetic/manipulated logits rise less above
    the base weights' than in the same fine-tune without it; the penalty is the mean squared rise (one-sided), and
    the frozen copy reproduces the training model's outputs, dropout included."""
    from medfake.detection.train import _anchor_reference, _frozen_copy, _rng_state, anchor_loss

    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    data = cache_records(read_manifest(tiny_dataset))
    real = data.images[data.kind == 0]

    def drift(card_dir, name):
        a, _ = load_model(base)
        b, _ = load_model(card_dir / f"{name}.json")
        ra, rb = run_model(a, real, "cpu"), run_model(b, real, "cpu")
        return float(sum(np.mean(np.maximum(rb[k] - ra[k], 0) ** 2) for k in ("syn", "manip")))

    kw = dict(config=T["dual-srm"], steps=12, lr=1e-2, batch_size=12, device="cpu", bank_size=24, init_from=base,
              calibration_shifts=0, copy_move_cue=False, seed=3)
    free = train_detector("dual-srm", tiny_dataset, tmp_path / "free", name="ft", **kw)
    held = train_detector("dual-srm", tiny_dataset, tmp_path / "held", name="ft", anchor=20.0, **kw)
    assert held["anchor"] == 20.0 and "anchor" not in free
    d_free, d_held = drift(tmp_path / "free", "ft"), drift(tmp_path / "held", "ft")
    assert d_held < 0.5 * d_free, (d_held, d_free)

    out = {"syn": torch.tensor([1.0, 2.0, 3.0]), "manip": torch.tensor([0.0, 0.0, 1.0]), "emb": torch.zeros(3, 2)}
    ref = {"syn": torch.tensor([0.0, 2.0, 0.0]), "manip": torch.tensor([2.0, 0.0, 0.0]), "emb": torch.zeros(3, 2)}
    heads = {"synthetic": True, "manipulated": True}
    assert anchor_loss(out, ref, torch.tensor([True, True, False]), heads).item() == pytest.approx(0.5)
    assert anchor_loss(out, ref, torch.tensor([False, False, False]), heads).item() == 0.0
    with pytest.raises(MedfakeError, match="only for a fine-tune"):
        train_detector("dual-srm", tiny_dataset, tmp_path / "x", config=T["dual-srm"], steps=1, batch_size=8,
                       device="cpu", anchor=1.0)

    model = create("dual-srm", **{**T["dual-srm"], "dropout": 0.5}).train()
    teacher = _frozen_copy(model)
    x = torch.as_tensor(real[:6, None])
    state = _rng_state(torch.device("cpu"))
    a = model(x)
    after = torch.get_rng_state()
    b = _anchor_reference(teacher, x, state)
    assert torch.equal(torch.get_rng_state(), after)  # the training stream is left where it was
    assert torch.equal(a["syn"], b["syn"]) and torch.equal(a["manip"], b["manip"])
    c = model(x)  # the next draw: other dropout masks
    assert not torch.equal(a["syn"], c["syn"])


def test_interpolate_blends_a_fine_tune_with_its_base(tiny_models_dir, tiny_dataset, tmp_path):
    """--steps 0 --init-from BASE --interpolate FT --interpolate-weight w: the calibrated blend
    (1 − w)·BASE + w·FT (WiSE-FT); the card names both parents and the version says it is a blend."""
    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    kw = dict(config=T["dual-srm"], batch_size=12, device="cpu", bank_size=24, calibration_shifts=0,
              copy_move_cue=False)
    ft = train_detector("dual-srm", tiny_dataset, tmp_path / "ft", name="ft", steps=6, lr=1e-2, init_from=base,
                        seed=3, **kw)
    blend = train_detector("dual-srm", tiny_dataset, tmp_path / "mix", name="mix", steps=0, init_from=base,
                           interpolate=tmp_path / "ft" / "ft.json", interpolate_weight=0.25, **kw)
    assert blend["interpolated"] == {"name": "ft", "version": ft["version"], "total_steps": 46, "weight": 0.25}
    assert blend["total_steps"] == 46 and re.search(r"-s46-wise0\.25-recal-[0-9a-f]{8}$", blend["version"])
    a, _ = load_model(base)
    b, _ = load_model(tmp_path / "ft" / "ft.json")
    m, _ = load_model(tmp_path / "mix" / "mix.json")
    sa, sb, sm = a.state_dict(), b.state_dict(), m.state_dict()
    changed = 0
    for k, t in sm.items():
        if t.is_floating_point():
            want = (0.75 * sa[k].float() + 0.25 * sb[k].float()).half().float()
            assert torch.allclose(t.float(), want, atol=2e-3, rtol=1e-3), k
            changed += int(not torch.equal(sa[k], sb[k]))
    assert changed > 10  # the fine-tune moved the weights, so the blend is not one of its parents
    with pytest.raises(MedfakeError, match="needs --init-from and --steps 0"):
        train_detector("dual-srm", tiny_dataset, tmp_path / "x", name="x", steps=1, init_from=base,
                       interpolate=tmp_path / "ft" / "ft.json", **kw)
    other = json.loads((tmp_path / "ft" / "ft.json").read_text())
    other["config"]["seg_channels"] += 4
    (tmp_path / "ft" / "wider.json").write_text(json.dumps(other))
    with pytest.raises(MedfakeError, match="--interpolate .* another config"):
        train_detector("dual-srm", tiny_dataset, tmp_path / "y", name="y", steps=0, init_from=base,
                       interpolate=tmp_path / "ft" / "wider.json", **kw)


def test_train_only_fine_tunes_the_named_parts_and_freezes_the_rest(tiny_models_dir, tiny_dataset, tmp_path):
    """--train-only seg_,head_manip: those parameters move; every other weight and batch-norm statistic is the
    base's, so the synthetic head's logits on any image are exactly the base's; bad prefixes are refused."""
    from medfake.detection.train import freeze_except

    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    kw = dict(config=T["dual-srm"], batch_size=12, device="cpu", bank_size=24, calibration_shifts=0,
              copy_move_cue=False, init_from=base)
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="seg", steps=6, lr=1e-2, seed=3,
                          train_only=("seg_", "head_manip"), **kw)
    a, _ = load_model(base)
    b, _ = load_model(tmp_path / "seg.json")
    sa, sb = a.state_dict(), b.state_dict()
    moved = {k for k in sa if not torch.equal(sa[k], sb[k])}
    assert moved and all(k.startswith(("seg_", "head_manip")) for k in moved), sorted(moved)
    assert any(k.startswith("seg_") and "running_mean" in k for k in moved)  # the trained part's BN did adapt
    n_train = sum(p.numel() for n, p in a.named_parameters() if n.startswith(("seg_", "head_manip")))
    assert card["train_only"] == {"prefixes": ["seg_", "head_manip"], "parameters": n_train}
    x = cache_records(read_manifest(tiny_dataset)).images[:16]
    ra, rb = run_model(a, x, "cpu"), run_model(b, x, "cpu")
    assert np.array_equal(ra["syn"], rb["syn"]) and not np.array_equal(ra["seg"], rb["seg"])
    with pytest.raises(MedfakeError, match="no parameter starts with"):
        freeze_except(create("dual-srm", **T["dual-srm"]), ("seg_", "segmentation"))
    with pytest.raises(MedfakeError, match="needs --init-from"):
        train_detector("dual-srm", tiny_dataset, tmp_path / "x", name="x", steps=1,
                       train_only=("seg_",), **{**kw, "init_from": None})


def test_flip_averaged_mirrors_maps_back():
    """scores.flip_averaged: scores are the mean over the image and its mirror image; maps are mirrored back
    before averaging (a map that echoes its input comes back as the input, not as a symmetric blur)."""
    from medfake.detection.scores import flip_averaged

    class Echo(torch.nn.Module):
        def forward(self, x):
            return {"syn": x[..., :, :4].mean((1, 2, 3)), "seg": x.clone(), "modality": None}

    x = torch.rand(2, 1, 8, 8)
    plain = flip_averaged(Echo(), x, False)
    assert torch.equal(plain["syn"], x[..., :, :4].mean((1, 2, 3)))
    avg = flip_averaged(Echo(), x, True)
    assert torch.allclose(avg["syn"], (x[..., :, :4].mean((1, 2, 3)) + x[..., :, 4:].mean((1, 2, 3))) / 2)
    assert torch.allclose(avg["seg"], x) and avg["modality"] is None


def test_test_time_flip_card_is_calibrated_and_run_mirror_invariant(tiny_models_dir, tiny_dataset, tmp_path):
    """--test-time-flip: the card says so and its detector scores an image and its mirror image alike (the
    calibration and the detector average the same two passes); without it they differ."""
    from medfake.io import Image

    from .conftest import TINY as T

    base = tiny_models_dir / "tiny-dual.json"
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="tta", config=T["dual-srm"], steps=0,
                          batch_size=12, device="cpu", bank_size=30, init_from=base, test_time_flip=True)
    assert card["test_time_flip"] is True
    a = np.random.default_rng(5).random((128, 128)).astype(np.float32)
    pair = [Image(a), Image(np.ascontiguousarray(a[:, ::-1]))]
    for models_dir, name, invariant in ((tmp_path, "tta", True), (tiny_models_dir, "tiny-dual", False)):
        det = load_detector(name, models_dir=models_dir).with_copy_move_if(False)
        p, q = det.predict(pair)
        same = abs(p.p_synthetic - q.p_synthetic) < 1e-5 and abs(p.p_manipulated - q.p_manipulated) < 1e-5
        assert same is invariant, (name, p, q)


def test_acquisition_copies_widen_the_real_pool(tiny_models_dir, tiny_dataset, tmp_path):
    """--acquisition-shifts: seeded copies with scanner artifacts (8-bit values in [0, 1], not the images
    themselves) join the real pool the thresholds are set on, and the card says how big that pool was."""
    from medfake.detection.train import acquisition_copies

    from .conftest import TINY as T

    ims = np.random.default_rng(2).random((3, 32, 32)).astype(np.float32)
    a, b = acquisition_copies(ims, 2, seed=1), acquisition_copies(ims, 2, seed=1)
    assert a.shape == (6, 32, 32) and np.array_equal(a, b) and 0.0 <= a.min() and a.max() <= 1.0
    assert np.allclose(a * 255, np.round(a * 255), atol=1e-3)  # quantised to 8 bits, as detection sees images
    assert not np.allclose(a[:3], ims, atol=2 / 255) and acquisition_copies(ims, 0).shape == (0, 32, 32)
    base = tiny_models_dir / "tiny-dual.json"
    card = train_detector("dual-srm", tiny_dataset, tmp_path, name="acq", config=T["dual-srm"], steps=0,
                          batch_size=12, device="cpu", bank_size=30, init_from=base, acquisition_shifts=2)
    n_real = int(card["metrics"]["calibration_real_pool"].split()[0])
    assert f"+ {4 * n_real} shifted copies" in card["metrics"]["calibration_real_pool"]  # 2 augmented + 2 artifacts
    assert "acquisition artifacts" in card["metrics"]["calibration_real_pool"]
