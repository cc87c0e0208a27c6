"""The localizer's evidence cue (detection.evidence): the map from evidence to p_manipulated on constructed numbers,
then a tiny fast localizer calibrated on a generated set, applied by a detector and after an ensemble's veto."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medfake.cli import app
from medfake.detection.detector import clear_cache, load_detector
from medfake.detection.ensemble import VetoEnsemble
from medfake.detection.evidence import EvidenceCue, batched_evidence, fit_evidence
from medfake.detection.localizer import load_localizer, train_localizer
from medfake.io.errors import MedfakeError
from medfake.io.readers import read_image
from medfake.models.registry import create

from .conftest import write_dataset

TINY_FAST = {"features": [4, 4, 8, 8, 16, 4], "fold": 2}
SECTION = {"cut": 2.0, "cut_uncertain": 1.0, "by_input_side": {"64": {"cut": 3.0, "cut_uncertain": 1.5}},
           "by_modality": {"lung_ct": {"cut": 2.5, "cut_uncertain": 1.8}}}


def test_the_two_cuts_map_onto_the_image_thresholds():
    cue = EvidenceCue(None, SECTION)
    t, u = 0.8, 0.4
    assert cue.probability(2.0, t, u) == pytest.approx(t)
    assert cue.probability(1.0, t, u) == pytest.approx(u)
    ps = [cue.probability(e, t, u) for e in np.linspace(-5, 8, 40)]
    assert all(a < b for a, b in zip(ps, ps[1:])) and 0 < ps[0] and ps[-1] < 1
    # a small input has its own, higher cuts; a side between calibrated ones takes the next larger side's
    assert cue.cuts(48) == cue.cuts(64) == (3.0, 1.5) and cue.cuts(128) == cue.cuts(None) == (2.0, 1.0)
    assert cue.probability(3.0, t, u, side=50) == pytest.approx(t)
    # a modality's own cuts hold for images predicted to be of it, a small input's on top of them
    assert cue.cuts(None, "lung_ct") == (2.5, 1.8) and cue.cuts(64, "lung_ct") == (3.0, 1.8)
    assert cue.probability(2.5, t, u, modality="lung_ct") == pytest.approx(t) and cue.cuts(None, "brain_mri")[0] == 2.0
    with pytest.raises(MedfakeError, match="must be below"):
        EvidenceCue(None, {"cut": 1.0, "cut_uncertain": 1.0})


def test_the_fast_localizer_folds_pixels_and_returns_full_size_maps():
    net = create("localizer-fast")
    assert net.cfg.fold == 2 and net.unet.conv_0.conv_0.conv.in_channels == 4
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        z = net(x)
        half = net.unet(torch.nn.functional.pixel_unshuffle((x - 0.5) / 0.25, 2))  # the UNet runs at 64 px
    assert z.shape == (2, 1, 128, 128) and half.shape == (2, 1, 64, 64)
    assert torch.allclose(z, torch.nn.functional.interpolate(half, size=(128, 128), mode="bilinear"), atol=1e-5)


def test_the_stem_localizer_keeps_a_full_resolution_stem_and_head_around_the_folded_unet():
    net = create("localizer-stem", features=(4, 4, 8, 8, 16, 4), stem=3)
    assert net.cfg.fold == 2 and net.unet.conv_0.conv_0.conv.in_channels == 12
    assert net.unet.final_conv.out_channels == 12  # 3 stem channels × 2×2 blocks, in and out
    shapes = {}
    for part in ("stem", "unet", "head"):
        getattr(net, part).register_forward_hook(lambda m, i, o, part=part: shapes.update({part: tuple(o.shape)}))
    with torch.no_grad():
        z = net(torch.rand(2, 1, 128, 128))
    assert z.shape == (2, 1, 128, 128)
    assert shapes == {"stem": (2, 3, 128, 128), "unet": (2, 12, 64, 64), "head": (2, 1, 128, 128)}
    with pytest.raises(ValueError, match="stem must be"):
        create("localizer-unet", stem=4)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_models_dir):
    """A generated set with enough real val images for the cue's cuts, a tiny fast localizer trained on it, and a
    copy of the tiny models folder holding both, the detector's card with the cue calibrated."""
    root = tmp_path_factory.mktemp("evds")
    manifest = write_dataset(root, {"real": 150, "synthetic": 6, "manipulated": 45}, seed=5)
    d = tmp_path_factory.mktemp("evmodels")
    shutil.copytree(tiny_models_dir, d, dirs_exist_ok=True)
    train_localizer(manifest, d, name="fast", architecture="localizer-fast", config=TINY_FAST, steps=40,
                    batch_size=8, lr=1e-2, device="cpu", seed=0, log=lambda m: None)
    clear_cache()
    section = fit_evidence("detector-default", "fast", manifest, d, command="test")
    return manifest, d, section


def test_fit_evidence_writes_the_cue_and_the_detector_applies_it(calibrated):
    manifest, d, sec = calibrated
    assert sec["localizer"] == "fast" and sec["cut_uncertain"] < sec["cut"]
    assert all(v["cut"] >= sec["cut"] and v["cut_uncertain"] >= sec["cut_uncertain"]
               for v in sec["by_input_side"].values())
    assert sec["val"]["manipulated"]["checker"]["n"] == 15
    assert set(sec["val"]["detector"]) == {"without", "with"}
    # the cue can only add alarms
    w, wo = sec["val"]["detector"]["with"], sec["val"]["detector"]["without"]
    assert all(w[k]["not_real"] >= wo[k]["not_real"] for k in w)
    card = json.loads((d / "detector-default.json").read_text())
    assert card["evidence"]["cut"] == sec["cut"]
    det = load_detector("detector-default", d)
    assert det.evidence is not None and det.with_evidence(None).evidence is None
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    images = [read_image(manifest.parent / r[0]) for r in rows if r[3] == "val"]
    with_cue, without = det.predict(images), det.with_evidence(None).predict(images)
    ev = batched_evidence(load_localizer("fast", d), np.stack([det.canonical_batch([im])[0, 0].numpy()
                                                                for im in images]))
    for p, q, e in zip(with_cue, without, ev):
        assert p.scores["localizer_evidence"] == pytest.approx(e, abs=1e-4)
        assert p.p_manipulated >= q.p_manipulated and p.p_synthetic == q.p_synthetic
        if e >= det.evidence.cuts(128, p.modality)[0] + 1e-6:  # the cue's guarantee: an alarm on its own
            assert p.verdict == "manipulated"
        elif e < det.evidence.cuts(128, p.modality)[1] - 1e-6:  # below the uncertain cut it changes nothing
            assert (p.verdict, p.p_manipulated) == (q.verdict, q.p_manipulated)
    # the copy-move variant keeps the cue
    assert det.with_copy_move_if(None).evidence is det.evidence
    clear_cache()


def test_the_cue_applies_after_the_ensembles_veto(calibrated):
    manifest, d, sec = calibrated
    det = load_detector("detector-default", d)
    card = {"name": "veto-all", "veto": {"synthetic": 0.999999, "manipulated": 0.999999}}
    ens = VetoEnsemble(det.with_evidence(None), [det.with_evidence(None)], card)
    low = EvidenceCue(det.evidence.localizer, {**sec, "cut": -1e6, "cut_uncertain": -2e6, "by_input_side": {}})
    images = [read_image(p) for p in sorted((manifest.parent / "real").glob("*.png"))[:8]]
    vetoed = ens.predict(images)
    assert all(p.verdict != "manipulated" for p in vetoed)  # a second opinion this strict lowers every alarm
    assert all(p.verdict == "manipulated" for p in ens.with_evidence(low).predict(images))
    assert ens.with_evidence(low).with_copy_move_if(False).evidence is low
    clear_cache()


def test_the_cli_calibrates_and_bad_cards_are_clear_errors(calibrated, tmp_path):
    manifest, d, sec = calibrated
    before = (d / "detector-default.json").read_text()
    res = CliRunner().invoke(app, ["train", "evidence", "--data", str(manifest), "--localizer", "fast",
                                   "--detector", "detector-default", "--models-dir", str(d), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "calibrated the evidence cue of fast" in res.output and "val real" in res.output
    assert (d / "detector-default.json").read_text() == before
    with pytest.raises(MedfakeError, match="budget"):
        fit_evidence("detector-default", "fast", manifest, d, budget=0.02, uncertain_budget=0.01)
    bad = tmp_path / "m"
    shutil.copytree(d, bad)
    card = json.loads((bad / "detector-default.json").read_text())
    card["evidence"]["localizer"] = "missing"
    (bad / "detector-default.json").write_text(json.dumps(card))
    clear_cache()
    with pytest.raises(MedfakeError, match="evidence cue names the localizer 'missing'"):
        load_detector("detector-default", bad)
    # a retrained localizer under the same name: the cuts were chosen in the old network's logits
    card["evidence"]["localizer"] = "fast"
    (bad / "detector-default.json").write_text(json.dumps(card))
    loc = json.loads((bad / "fast.json").read_text())
    (bad / "fast.json").write_text(json.dumps({**loc, "version": loc["version"] + "-retrained"}))
    clear_cache()
    with pytest.raises(MedfakeError, match="calibrated on localizer fast .*choose its cuts again"):
        load_detector("detector-default", bad)
    # ... which calibrating again does, and then the detector loads with the new cuts
    again = fit_evidence("detector-default", "fast", manifest, bad, command="test")
    assert again["localizer_version"] == loc["version"] + "-retrained"
    clear_cache()
    assert load_detector("detector-default", bad).evidence.cut == again["cut"]
    clear_cache()


def test_refitting_an_ensemble_keeps_its_evidence_cue(calibrated):
    from medfake.detection.ensemble import fit_ensemble

    manifest, d, sec = calibrated
    fit_ensemble("detector-default", "tiny-dual", manifest, d, name="ens-ev")
    card = json.loads((d / "ens-ev.json").read_text())
    assert "evidence" not in card
    (d / "ens-ev.json").write_text(json.dumps({**card, "evidence": sec}))
    fit_ensemble("detector-default", "tiny-dual", manifest, d, name="ens-ev", kept=0.9)
    card = json.loads((d / "ens-ev.json").read_text())
    assert card["veto"]["kept"] == 0.9 and card["evidence"] == sec
    # (the tiny members are one network under two names: its own veto levels reach 1.0, which a card refuses)
    (d / "ens-ev.json").write_text(json.dumps({**card, "veto": {**card["veto"], "synthetic": 0.5, "manipulated": 0.5}}))
    ens = load_detector("ens-ev", d)
    assert isinstance(ens, VetoEnsemble) and ens.evidence is not None and ens.evidence.cut == sec["cut"]
    # what a row or a report says was run names the cue's localizer; without the cue it does not
    assert ens.version.endswith(f" + evidence fast {sec['localizer_version']}")
    assert "evidence" not in ens.with_evidence(None).version
    clear_cache()
