"""The shipped-detector wrapper: predictions, explanations at the input's size, score_tensor, retrieval, anomaly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfake.detection import VERDICTS, Detector, load_detector
from medfake.detection.anomaly import MahalanobisScorer
from medfake.detection.detector import to_input_size
from medfake.detection.retrieval import ReferenceBank
from medfake.io.image import Image

from .conftest import make_example


@pytest.fixture(scope="module")
def det(tiny_models_dir):
    return load_detector("default", tiny_models_dir)


def test_default_resolves_and_is_cached(det, tiny_models_dir):
    assert isinstance(det, Detector)
    assert det.name == "detector-default"
    assert load_detector("default", tiny_models_dir) is det
    assert det.card["thresholds"]["synthetic"] is not None and det.card["temperature"]["synthetic"] > 0


def test_predict_rows_and_separation(det):
    rng = np.random.default_rng(7)
    reals = [Image(make_example("real", rng)[0]) for _ in range(6)]
    fakes = [Image(make_example("synthetic", rng)[0]) for _ in range(6)]
    preds = det.predict(reals + fakes)
    assert len(preds) == 12
    for p in preds:
        assert 0 <= p.p_synthetic <= 1 and 0 <= p.p_manipulated <= 1
        assert p.verdict in VERDICTS and p.heatmap is None and p.mask is None
        assert "anomaly" in p.scores and "p_modality" in p.scores
    # the tiny model separates the checkerboard fakes from the blobs
    assert min(p.p_synthetic for p in preds[6:]) > max(p.p_synthetic for p in preds[:6])
    assert sum(p.verdict == "synthetic" for p in preds[6:]) >= 5


def test_predictions_do_not_depend_on_the_compute_batch(det, monkeypatch):
    """On a CPU the caller's batch goes through the network in CPU_COMPUTE_BATCH pieces (for speed); every score
    is per image, so any piece size gives the same probabilities, scores and verdicts."""
    import medfake.detection.detector as detector_module

    rng = np.random.default_rng(11)
    images = [Image(make_example(kind, rng)[0]) for kind in ("real", "synthetic", "manipulated") * 4]
    assert det.compute_batch(64) == detector_module.CPU_COMPUTE_BATCH and det.compute_batch(5) == 5
    runs = []
    for piece in (64, 5, 1):
        monkeypatch.setattr(detector_module, "CPU_COMPUTE_BATCH", piece)
        runs.append(det.predict(images, batch_size=64))
    for other in runs[1:]:
        for p, q in zip(runs[0], other):
            assert p.verdict == q.verdict and p.modality == q.modality
            assert p.p_synthetic == pytest.approx(q.p_synthetic, abs=1e-5)
            assert p.p_manipulated == pytest.approx(q.p_manipulated, abs=1e-5)
            assert p.scores["anomaly"] == pytest.approx(q.scores["anomaly"], rel=1e-4)


def test_explain_outputs_have_the_input_size(det):
    rng = np.random.default_rng(3)
    # a synthetic example, which the tiny model calls fake: Grad-CAM of the fake score is then not empty (for an
    # image it calls real, every activation can count against "fake" and the ReLU'd map is legitimately 0)
    a, _ = make_example("synthetic", rng)  # 128 px: its pixel-level checkerboard survives no resize
    im = Image(np.pad(a, ((26, 26), (0, 0)), mode="edge"))  # 180×128, not square: to_canonical centre-crops
    (p,) = det.predict([im], explain=True)
    assert p.p_synthetic > 0.5, p.p_synthetic
    assert p.heatmap.shape == (180, 128) and p.mask.shape == (180, 128)
    assert p.heatmap.dtype == np.float32 and 0 <= p.heatmap.min() and p.heatmap.max() <= 1
    assert p.heatmap.max() > 0  # Grad-CAM is not empty
    assert p.mask.dtype == bool
    # outside the centre square (rows 0..25 and 154..179) the maps are zero
    assert p.heatmap[:26].max() == 0 and p.heatmap[-26:].max() == 0 and not p.mask[-26:].any()
    # hooks are removed: a second explain works and plain prediction still matches
    (p2,) = det.predict([im], explain=True)
    np.testing.assert_allclose(p2.heatmap, p.heatmap, atol=1e-5)
    assert det.predict([im])[0].p_synthetic == pytest.approx(p.p_synthetic, abs=1e-6)


def test_to_input_size_places_the_crop():
    m = np.ones((128, 128), np.float32)
    out = to_input_size(m, (100, 300))
    assert out.shape == (100, 300)
    assert out[:, 100:200].min() == pytest.approx(1.0) and out[:, :100].max() == 0 and out[:, 200:].max() == 0


def test_score_tensor_is_differentiable(det):
    x = torch.rand(3, 1, 128, 128, requires_grad=True)
    s = det.score_tensor(x)
    assert s.shape == (3,)
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # consistent with predict: fake logit ≥ the synthetic head's logit alone
    p = det.predict([Image(x[0, 0].detach().numpy())])[0]
    assert torch.sigmoid(s[0]).item() >= p.scores["p_synthetic_classifier"] - 1e-5


def test_references_shift_retrieval_scores(det):
    rng = np.random.default_rng(11)
    # a "new generator": blobs with a horizontal stripe pattern instead of the checkerboard
    def stripes():
        a, _ = make_example("real", rng)
        a = a.copy()
        a[::2] = np.clip(a[::2] + 0.15, 0, 1)
        return Image(a)

    refs = [stripes() for _ in range(10)]
    # queries: near-duplicates of some references (re-quantised after slight noise), as a re-used generator would
    queries = [Image(np.clip(r.array + rng.normal(0, 0.003, r.array.shape), 0, 1).astype(np.float32))
               for r in refs[:4]]
    before = [p.scores.get("knn_synthetic", 0.0) for p in det.predict(queries)]
    det2 = det.with_references(refs, ["synthetic"] * 10)
    after = [p.scores["knn_synthetic"] for p in det2.predict(queries)]
    assert np.mean(after) > np.mean(before) + 0.3
    assert len(det2.bank) == len(det.bank) + 10  # the cached detector's bank is untouched


def test_reference_bank_knn_and_roundtrip(tmp_path):
    e = np.eye(4, dtype=np.float32)
    bank = ReferenceBank(k=1)
    bank.add(e[:3], [0, 1, "manipulated"])
    p = bank.knn(np.array([[0, 1, 0.1, 0]], np.float32))
    assert p.argmax() == 1 and p.sum() == pytest.approx(1)
    # the similarity-weighted vote of the k nearest, against a direct computation
    rng = np.random.default_rng(2)
    big = ReferenceBank(k=5, tau=0.1)
    refs = rng.standard_normal((40, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    big.add(refs, labels)
    q = rng.standard_normal((6, 8)).astype(np.float32)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sim = unit(q).astype(np.float64) @ unit(refs).T.astype(np.float64)
    want = np.zeros((6, 3))
    for i in range(6):
        top = np.argsort(-sim[i])[:5]
        w = np.exp((sim[i, top] - sim[i, top].max()) / 0.1)
        for j, t in enumerate(top):
            want[i, labels[t]] += w[j] / w.sum()
    np.testing.assert_allclose(big.knn(q), want, atol=1e-5)
    bank.save(tmp_path / "b.safetensors")
    b2 = ReferenceBank.load(tmp_path / "b.safetensors")
    assert len(b2) == 3 and b2.k == 1
    # stored as fp16 (half the file), read back as float32, with the same votes to fp16 precision
    from safetensors import safe_open

    big.save(tmp_path / "big.safetensors")
    with safe_open(str(tmp_path / "big.safetensors"), "pt") as fh:
        assert fh.get_tensor("embeddings").dtype == torch.float16
    big2 = ReferenceBank.load(tmp_path / "big.safetensors")
    assert big2.emb.dtype == np.float32
    np.testing.assert_allclose(big2.knn(q), want, atol=0.02)
    with pytest.raises(ValueError):
        bank.add(np.ones((1, 5)), ["real"])


def test_mahalanobis_scores_outliers_higher(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    scorer = MahalanobisScorer.fit(real)
    inlier, outlier = scorer.score(rng.normal(size=(50, 8))), scorer.score(rng.normal(4, 1, size=(50, 8)))
    assert outlier.min() > inlier.mean()
    scorer.save(tmp_path / "a.safetensors")
    s2 = MahalanobisScorer.load(tmp_path / "a.safetensors")
    np.testing.assert_allclose(s2.score(real[:5]), scorer.score(real[:5]))
    with pytest.raises(ValueError):
        MahalanobisScorer.fit(real[:1])


def test_modality_floor_in_the_card_changes_only_that_modalitys_verdicts(det):
    from medfake.detection.detector import ShippedDetector

    thr = dict(det.card["thresholds"])
    assert isinstance(thr.get("by_modality"), dict)  # the calibration writes the floors (maybe none)
    thr["by_modality"] = {}
    t = thr["synthetic"]
    p = min(1.0, t + 0.01)
    base = ShippedDetector(det.module, {**det.card, "thresholds": thr})
    assert base.verdict_for(p, 0.0, "brain_mri") == base.verdict_for(p, 0.0, "chest_xray") == "synthetic"
    thr["by_modality"] = {"brain_mri": {"synthetic": min(1.0, p + 0.01), "synthetic_uncertain": min(1.0, p + 0.01)}}
    floored = ShippedDetector(det.module, {**det.card, "thresholds": thr})
    assert floored.verdict_for(p, 0.0, "brain_mri") == "real"
    assert floored.verdict_for(p, 0.0, "chest_xray") == "synthetic"


def test_small_input_gets_its_floors_and_a_note(det):
    """A small input is upsampled to 128 px: its verdict uses the small-input floors of the card, and the
    prediction (and the CSV row's message) says so; a 128 px input is untouched."""
    from medfake.detection.calibrate import SMALL_INPUT_SIDES
    from medfake.detection.detector import ShippedDetector
    from medfake.detection.run import detect_images

    thr = dict(det.card["thresholds"])
    assert set(thr["by_input_side"]) == {str(s) for s in SMALL_INPUT_SIDES}  # the calibration writes every side
    thr.update({"synthetic": 0.5, "synthetic_uncertain": 0.4, "by_modality": {},
                "by_input_side": {"32": {"synthetic": 1.0, "synthetic_uncertain": 1.0}, "64": {}}})
    d = ShippedDetector(det.module, {**det.card, "thresholds": thr})
    assert d.verdict_for(0.9, 0.0, "brain_mri", 128) == d.verdict_for(0.9, 0.0, "brain_mri", 64) == "synthetic"
    assert d.verdict_for(0.9, 0.0, "brain_mri", 40) == "real"
    rng = np.random.default_rng(3)
    small = Image(rng.random((33, 41)).astype(np.float32))
    big = Image(make_example("real", rng)[0])
    p_small, p_big = d.predict([small, big])
    assert "41x33 px" in p_small.note and "raised" in p_small.note and "side 32 px" in p_small.note
    assert p_big.note == ""
    # a side whose calibrated floors are empty: upsampled, but its thresholds are the 128 px ones, and it says so
    mid = Image(rng.random((80, 90)).astype(np.float32))
    p_mid = d.predict([mid])[0]
    assert "90x80 px" in p_mid.note and "thresholds hold" in p_mid.note and "side 64 px" in p_mid.note
    assert p_mid.verdict == d.verdict_for(p_mid.p_synthetic, p_mid.p_manipulated, p_mid.modality, 128)
    assert p_small.verdict == d.verdict_for(p_small.p_synthetic, p_small.p_manipulated, p_small.modality, 33)
    rows = detect_images(d, [("small.png", small), ("big.png", big)])
    assert "upsampled" in rows[0]["message"] and rows[1]["message"] == ""


def test_eval_reports_anomaly_and_knn_beside_the_classifier(det, tiny_dataset, tmp_path):
    from medfake.evaluation import evaluate

    res = evaluate(tiny_dataset, tmp_path / "ev", split="val", detector=det, robustness=False, adversarial=False,
                   external=False, progress=False)
    sa = res["score_aucs"]
    for k in ("fake", "p_synthetic_classifier", "p_manipulated_classifier", "knn_synthetic", "anomaly"):
        assert 0 <= sa[k]["checker"] <= 1, k
    # the checkerboard fakes are far from every real blob the anomaly scorer was fitted on
    assert sa["anomaly"]["checker"] > 0.8


def test_each_head_fuses_the_knn_score_with_its_own_weight(det, tiny_models_dir):
    from medfake.detection.detector import ShippedDetector, retrieval_weights

    assert set(det.retrieval_weights) == {"synthetic", "manipulated"}
    sel = det.card["retrieval"]["weight_selection"]["val"]  # the tiny card chose its weights on validation
    assert set(sel) == {"synthetic", "manipulated"} and all(0 < w < 1 for w in det.retrieval_weights.values())
    card = dict(det.card, retrieval=dict(det.card["retrieval"], weights={"synthetic": 0.1, "manipulated": 0.5}))
    d2 = ShippedDetector(det.module, card, det.bank, det.anomaly, "cpu")
    rng = np.random.default_rng(3)
    for p in d2.predict([Image(make_example(k, rng)[0]) for k in ("real", "synthetic", "manipulated")]):
        s = p.scores
        assert p.p_synthetic == pytest.approx(0.9 * s["p_synthetic_classifier"] + 0.1 * s["knn_synthetic"])
        assert p.p_manipulated == pytest.approx(0.5 * s["p_manipulated_classifier"] + 0.5 * s["knn_manipulated"])
    old = {"retrieval": {"weight": 0.2}}  # a card from before per-head weights
    assert retrieval_weights(old) == {"synthetic": 0.2, "manipulated": 0.2}


def test_manipulation_score_mixes_the_head_with_the_segmentation_map(det):
    """A card's `manipulation_score` section is applied at inference exactly as calibrated: p_manipulated of the
    classifier = sigmoid(z / T), z = (1 − α)(head − c₀)/s₀ + α(top-64 seg logit − c₁)/s₁; the attacks' score
    stays differentiable through the mix; α = 0 (or no section) is the head alone."""
    from medfake.detection.detector import ShippedDetector

    assert "selection" in det.card["manipulation_score"]  # the tiny card's calibration chose α on validation
    spec = {"seg_topk": 64, "alpha": 0.5, "center": [0.3, -1.0], "scale": [2.0, 0.5]}
    mixed = ShippedDetector(det.module, dict(det.card, manipulation_score=spec), None, None, "cpu")
    head = ShippedDetector(det.module, dict(det.card, manipulation_score={"alpha": 0.0}), None, None, "cpu")
    assert head.manip_score is None and mixed.manip_score == spec
    rng = np.random.default_rng(5)
    images = [Image(make_example(k, rng)[0]) for k in ("real", "manipulated", "manipulated")]
    pm, ph = mixed.predict(images), head.predict(images)
    for a, b in zip(pm, ph):
        s = a.scores
        z = 0.5 * (s["manipulation_head_logit"] - 0.3) / 2.0 + 0.5 * (s["segmentation_top_logit"] + 1.0) / 0.5
        assert s["p_manipulated_classifier"] == pytest.approx(1 / (1 + np.exp(-z / mixed.t_man)), rel=1e-4)
        assert "manipulation_head_logit" not in b.scores
        assert b.scores["p_manipulated_classifier"] == pytest.approx(
            1 / (1 + np.exp(-s["manipulation_head_logit"] / head.t_man)), rel=1e-3)
    x = mixed.canonical_batch(images).requires_grad_(True)
    mixed.score_tensor(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
