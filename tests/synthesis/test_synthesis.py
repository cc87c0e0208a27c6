from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from typer.testing import CliRunner

from medfake.cli import app
from medfake.data import read_folder
from medfake.data.modalities import MODALITIES
from medfake.io import read_image
from medfake.models import WeightsMismatchError, create, load_weights, save_weights
from medfake.synthesis import load_generator
from medfake.synthesis.train import train_generator



@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_tiny_ddpm_loss_drops(tiny_folder, tmp_path, tiny_configs, prediction):
    recs = read_folder(tiny_folder)
    card = train_generator("ddpm", recs, tmp_path, config={**tiny_configs["ddpm"], "prediction_type": prediction}, steps=60, batch_size=6, lr=2e-3, seed=0,
                           ckpt_every=1000, log_every=10)
    assert card["loss_last"] < card["loss_first"] * 0.8
    assert card["steps"] == 60 and card["architecture"] == "ddpm-unet"
    assert card["config"]["prediction_type"] == prediction
    assert (tmp_path / "ddpm.safetensors").exists()
    gen = load_generator("ddpm", models_dir=tmp_path)
    a = np.stack([i.array for i in gen.sample("lung_ct", None, 2, steps=3, seed=4)])
    assert a.shape == (2, 128, 128) and np.isfinite(a).all() and 0 <= a.min() <= a.max() <= 1


def test_v_prediction_target_and_samplers_invert_it():
    from monai.networks.schedulers import DDPMScheduler

    from medfake.models import make_config
    from medfake.synthesis.samplers import make_scheduler
    from medfake.synthesis.train import ddpm_target

    sched = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 250, 700, 999])
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = ddpm_target(sched, "v_prediction", x0, noise, t)
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-6)  # v = √ᾱ ε − √(1−ᾱ) x0
    assert torch.equal(ddpm_target(sched, "epsilon", x0, noise, t), noise)
    # the sampler's scheduler turns a perfect v back into x0 (x0 in [−1, 1], so the clip does nothing)
    xt = sched.add_noise(x0, noise, t)
    model = create("ddpm-unet", make_config("ddpm-unet", {**dict(channels=[8, 8, 8], norm_num_groups=8,
                                                                 num_head_channels=8), "prediction_type": "v_prediction"}))
    for sampler, steps in (("ddim", 1000), ("ddpm", 1000), ("ddpm", 10)):
        s = make_scheduler(model, sampler, steps)
        assert s.prediction_type == "v_prediction"
        if steps == 1000:  # every t is on this schedule: MONAI's step recovers x0 from a perfect v
            for i in range(4):
                _, x0_back = s.step(v[i:i + 1], int(t[i]), xt[i:i + 1])
                assert torch.allclose(x0_back, x0[i:i + 1], atol=1e-4), (sampler, int(t[i]))
    with pytest.raises(ValueError, match="prediction_type"):
        make_config("ddpm-unet", {"prediction_type": "x0"})


def test_tiny_vae_loss_drops_and_reconstructs(tiny_folder, tmp_path, tiny_configs, tiny_models):
    from medfake.io.errors import MedfakeError

    recs = read_folder(tiny_folder)
    card = train_generator("vae", recs, tmp_path, config=tiny_configs["vae"], steps=40, batch_size=6, lr=3e-3, seed=0,
                           ema_decay=0.8, ckpt_every=1000, log_every=10)
    assert card["loss_last"] < card["loss_first"] * 0.8
    assert card["architecture"] == "vae-kl" and card["conditional"] is False
    gen = load_generator(str(tmp_path / "vae.json"))
    srcs = [read_image(r.path) for r in recs[:3]]
    srcs[0].meta.source = "x.png"
    out = gen.reconstruct(srcs)
    again = gen.reconstruct(srcs)
    assert len(out) == 3
    for src, rec, rec2 in zip(srcs, out, again):
        assert rec.shape == (128, 128) and rec.array.dtype == np.float32
        assert 0 <= rec.array.min() and rec.array.max() <= 1
        assert rec.meta.modality == src.meta.modality and rec.meta.extra["sampler"] == "reconstruction"
        np.testing.assert_array_equal(rec.array, rec2.array)  # deterministic: the latent mean, no sampling
        # not a copy of its source, but nearer to it than to the other images (it was trained on these)
        own = np.abs(rec.array - src.array).mean()
        assert 0 < own < min(np.abs(rec.array - o.array).mean() for o in srcs if o is not src)
    with pytest.raises(MedfakeError, match="autoencoder"):
        gen.sample("brain_mri", None, 1)
    with pytest.raises(MedfakeError, match="cannot reconstruct"):
        load_generator("dcgan", models_dir=tiny_models).reconstruct(srcs)


def test_data_loading_workers_feed_the_same_images(tiny_folder, tmp_path, tiny_configs):
    from medfake.synthesis.train import _loader

    recs = read_folder(tiny_folder)
    # worker processes decode and augment; without augmentation a seeded epoch is the same batches as in-process
    _, plain = _loader(recs, 4, seed=3, augment=False, workers=0)
    _, pooled = _loader(recs, 4, seed=3, augment=False, workers=2)
    for a, b in zip(plain, pooled):
        torch.testing.assert_close(a["image"], b["image"])
        assert torch.equal(torch.as_tensor(a["cls"]), torch.as_tensor(b["cls"]))
    card = train_generator("ddpm", recs, tmp_path, config=tiny_configs["ddpm"], steps=4, batch_size=4, workers=2,
                           ckpt_every=1000, log_every=1)
    assert card["steps"] == 4 and np.isfinite(card["loss_last"])


def test_training_resumes_from_checkpoint(tiny_folder, tmp_path, tiny_configs):
    recs = read_folder(tiny_folder)
    train_generator("dcgan", recs, tmp_path, config=tiny_configs["dcgan"], steps=2, batch_size=4, ckpt_every=1)
    card = train_generator("dcgan", recs, tmp_path, config=tiny_configs["dcgan"], steps=4, batch_size=4, ckpt_every=1)
    assert card["steps"] == 4
    with pytest.raises(ValueError, match="config differs"):
        train_generator("dcgan", recs, tmp_path, config={"ngf": 16, "ndf": 8}, steps=6, batch_size=4)


@pytest.mark.parametrize("model, sampler", [("ddpm", "ddim"), ("ddpm", "ddpm"), ("dcgan", "ddim")])
def test_sampling_shape_range_determinism(tiny_models, model, sampler):
    gen = load_generator(model, models_dir=tiny_models)
    kw = dict(sampler=sampler, steps=4, seed=7)
    a = gen.sample("brain_mri", "glioma", 3, **kw)
    b = gen.sample("brain_mri", "glioma", 3, **kw)
    c = gen.sample("brain_mri", "glioma", 3, **{**kw, "seed": 8})
    assert len(a) == 3 and a[0].shape == (128, 128)
    for x in a:
        assert x.array.dtype == np.float32 and 0 <= x.array.min() and x.array.max() <= 1
        assert x.meta.modality == "brain_mri" and x.meta.label == "glioma"
    np.testing.assert_array_equal(a[0].array, b[0].array)
    assert not np.array_equal(a[0].array, c[0].array)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: sampling on a GPU is checked where "
                                                            "one exists (benchmarks/gpu/recheck.sh runs this test)")
@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddpm", 8), ("ddim", 8)])
def test_stochastic_samplers_run_on_a_gpu_with_a_seed(tiny_models, sampler, steps):
    # MONAI's schedulers draw each step's noise on the model's device with the generator they are given: a CPU
    # generator there failed every DDPM chain on the lent H200 ("Expected a 'cuda' device type for generator")
    gen = load_generator("ddpm", models_dir=tiny_models, device="cuda")
    kw = dict(sampler=sampler, steps=steps, seed=3, eta=1.0 if sampler == "ddim" else 0.0)
    a = gen.sample("kidney_ct", "Tumor", 2, **kw)
    b = gen.sample("kidney_ct", "Tumor", 2, **kw)
    c = gen.sample("kidney_ct", "Tumor", 2, **{**kw, "seed": 4})
    assert a[0].shape == (128, 128) and all(0 <= x.array.min() and x.array.max() <= 1 for x in a)
    np.testing.assert_allclose(a[1].array, b[1].array, atol=1e-4)  # cuDNN may pick kernels that round differently
    assert np.abs(a[1].array - c[1].array).max() > 0.05


def test_chunked_sampling_equals_labels_and_guidance(tiny_models):
    gen = load_generator("ddpm", models_dir=tiny_models)
    imgs = gen.sample("chest_xray", None, 5, steps=2, chunk=2, guidance=2.0)
    assert len(imgs) == 5 and {i.meta.label for i in imgs} <= {"NORMAL", "PNEUMONIA"}


def test_unknown_modality_and_label(tiny_models):
    gen = load_generator("dcgan", models_dir=tiny_models)
    with pytest.raises(ValueError, match="choose one of: brain_mri"):
        gen.sample("heart_echo", None, 1)
    with pytest.raises(ValueError, match="glioma, meningioma, notumor, pituitary"):
        gen.sample("brain_mri", "tumour", 1)


def test_strict_loading_refuses_mismatch(tmp_path):
    small = create("dcgan", ngf=8, ndf=8)
    other = create("dcgan", ngf=16, ndf=8)
    p = save_weights(small, tmp_path / "w.safetensors")
    load_weights(create("dcgan", ngf=8, ndf=8), p)
    with pytest.raises(WeightsMismatchError, match="does not match"):
        load_weights(other, p)
    sd = {k: v for k, v in small.state_dict().items() if "embed" not in k}
    p2 = save_weights(sd, tmp_path / "partial.safetensors")
    with pytest.raises(WeightsMismatchError, match="missing"):
        load_weights(create("dcgan", ngf=8, ndf=8), p2)


def test_synth_cli_png_and_dicom(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDFAKE_MODELS_DIR", str(tiny_models))
    r = CliRunner().invoke(app, ["synth", "-m", "chest_xray", "-l", "PNEUMONIA", "-n", "2", "--steps", "2",
                                 "--out", str(tmp_path / "png")])
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 2 and read_image(pngs[0]).shape == (128, 128) and read_image(pngs[0]).meta.bits == 8
    r = CliRunner().invoke(app, ["synth", "-m", "chest_xray", "-n", "1", "--model", "dcgan", "--format", "dicom",
                                 "--out", str(tmp_path / "dcm")])
    assert r.exit_code == 0, r.output
    ds = pydicom.dcmread(next((tmp_path / "dcm").glob("*.dcm")))
    assert "SYNTHETIC" in ds.DerivationDescription and "dcgan" in ds.DerivationDescription
    r = CliRunner().invoke(app, ["synth", "-m", "chest_xray", "-l", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "NORMAL, PNEUMONIA" in r.output
    assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(app, ["synth", "-m", "chest_xray", "--model", "vae", "--out", str(tmp_path / "v")])
    assert r.exit_code != 0 and "autoencoder" in r.output
    assert not (tmp_path / "v").exists()


def test_train_cli_writes_card(tiny_folder, tmp_path, tiny_configs):
    r = CliRunner().invoke(app, ["train", "synth", "--model", "dcgan", "--data", str(tiny_folder), "--split", "",
                                 "--out", str(tmp_path), "--steps", "2", "--batch-size", "4",
                                 "--config", json.dumps(tiny_configs["dcgan"])])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "dcgan.json").read_text())
    assert card["steps"] == 2 and card["config"]["ngf"] == 8 and "command" in card


def test_export_checkpoint_matches_training_export(tiny_folder, tmp_path, tiny_configs):
    from safetensors.torch import load_file

    from medfake.synthesis.train import export_checkpoint

    recs = read_folder(tiny_folder)
    train_generator("ddpm", recs, tmp_path / "a", config=tiny_configs["ddpm"], steps=2, batch_size=4)
    card = export_checkpoint(tmp_path / "a" / "ddpm.ckpt.pt", "ddpm", recs, tmp_path / "b")
    assert card["steps"] == 2
    a = load_file(str(tmp_path / "a" / "ddpm.safetensors"))
    b = load_file(str(tmp_path / "b" / "ddpm.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    load_generator("ddpm", models_dir=tmp_path / "b").sample("brain_mri", None, 1, steps=2)


@pytest.mark.parametrize("family", ["ddpm", "dcgan"])
def test_init_from_shipped_card_continues(tiny_folder, tmp_path, tiny_configs, family):
    """`--init-from CARD`: a shipped model goes on training without its checkpoint (weights loaded strictly,
    step count and minutes carried on); zero further steps give back the very same weights (the DCGAN's BatchNorm
    statistics are recomputed at export, now from fp16-rounded weights: close, not equal)."""
    from safetensors.torch import load_file

    recs = read_folder(tiny_folder)
    first = train_generator(family, recs, tmp_path / "a", config=tiny_configs[family], steps=2, batch_size=4)
    same = train_generator(family, recs, tmp_path / "b", steps=2, batch_size=4, init_from=tmp_path / "a" / f"{family}.json")
    a = load_file(str(tmp_path / "a" / f"{family}.safetensors"))
    b = load_file(str(tmp_path / "b" / f"{family}.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if "running_" not in k and "num_batches" not in k)
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-2, atol=1e-3) for k in a if "running_" in k)
    assert same["config"] == first["config"] and same["continued_from"]["version"] == first["version"]
    more = train_generator(family, recs, tmp_path / "c", steps=4, batch_size=4, init_from=tmp_path / "a" / f"{family}.json")
    assert more["steps"] == 4 and more["continued_from"]["steps"] == 2
    c = load_file(str(tmp_path / "c" / f"{family}.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a)  # it did train


def test_init_from_refuses_another_architecture(tiny_folder, tmp_path, tiny_configs):
    recs = read_folder(tiny_folder)
    train_generator("ddpm", recs, tmp_path / "a", config=tiny_configs["ddpm"], steps=1, batch_size=4)
    with pytest.raises(ValueError, match="cannot start"):
        train_generator("vae", recs, tmp_path / "b", steps=2, batch_size=4, init_from=tmp_path / "a" / "ddpm.json")
    r = CliRunner().invoke(app, ["train", "synth", "--model", "vae", "--data", str(tiny_folder), "--split", "",
                                 "--out", str(tmp_path / "c"), "--steps", "2", "--init-from", str(tmp_path / "a" / "ddpm.json")])
    assert r.exit_code == 2 and "cannot start" in r.output and "Traceback" not in r.output


SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[2] / "models").glob("*.json")
                 if json.loads(p.read_text()).get("family") in ("ddpm", "dcgan", "vae"))


@pytest.mark.parametrize("card_path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_generator_cards_document_their_training_and_load_strictly(card_path):
    card = json.loads(card_path.read_text())
    for key in ("version", "architecture", "config", "data", "steps", "command", "hardware", "training_minutes",
                "label_prior", "dtype"):
        assert card.get(key) not in (None, ""), key
    if card["family"] != "vae":
        assert card.get("trained_where") and card.get("gpu_command"), "say where it trained and how to train it on a GPU"
    gen = load_generator(card_path.stem, models_dir=card_path.parent)
    assert gen.version == card["version"]


SWEPT = [p for p in SHIPPED if json.loads(p.read_text()).get("sampling")]  # DDPM cards with sampler settings


@pytest.mark.parametrize("card_path", SWEPT, ids=lambda p: p.stem)
def test_shipped_sampling_choice_is_consistent(card_path):
    """A shipped card's sampler choice per modality is the best (lowest validation distance) of the per-sampler
    bests it records, and each recorded setting names a sampler the code has and a valid step count, so what
    `medfake synth`, the demo and the service draw is what the sweep measured."""
    sampling = json.loads(card_path.read_text())["sampling"]
    by = sampling["by_sampler"]
    assert set(by) <= {"ddim", "ddpm"}
    for m in MODALITIES:
        choice = sampling["per_modality"][m]
        best = min((s for s in by if m in by[s]), key=lambda s: by[s][m]["fd_val"])
        assert choice["sampler"] == best, m
        assert {k: choice[k] for k in ("steps", "eta", "guidance")} == {
            k: by[best][m][k] for k in ("steps", "eta", "guidance")}, m
        assert sampling["fd_val"][m] == by[best][m]["fd_val"] and sampling["fd_test"][m] == by[best][m]["fd_test"]
        for s in by:
            assert 1 <= by[s].get(m, {"steps": 1})["steps"] <= 1000 and by[s].get(m, {"guidance": 1})["guidance"] >= 0


def test_card_sampling_defaults_per_modality(tiny_models, tmp_path, monkeypatch):
    """A card's `sampling.per_modality` choice (benchmarks/sampler_sweep.py) is what sample() and `medfake synth`
    use when no setting is given; given settings win; the DICOM says which settings made it."""
    import shutil

    d = tmp_path / "models"
    shutil.copytree(tiny_models, d)
    card = json.loads((d / "ddpm.json").read_text())
    card["sampling"] = {"per_modality": {"lung_ct": {"sampler": "ddim", "steps": 3, "eta": 1.0, "guidance": 2.0},
                                         "kidney_ct": {"sampler": "ddpm", "steps": 6, "eta": 0.0, "guidance": 1.0}},
                        "by_sampler": {"ddim": {"kidney_ct": {"steps": 4, "eta": 1.0, "guidance": 1.5, "fd_val": 9.0}}}}
    (d / "ddpm.json").write_text(json.dumps(card))
    gen = load_generator("ddpm", models_dir=d)
    assert gen.sampling_settings("lung_ct") == {"sampler": "ddim", "steps": 3, "eta": 1.0, "guidance": 2.0}
    assert gen.sampling_settings("brain_mri") == {"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": 1.0}
    # another sampler keeps the card's guidance but not its steps or eta ...
    assert gen.sampling_settings("lung_ct", "ddpm", 4) == {"sampler": "ddpm", "steps": 4, "eta": 0.0, "guidance": 2.0}
    # ... unless the card has a best setting for that sampler too (what the demo and the service's DDIM get)
    assert gen.sampling_settings("kidney_ct") == {"sampler": "ddpm", "steps": 6, "eta": 0.0, "guidance": 1.0}
    assert gen.sampling_settings("kidney_ct", "ddim") == {"sampler": "ddim", "steps": 4, "eta": 1.0, "guidance": 1.5}
    assert gen.sampling_settings("kidney_ct", "ddim", 8)["steps"] == 8
    assert gen.sampling_settings("lung_ct", guidance=1.0, eta=0.0)["guidance"] == 1.0

    def arr(**kw):
        return np.stack([i.array for i in gen.sample("lung_ct", "COVID", 2, seed=5, **kw)])

    by_card = arr()
    np.testing.assert_array_equal(by_card, arr(sampler="ddim", steps=3, eta=1.0, guidance=2.0))
    assert not np.array_equal(by_card, arr(steps=3, eta=1.0, guidance=1.0))  # the guidance changed the images
    assert not np.array_equal(by_card, arr(steps=3, eta=0.0, guidance=2.0))  # and so did eta
    one = gen.sample("lung_ct", "COVID", 1, seed=5)[0]
    assert one.meta.extra["guidance"] == 2.0 and one.meta.extra["eta"] == 1.0

    monkeypatch.setenv("MEDFAKE_MODELS_DIR", str(d))
    r = CliRunner().invoke(app, ["synth", "-m", "lung_ct", "-l", "COVID", "-n", "1", "--format", "dicom", "--seed",
                                 "5", "--out", str(tmp_path / "dcm")])
    assert r.exit_code == 0, r.output
    assert "ddim 3 steps, eta 1, guidance 2 (the model card's choice" in r.output, r.output  # says what it draws
    ds = pydicom.dcmread(next((tmp_path / "dcm").glob("*.dcm")))
    for part in ("sampler=ddim", "steps=3", "eta=1.0", "guidance=2.0", "seed=5"):
        assert part in ds.DerivationDescription, (part, ds.DerivationDescription)
    np.testing.assert_allclose(read_image(next((tmp_path / "dcm").glob("*.dcm"))).array, one.array, atol=1 / 255)
