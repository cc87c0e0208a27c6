from medfake.detection.base import Prediction
from medfake.evaluation.run import task_metrics


def _p(ps, pm, verdict):
    return Prediction(modality="brain_mri", p_synthetic=ps, p_manipulated=pm, verdict=verdict)


def test_task_metrics_hand_computed():
    kinds = ["real", "real", "real", "synthetic", "synthetic", "manipulated"]
    mods = ["brain_mri", "brain_mri", "chest_xray", "brain_mri", "brain_mri", "brain_mri"]
    preds = [_p(0.1, 0.1, "real"), _p(0.7, 0.1, "synthetic"), _p(0.2, 0.3, "uncertain"),
             _p(0.9, 0.2, "synthetic"), _p(0.4, 0.1, "uncertain"), _p(0.2, 0.8, "manipulated")]
    out = task_metrics(kinds, mods, preds, {"synthetic": 0.5, "manipulated": 0.5})
    syn = out["synthetic"]  # reals 0.1, 0.7, 0.2 vs synthetic 0.9, 0.4 at 0.5: TP 1, FP 1, FN 1
    assert syn["precision"] == 0.5 and syn["recall"] == 0.5 and syn["f1"] == 0.5
    assert abs(syn["roc_auc"] - 5 / 6) < 1e-9  # fake>real pairs: 0.9 beats all 3 reals, 0.4 beats 0.1 and 0.2
    man = out["manipulated"]
    assert man["f1"] == 1.0 and man["roc_auc"] == 1.0
    fa = out["real_false_alarms"]
    assert fa["brain_mri"] == {"n_real": 2, "not_real": 0.5, "called_fake": 0.5}
    assert fa["chest_xray"] == {"n_real": 1, "not_real": 1.0, "called_fake": 0.0}


def test_task_metrics_leave_out_a_switched_off_head():
    kinds = ["real", "real", "synthetic", "manipulated"]
    preds = [_p(0.0, 0.1, "real"), _p(0.0, 0.2, "real"), _p(0.0, 0.3, "real"), _p(0.0, 0.9, "manipulated")]
    out = task_metrics(kinds, ["brain_mri"] * 4, preds, {"synthetic": None, "manipulated": 0.5})
    assert "synthetic" not in out and out["manipulated"]["f1"] == 1.0
    # a detector that states no thresholds at all is scored at 0.5
    assert task_metrics(kinds, ["brain_mri"] * 4, preds, {})["synthetic"]["recall"] == 0.0


def test_task_metrics_apply_the_per_modality_floor_of_the_predicted_modality():
    kinds = ["real", "real", "synthetic", "synthetic"]
    preds = [_p(0.1, 0.0, "real"), _p(0.7, 0.0, "real"), _p(0.9, 0.0, "synthetic"), _p(0.75, 0.0, "synthetic")]
    preds[1].modality = preds[3].modality = "breast_us"  # a hot modality: its floor is 0.8
    thr = {"synthetic": 0.5, "manipulated": 0.5, "synthetic_uncertain": 0.3, "manipulated_uncertain": 0.3,
           "by_modality": {"breast_us": {"synthetic": 0.8}}}
    syn = task_metrics(kinds, ["brain_mri"] * 4, preds, thr)["synthetic"]
    # brain_mri at 0.5: real 0.1 no, fake 0.9 yes; breast_us at 0.8: real 0.7 no, fake 0.75 no → TP 1, FP 0, FN 1
    assert syn["confusion"] == [[2, 0], [1, 1]] and syn["threshold"] == 0.5
    flat = task_metrics(kinds, ["brain_mri"] * 4, preds, {k: v for k, v in thr.items() if k != "by_modality"})
    assert flat["synthetic"]["confusion"] == [[1, 1], [0, 2]]
