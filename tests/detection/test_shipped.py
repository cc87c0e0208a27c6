"""The detectors shipped in models/: each card loads with its weights (strictly), documents how it was made and
measured, and gives valid predictions on real DICOM files that ship with pydicom; the folder stays in budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfake.detection import VERDICTS, load_detector
from medfake.io import read_images

MODELS = Path(__file__).resolve().parents[2] / "models"
DETECTOR_CARDS = sorted(p for p in MODELS.glob("*.json") if json.loads(p.read_text()).get("kind") == "detector")


def test_models_folder_is_under_its_budget():
    total = sum(p.stat().st_size for p in MODELS.iterdir() if p.is_file())
    assert total < 80 * 2 ** 20, f"models/ holds {total / 2 ** 20:.1f} MB (budget 80 MB)"


def test_the_default_and_the_baselines_ship():
    assert {"detector-default", "resnet18-12", "effnet-attn"} <= {p.stem for p in DETECTOR_CARDS}


@pytest.mark.parametrize("card_path", DETECTOR_CARDS, ids=lambda p: p.stem)
def test_shipped_detector_card_and_predictions(card_path):
    from pydicom.data import get_testdata_file

    card = json.loads(card_path.read_text())
    for key in ("version", "architecture", "data", "steps", "command", "metrics", "test_metrics", "trained_where",
                "gpu_command", "temperature", "thresholds"):
        assert card.get(key) not in (None, ""), (card_path.name, key)
    assert card["dtype"] == "float16" and (MODELS / card["weights"]).is_file()
    assert card["test_metrics"]["split"] == "test"  # measured on the fixed test split, never on training data
    det = load_detector(card_path.stem, MODELS)
    assert det.version == card["version"]
    images = read_images(get_testdata_file("CT_small.dcm")) + read_images(get_testdata_file("MR_small.dcm"))
    preds = det.predict(images)
    assert len(preds) == 2
    for p in preds:
        assert 0.0 <= p.p_synthetic <= 1.0 and 0.0 <= p.p_manipulated <= 1.0 and np.isfinite(p.p_synthetic)
        assert p.verdict in VERDICTS


ENSEMBLE_CARDS = sorted(p for p in MODELS.glob("*.json")
                        if json.loads(p.read_text()).get("kind") == "detector-ensemble")


@pytest.mark.parametrize("card_path", ENSEMBLE_CARDS, ids=lambda p: p.stem)
def test_shipped_ensemble_card_and_predictions(card_path):
    """An ensemble card names two shipped detector cards, its veto levels were chosen on val and it is measured on
    the test split; it loads, and on real DICOM files it never scores above its primary member."""
    from pydicom.data import get_testdata_file

    from medfake.detection.ensemble import VetoEnsemble, second_names

    card = json.loads(card_path.read_text())
    for key in ("version", "members", "veto", "data", "command", "val_check", "test_metrics"):
        assert card.get(key) not in (None, ""), (card_path.name, key)
    assert {card["members"]["primary"], *second_names(card["members"])} <= {p.stem for p in DETECTOR_CARDS}
    assert card["test_metrics"]["split"] == "test"
    det = load_detector(card_path.stem, MODELS)
    assert isinstance(det, VetoEnsemble)
    images = read_images(get_testdata_file("CT_small.dcm")) + read_images(get_testdata_file("MR_small.dcm"))
    plain = det.with_evidence(None)  # the veto alone: never above the primary
    got, ref = plain.predict(images), det.primary.predict(images)
    for g, r in zip(got, ref):
        assert 0.0 <= g.p_synthetic <= r.p_synthetic + 1e-12 and 0.0 <= g.p_manipulated <= r.p_manipulated + 1e-12
        assert g.verdict in VERDICTS and (r.verdict != "real" or g.verdict == "real")
    if card.get("evidence"):  # an evidence cue after the veto: it can only raise p_manipulated
        sec = card["evidence"]
        assert sec["cut_uncertain"] < sec["cut"] and (MODELS / f"{sec['localizer']}.json").is_file()
        assert sec["command"].startswith("medfake train evidence") and sec["val"]["detector"]["with"]
        for e, g in zip(det.predict(images), got):
            assert e.p_synthetic == g.p_synthetic and 1.0 >= e.p_manipulated >= g.p_manipulated
            assert "localizer_evidence" in e.scores and e.verdict in VERDICTS


LOCALIZER_CARDS = sorted(p for p in MODELS.glob("*.json") if json.loads(p.read_text()).get("kind") == "localizer")


@pytest.mark.parametrize("card_path", LOCALIZER_CARDS, ids=lambda p: p.stem)
def test_shipped_localizer_cards(card_path):
    """Each shipped localizer documents how it was made and measured, loads strictly and maps an image to a
    probability map of its size."""
    import torch

    from medfake.detection.localizer import load_localizer

    card = json.loads(card_path.read_text())
    for key in ("version", "architecture", "config", "data", "steps", "command", "metrics", "trained_where",
                "gpu_command", "threshold", "role"):
        assert card.get(key) not in (None, ""), (card_path.name, key)
    assert card["dtype"] == "float16" and (MODELS / card["weights"]).is_file()
    maps = load_localizer(card_path.stem, MODELS).maps(torch.rand(2, 1, 128, 128))
    assert maps.shape == (2, 128, 128) and ((maps >= 0) & (maps <= 1)).all()


def test_shipped_localizer_has_a_threshold_for_each_view_count():
    """The shipped explain localizer records a val-chosen threshold for 1, 2 and 8 test-time views (the service's
    MEDFAKE_MASK_VIEWS, `medfake detect --mask-views`), and each loads; the 8-view figures are its card's own."""
    from medfake.detection.localizer import load_localizer

    card = json.loads((MODELS / "localizer.json").read_text())
    by = card["metrics"]["by_views"]
    assert sorted(card["thresholds_by_views"], key=int) == ["1", "2", "8"]
    assert by[str(card["tta_views"])]["pixel_f1"] == card["metrics"]["pixel_f1"]
    for v in (1, 2, 8):
        loc = load_localizer("localizer", MODELS, views=v)
        assert (loc.tta_views, loc.threshold) == (v, card["thresholds_by_views"][str(v)])
        assert 0.5 < by[str(v)]["pixel_f1"] <= 1.0
