"""The two-network ensemble (detection.ensemble): the veto rule on constructed scores, then a real ensemble of two
tiny trained detectors fitted on the tiny data set's val split and run through `medfake detect`."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from medfake.detection.ensemble import VetoEnsemble, fit_veto, lowered, veto_levels
from medfake.io.errors import MedfakeError

from .conftest import TINY


def test_lowered_fires_only_where_both_clear_their_levels():
    t, v = 0.7, 0.9
    p1, p2 = np.meshgrid(np.linspace(0.01, 0.99, 99), np.linspace(0.01, 0.999, 120))
    p = lowered(p1, p2, v, t)
    assert (p <= p1 + 1e-12).all()  # a score never rises
    assert ((p >= t) == ((p1 >= t) & (p2 >= v - 1e-9))).all()
    same = p2 >= v + 0.01  # where the second member clears its level by a margin, the primary's score stands
    assert np.allclose(p[same & (p1 < t)], p1[same & (p1 < t)])
    assert lowered(0.95, v, v, t) == pytest.approx(t)
    # no veto level (or a switched-off head): the primary's score unchanged
    assert np.array_equal(lowered(p1, p2, None, t), p1) and np.array_equal(lowered(p1, p2, v, None), p1)


def test_veto_levels_keep_the_asked_share_of_the_primary_catches():
    rng = np.random.default_rng(0)
    p2 = rng.random(1000)
    caught = rng.random(1000) < 0.6
    v = veto_levels(p2, caught, kept=0.9)
    assert (p2[caught] >= v).mean() == pytest.approx(0.9, abs=0.01)
    assert veto_levels(p2, np.zeros(1000, bool)) is None
    with pytest.raises(ValueError):
        veto_levels(p2, caught, kept=0.0)


def test_fit_veto_uses_only_the_fakes_the_primary_catches():
    class P:
        def __init__(self, ps, pm, verdict="real"):
            self.p_synthetic, self.p_manipulated, self.verdict = ps, pm, verdict

    kinds = ["real", "synthetic", "synthetic", "synthetic", "manipulated", "manipulated"]
    primary = [P(0.9, 0.1, "synthetic"), P(0.9, 0, "synthetic"), P(0.9, 0, "synthetic"), P(0.1, 0, "real"),
               P(0, 0.9, "manipulated"), P(0, 0.1, "real")]
    second = [P(0.99, 0.99), P(0.6, 0.0), P(0.8, 0.0), P(0.01, 0.0), P(0.0, 0.4), P(0.0, 0.01)]
    veto = fit_veto(primary, second, kinds, kept=1.0)
    # the real image and the missed fakes are not in the pool: the lowest caught fake's score is the level
    assert veto["synthetic"] == pytest.approx(0.6) and veto["manipulated"] == pytest.approx(0.4)
    assert veto["synthetic_caught_by_primary"] == 2 and veto["manipulated_caught_by_primary"] == 1


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, tiny_models_dir, tiny_dataset):
    """The tiny models folder plus a second tiny network (spatial-cnn, another seed) and the fitted ensemble."""
    from medfake.detection import train_detector
    from medfake.detection.ensemble import fit_ensemble

    out = tmp_path_factory.mktemp("ensemble")
    for f in tiny_models_dir.iterdir():
        shutil.copy(f, out / f.name)
    for name, seed in (("tiny-second", 1), ("tiny-third", 2)):
        train_detector("spatial-cnn", tiny_dataset, out, name=name, config=TINY["spatial-cnn"], steps=30,
                       batch_size=12, lr=3e-3, device="cpu", seed=seed, bank_size=30)
    card = fit_ensemble("detector-default", "tiny-second", tiny_dataset, out, name="tiny-ensemble", kept=0.9)
    assert json.loads((out / "tiny-ensemble.json").read_text())["veto"]["kept"] == 0.9
    assert card["members"] == {"primary": "detector-default", "second": "tiny-second"}
    return out


def _val_images(manifest):
    from medfake.io.readers import read_image

    rows = list(csv.DictReader(manifest.open()))
    return [read_image(manifest.parent / r["path"]) for r in rows if r["split"] == "val"]


def test_the_ensemble_never_raises_a_score_and_keeps_the_primary_where_the_second_agrees(ensemble_dir, tiny_dataset):
    from medfake.detection.detector import clear_cache, load_detector

    clear_cache()
    ens = load_detector("tiny-ensemble", ensemble_dir)
    assert isinstance(ens, VetoEnsemble) and "tiny-second" in ens.version
    primary = load_detector("detector-default", ensemble_dir)
    images = _val_images(tiny_dataset)
    got, ref = ens.predict(images), primary.predict(images)
    t = ens.thresholds
    lowered_any = False
    for g, r in zip(got, ref):
        for head, attr in (("synthetic", "p_synthetic"), ("manipulated", "p_manipulated")):
            assert 0 <= getattr(g, attr) <= getattr(r, attr) + 1e-12
            if r.verdict == "real":  # not asked: the primary's scores stand
                assert getattr(g, attr) == getattr(r, attr) and f"{attr}_second" not in g.scores
                continue
            assert g.scores[f"{attr}_primary"] == pytest.approx(getattr(r, attr))
            v = ens.veto[head]
            if v is not None and g.scores[f"{attr}_second"] >= v and getattr(r, attr) <= t[head]:
                assert getattr(g, attr) == pytest.approx(getattr(r, attr))
            lowered_any |= getattr(g, attr) < getattr(r, attr) - 1e-9
        if r.verdict == "real":
            assert g.verdict == "real"  # never flags what the primary clears
    assert lowered_any  # the second member does act on this set
    # with the copy-move cue (computed once for both members): the same scores as each member run on its own
    cued = ens.with_copy_move_if(True)
    assert cued.primary.copy_move is not None and cued.second.copy_move is not None
    got = cued.predict(images, batch_size=7)
    alone = zip(cued.primary.predict(images), cued.second.predict(images))
    asked = 0
    for g, (r, o) in zip(got, alone):
        asked += r.verdict != "real"
        for head, attr in (("synthetic", "p_synthetic"), ("manipulated", "p_manipulated")):
            # the second opinion is asked on the primary's alarms only
            want = (lowered(getattr(r, attr), getattr(o, attr), cued.veto[head], cued.thresholds[head])
                    if r.verdict != "real" else getattr(r, attr))
            assert getattr(g, attr) == pytest.approx(float(want), abs=1e-6)
            assert (f"{attr}_second" in g.scores) == (r.verdict != "real")
        assert g.verdict == cued.verdict_for(g.p_synthetic, g.p_manipulated, g.modality, 128)
    assert 0 < asked < len(images)
    # the variants stay ensembles of both members
    assert isinstance(ens.with_copy_move_if(False), VetoEnsemble)
    refd = ens.with_references(images[:4], ["synthetic"] * 4)
    assert isinstance(refd, VetoEnsemble) and len(refd.second.bank) == len(ens.second.bank) + 4
    x = torch.rand(3, 1, 128, 128, requires_grad=True)
    s = ens.score_tensor(x)
    s.sum().backward()
    assert s.shape == (3,) and x.grad is not None and torch.isfinite(x.grad).all()
    # the explain path (maps of the input's size) is the primary's
    pred = ens.predict(images[:2], explain=True)[0]
    assert pred.heatmap.shape == images[0].array.shape and pred.mask.shape == images[0].array.shape


def test_bad_ensemble_cards_are_clear_errors(ensemble_dir):
    from medfake.detection.detector import clear_cache, load_detector

    card = json.loads((ensemble_dir / "tiny-ensemble.json").read_text())
    cases = {"no-second": {"members": {"primary": "detector-default"}},
             "same-twice": {"members": {"primary": "detector-default", "second": "detector-default"}},
             "nested": {"members": {"primary": "tiny-ensemble", "second": "tiny-second"}},
             "self": {"members": {"primary": "self", "second": "tiny-second"}},
             "bad-level": {"veto": {**card["veto"], "synthetic": 1.5}},
             "text-level": {"veto": {**card["veto"], "manipulated": "high"}},
             "no-member-card": {"members": {"primary": "detector-default", "second": "nowhere"}},
             "empty-list": {"members": {"primary": "detector-default", "second": []}},
             "twice-in-list": {"members": {"primary": "detector-default", "second": ["tiny-second", "tiny-second"]}},
             "primary-in-list": {"members": {"primary": "detector-default",
                                             "second": ["tiny-second", "detector-default"]}},
             "not-a-name": {"members": {"primary": "detector-default", "second": ["tiny-second", 3]}},
             "missing-in-list": {"members": {"primary": "detector-default", "second": ["tiny-second", "nowhere"]}}}
    clear_cache()
    for name, change in cases.items():
        (ensemble_dir / f"{name}.json").write_text(json.dumps({**card, "name": name, **change}))
        with pytest.raises(MedfakeError):
            load_detector(name, ensemble_dir)


def test_train_ensemble_and_detect_through_the_cli(ensemble_dir, tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from medfake.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "ensemble", "--data", str(tiny_dataset), "--second", "tiny-second",
                              "--models-dir", str(ensemble_dir), "--name", "cli-ensemble"])
    assert res.exit_code == 0, res.output
    assert "veto levels" in res.output and (ensemble_dir / "cli-ensemble.json").exists()
    out = tmp_path / "r.csv"
    res = runner.invoke(app, ["detect", str(tiny_dataset.parent / "synthetic"), "--detector", "cli-ensemble",
                              "--models-dir", str(ensemble_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 18 and list(rows[0])[:5] == ["path", "modality", "p_synthetic", "p_manipulated", "verdict"]
    assert all(0 <= float(r["p_synthetic"]) <= 1 for r in rows)
    res = runner.invoke(app, ["train", "ensemble", "--data", str(tiny_dataset), "--second", "no-such-card",
                              "--models-dir", str(ensemble_dir)])
    assert res.exit_code != 0 and "no-such-card" in res.output


def test_default_is_the_ensemble_where_the_models_folder_has_one(ensemble_dir, tmp_path):
    from medfake.detection.detector import ShippedDetector, clear_cache, load_detector, resolve_card

    clear_cache()
    folder = tmp_path / "m"
    shutil.copytree(ensemble_dir, folder)
    assert isinstance(load_detector("default", folder), ShippedDetector)  # no detector-ensemble.json: the network
    shutil.copy(folder / "tiny-ensemble.json", folder / "detector-ensemble.json")
    assert resolve_card("default", folder).name == "detector-ensemble.json"
    assert isinstance(load_detector("default", folder), VetoEnsemble)
    assert isinstance(load_detector("detector-default", folder), ShippedDetector)  # the member by its own name


def test_a_second_opinion_of_several_networks_is_their_mean(ensemble_dir, tiny_dataset, tmp_path):
    """`--second A --second B`: the veto levels are fitted on the mean of both networks' probabilities, and where
    the primary alarms the ensemble lowers its scores with that mean (never raising one); the variants and the
    attack score keep all three networks."""
    from typer.testing import CliRunner

    from medfake.cli import app
    from medfake.detection.detector import clear_cache, load_detector

    res = CliRunner().invoke(app, ["train", "ensemble", "--data", str(tiny_dataset), "--second", "tiny-second",
                                   "--second", "tiny-third", "--models-dir", str(ensemble_dir), "--name", "ens3"])
    assert res.exit_code == 0, res.output
    card = json.loads((ensemble_dir / "ens3.json").read_text())
    assert card["members"]["second"] == ["tiny-second", "tiny-third"]
    assert {"second tiny-second", "second tiny-third", "ensemble"} <= set(card["val_check"])
    clear_cache()
    ens = load_detector("ens3", ensemble_dir)
    assert [s.name for s in ens.seconds] == ["tiny-second", "tiny-third"] and "tiny-third" in ens.version
    images = _val_images(tiny_dataset)
    primary = load_detector("detector-default", ensemble_dir)
    b, c = load_detector("tiny-second", ensemble_dir), load_detector("tiny-third", ensemble_dir)
    got = ens.predict(images, batch_size=9)
    asked = 0
    ref, by_b, by_c = primary.predict(images), b.predict(images), c.predict(images)
    for g, r, pb, pc in zip(got, ref, by_b, by_c):
        asked += r.verdict != "real"
        for head, attr in (("synthetic", "p_synthetic"), ("manipulated", "p_manipulated")):
            mean = (getattr(pb, attr) + getattr(pc, attr)) / 2
            want = (lowered(getattr(r, attr), mean, ens.veto[head], ens.thresholds[head])
                    if r.verdict != "real" else getattr(r, attr))
            assert getattr(g, attr) == pytest.approx(float(want), abs=1e-6)
            assert getattr(g, attr) <= getattr(r, attr) + 1e-6  # (batches of 9 against 64: float noise)
            if r.verdict != "real":
                assert g.scores[f"{attr}_second"] == pytest.approx(mean, abs=1e-6)
    assert asked > 0
    # the veto level is the (1 - kept) quantile of the mean over the val fakes the primary catches
    kinds = np.array([r["kind"] for r in csv.DictReader(tiny_dataset.open()) if r["split"] == "val"])
    caught = np.array([p.verdict != "real" for p in ref]) & (kinds == "synthetic")
    means = np.array([(x.p_synthetic + y.p_synthetic) / 2 for x, y in zip(by_b, by_c)])
    assert card["veto"]["synthetic"] == pytest.approx(veto_levels(means, caught, card["veto"]["kept"]))
    # bad members are refused before any image is read (the manifest here does not exist)
    from medfake.detection.ensemble import fit_ensemble

    for second in (["tiny-second", "tiny-second"], ["detector-default"], []):
        with pytest.raises(MedfakeError, match="member"):
            fit_ensemble("detector-default", second, tmp_path / "nothing.csv", ensemble_dir)
    refd = ens.with_references(images[:3], ["synthetic"] * 3)
    assert [len(s.bank) for s in refd.seconds] == [len(s.bank) + 3 for s in ens.seconds]
    x = torch.rand(2, 1, 128, 128, requires_grad=True)
    ens.score_tensor(x).sum().backward()
    assert torch.isfinite(x.grad).all()
