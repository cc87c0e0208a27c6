"""Every metric against a case computed by hand."""

import numpy as np
import pytest

from medfake.evaluation.metrics import (
    binary_metrics, eer, localization_metrics, modality_confusion, pixel_scores, tpr_at_fpr,
)

# reals 0.1 0.4 0.6, fakes 0.35 0.8 0.9; threshold 0.5 → TN 2, FP 1 (0.6), FN 1 (0.35), TP 2
Y = [0, 0, 0, 1, 1, 1]
S = [0.1, 0.4, 0.6, 0.35, 0.8, 0.9]


def test_binary_metrics_by_hand():
    m = binary_metrics(Y, S, 0.5)
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["f1_macro"] == pytest.approx(2 / 3)  # class 0: P = R = 2/3 too
    # 9 (fake, real) pairs; fake 0.35 beats 1 real, 0.8 and 0.9 beat all 3 → 7/9
    assert m["roc_auc"] == pytest.approx(7 / 9)
    # ranked F F R R F R: AP = 1/3·1 + 1/3·1 + 1/3·3/5
    assert m["average_precision"] == pytest.approx(13 / 15)
    # ROC (0,0) (0,2/3) (2/3,2/3) (2/3,1) (1,1): FPR = FNR = 1/3 half-way along the flat segment
    assert m["eer"] == pytest.approx(1 / 3)
    # at FPR 0 the best TPR is 2/3
    assert m["tpr_at_1pct_fpr"] == pytest.approx(2 / 3)
    assert (m["n"], m["n_real"], m["n_fake"]) == (6, 3, 3)


def test_threshold_moves_decisions_not_ranking():
    m = binary_metrics(Y, S, 0.3)  # every fake and 2 reals called fake
    assert m["confusion"] == [[1, 2], [0, 3]]
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(3 / 5)
    assert m["roc_auc"] == pytest.approx(7 / 9)


def test_perfect_and_inverted_separation():
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert tpr_at_fpr([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert tpr_at_fpr([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_tpr_at_1pct_needs_fpr_below_one_percent():
    # 100 reals, one of them scored above every fake: FPR 1 % at the top is allowed, 2 % is not
    y = [0] * 100 + [1] * 10
    s = list(np.linspace(0, 0.5, 99)) + [0.99] + [0.9] * 5 + [0.6] * 5
    assert tpr_at_fpr(y, s, 0.01) == 1.0
    s2 = s[:98] + [0.995, 0.99] + s[100:]
    assert tpr_at_fpr(y, s2, 0.01) == 0.0


def test_one_class_gives_nan_auc_not_a_crash():
    m = binary_metrics([1, 1], [0.2, 0.9])
    assert np.isnan(m["roc_auc"]) and np.isnan(m["eer"]) and m["recall"] == 0.5


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="differ in length"):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        binary_metrics([0, 2], [0.5, 0.1])
    with pytest.raises(ValueError, match="no samples"):
        binary_metrics([], [])


def test_pixel_f1_and_iou_by_hand():
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[0:2, 1:4] = True  # 6 px, 2 of them inside gt
    p = pixel_scores(gt, pred)
    assert p["f1"] == pytest.approx(2 * 2 / (4 + 6))  # 0.4
    assert p["iou"] == pytest.approx(2 / (4 + 6 - 2))  # 0.25
    loc = localization_metrics([(gt, pred), (gt, None)])
    assert loc["pixel_f1"] == pytest.approx(0.2) and loc["iou"] == pytest.approx(0.125)
    assert loc["missing"] == 1 and loc["n"] == 2
    assert pixel_scores(np.zeros((2, 2)), np.zeros((2, 2))) == {"f1": 1.0, "iou": 1.0}
    with pytest.raises(ValueError, match="shape"):
        pixel_scores(gt, np.zeros((3, 3), bool))


def test_modality_confusion_12_classes():
    mods = ["chest_xray", "lung_ct"]
    c = modality_confusion(["chest_xray", "chest_xray", "lung_ct", "lung_ct"], [0, 1, 0, 1],
                           ["chest_xray", "lung_ct", "lung_ct", "unknown"], [0, 1, 1, 1], mods)
    assert c["classes"] == ["chest_xray/real", "chest_xray/fake", "lung_ct/real", "lung_ct/fake"]
    m = np.array(c["matrix"])
    assert m[0, 0] == 1  # chest real → chest real
    assert m[1, 3] == 1  # chest fake → lung fake (right call, wrong modality)
    assert m[2, 3] == 1  # lung real → lung fake
    assert m.sum() == 3 and c["unknown_predictions"] == 1
