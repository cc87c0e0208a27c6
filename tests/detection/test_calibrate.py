"""Temperature scaling, 1%-FPR thresholds and the verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from medfake.detection.calibrate import (apply_temperature, fit_temperature, head_thresholds, modality_floors,
                                        monotone_side_floors, threshold_at_fpr, thresholds_for, verdict, verdict_at)


def test_temperature_recovers_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.5
    true_logit = np.where(y, 1.0, -1.0) + rng.normal(0, 1.0, y.size)
    # labels drawn from the calibrated probabilities, logits reported 3× too large
    labels = rng.random(y.size) < apply_temperature(true_logit, 1.0)
    t = fit_temperature(3.0 * true_logit, labels.astype(float))
    assert 2.5 < t < 3.5
    p = apply_temperature(3.0 * true_logit, t)
    assert np.all((p >= 0) & (p <= 1))


def test_probabilities_stay_in_unit_interval_for_extreme_logits():
    p = apply_temperature(np.array([-1e6, -50, 0, 50, 1e6]), 0.05)
    assert np.all((p >= 0) & (p <= 1)) and p[2] == 0.5


def test_temperature_needs_two_classes_and_valid_input():
    assert fit_temperature([1.0, 2.0], [1.0, 1.0]) == 1.0
    with pytest.raises(ValueError):
        fit_temperature([], [])


def test_threshold_gives_at_most_one_percent_fpr():
    rng = np.random.default_rng(1)
    p_real = rng.random(1000)
    t = threshold_at_fpr(p_real, 0.01)
    assert (p_real >= t).mean() <= 0.01
    assert (p_real >= t - 0.01).mean() > 0.005  # and not far more conservative than needed
    assert threshold_at_fpr(np.zeros(50), 0.01) == 0.05  # floor


@pytest.mark.parametrize("ps,pm,expected", [
    (0.95, 0.10, "synthetic"),
    (0.10, 0.90, "manipulated"),
    (0.95, 0.90, "manipulated"),  # manipulated takes precedence
    (0.10, 0.10, "real"),  # both below 0.5 × threshold
    (0.50, 0.10, "uncertain"),  # between 0.5 × t_s and t_s
    (0.10, 0.35, "uncertain"),
])
def test_verdict_rule(ps, pm, expected):
    assert verdict(ps, pm, t_synthetic=0.8, t_manipulated=0.6) == expected


def test_verdict_without_manipulation_head():
    assert verdict(0.1, 0.99, 0.8, None) == "real"
    assert verdict(0.9, 0.0, 0.8, None) == "synthetic"


@pytest.mark.parametrize("ps,pm,expected", [
    (0.70, 0.10, "uncertain"),  # ≥ u_synthetic
    (0.55, 0.10, "real"),  # below the explicit u, though above the old 0.5·t default
    (0.10, 0.45, "uncertain"),
    (0.10, 0.39, "real"),
])
def test_verdict_with_explicit_uncertain_thresholds(ps, pm, expected):
    assert verdict(ps, pm, 0.8, 0.6, u_synthetic=0.7, u_manipulated=0.4) == expected


def test_head_thresholds_bound_fake_and_not_real_rates_over_all_heads():
    rng = np.random.default_rng(2)
    p_syn, p_man = rng.random(2000), rng.random(2000)  # independent heads: the union is the worst case
    cuts = head_thresholds({"synthetic": p_syn, "manipulated": p_man}, target_fpr=0.01)
    (ts, us), (tm, um) = cuts["synthetic"], cuts["manipulated"]
    assert us <= ts and um <= tm
    v = [verdict(a, b, ts, tm, u_synthetic=us, u_manipulated=um) for a, b in zip(p_syn, p_man)]
    called_fake = np.mean([x in ("synthetic", "manipulated") for x in v])
    not_real = np.mean([x != "real" for x in v])
    assert called_fake <= 0.01 and not_real <= 0.015
    assert not_real > called_fake > 0.005  # the bounds are used, not over-tightened
    one = head_thresholds({"synthetic": p_syn}, target_fpr=0.01)["synthetic"]
    assert (p_syn >= one[0]).mean() <= 0.01 and one[0] < ts  # one head gets the whole 1%


def test_threshold_moves_into_the_gap_before_the_positives_without_losing_tpr():
    rng = np.random.default_rng(3)
    p_real = rng.uniform(0.0, 0.04, 1000)  # all below the 0.05 floor
    p_pos = rng.uniform(0.98, 1.0, 200)
    t, u = head_thresholds({"synthetic": p_real}, 0.01, p_pos_by_head={"synthetic": p_pos})["synthetic"]
    assert 0.5 < t < 0.98  # middle of 0.05 and ~0.98, not the floor
    assert (p_pos >= t).all() and not (p_real >= t).any()
    assert u == pytest.approx(0.5 * t)  # "uncertain" is the neighbourhood of t, not everything above the reals
    # overlapping scores: the FPR bound still holds and t never passes the lowest positive above the bound
    p_real2, p_pos2 = rng.random(1000), rng.uniform(0.5, 1.0, 300)
    t0, _ = head_thresholds({"m": p_real2}, 0.01)["m"]
    t2, _ = head_thresholds({"m": p_real2}, 0.01, p_pos_by_head={"m": p_pos2})["m"]
    assert t0 <= t2 <= p_pos2[p_pos2 >= t0].min() and (p_real2 >= t2).mean() <= 0.01
    assert (p_pos2 >= t2).sum() == (p_pos2 >= t0).sum()


def test_per_modality_floors_bound_every_modality_and_never_lower_the_global():
    """Two modalities: one's reals score like the other's fakes would. A global 1 % threshold lets 5 % of the hot
    modality's reals through; its floor brings that modality back to the bound, the cool one is untouched."""
    rng = np.random.default_rng(0)
    cool, hot = rng.uniform(0.0, 0.3, 2000), rng.uniform(0.0, 0.6, 400)
    hot[:20] = rng.uniform(0.6, 0.8, 20)  # 5 % of the hot modality's reals score high
    cuts = head_thresholds({"synthetic": np.concatenate([cool, hot])}, 0.01)
    glob = {"synthetic": cuts["synthetic"][0], "synthetic_uncertain": cuts["synthetic"][1],
            "manipulated": None, "manipulated_uncertain": None}
    assert (hot >= glob["synthetic"]).mean() > 0.01  # the global threshold breaks the per-modality bound
    floors = {m: modality_floors(glob, head_thresholds({"synthetic": p}, 0.01)) for m, p in (("cool", cool), ("hot", hot))}
    assert floors["cool"] == {}  # its own cut is below the global one: nothing is lowered
    card = {**glob, "by_modality": {m: f for m, f in floors.items() if f}}
    t_hot = thresholds_for(card, "hot")
    assert t_hot["synthetic"] > glob["synthetic"] and (hot >= t_hot["synthetic"]).mean() <= 0.01
    assert t_hot["synthetic_uncertain"] <= t_hot["synthetic"]
    assert thresholds_for(card, "cool") == thresholds_for(card, None) == {k: glob[k] for k in t_hot}
    # a verdict at the modality's thresholds: the same score is fake in the cool modality, real in the hot one
    p = (glob["synthetic"] + t_hot["synthetic"]) / 2
    t_c = thresholds_for(card, "cool")
    assert verdict(p, 0.0, t_c["synthetic"], None, u_synthetic=t_c["synthetic_uncertain"]) == "synthetic"
    assert verdict(p, 0.0, t_hot["synthetic"], None, u_synthetic=t_hot["synthetic_uncertain"]) in ("real", "uncertain")


def test_small_input_floors_apply_by_short_side_and_only_raise():
    """An input upsampled from a small side gets the floors calibrated at the largest side not above its own (the
    smallest calibrated side below that); none at 128 px; a smaller side never gets lower floors than a larger one;
    a higher per-modality floor is kept."""
    glob = {"synthetic": 0.8, "synthetic_uncertain": 0.6, "manipulated": 0.7, "manipulated_uncertain": 0.5}
    floors = monotone_side_floors({"48": {"synthetic": 0.97, "manipulated": 0.9}, "32": {"synthetic": 0.95},
                                   "64": {}})
    assert list(floors) == ["32", "48", "64"]
    assert floors["32"] == {"synthetic": 0.97, "manipulated": 0.9} and floors["64"] == {}
    card = {**glob, "by_modality": {"hot": {"synthetic": 0.99}}, "by_input_side": floors}
    assert thresholds_for(card, None) == thresholds_for(card, None, 128) == thresholds_for(card, None, 512) == glob
    assert thresholds_for(card, None, 64) == thresholds_for(card, None, 100) == glob  # 64's floors are empty
    t50 = thresholds_for(card, None, 50)
    assert t50["synthetic"] == 0.97 and t50["manipulated"] == 0.9
    assert thresholds_for(card, None, 20) == thresholds_for(card, None, 33)  # below the smallest side: its floors
    assert thresholds_for(card, "hot", 40)["synthetic"] == 0.99  # the modality's higher floor stays
    for side in (20, 40, 50):
        t = thresholds_for(card, None, side)
        assert t["synthetic_uncertain"] <= t["synthetic"] and t["manipulated_uncertain"] <= t["manipulated"]
    # the same score: synthetic from a 128 px input, not from a 40 px one
    assert verdict_at(0.9, 0.0, thresholds_for(card, None, 128)) == "synthetic"
    assert verdict_at(0.9, 0.0, thresholds_for(card, None, 40)) == "uncertain"
    assert verdict_at(0.5, 0.0, thresholds_for(card, None, 40)) == "real"


def test_retrieval_weight_is_chosen_on_validation():
    from medfake.detection.train import RETRIEVAL_WEIGHTS, choose_retrieval_weight

    rng = np.random.default_rng(0)
    n = 400
    pos = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    real = ~pos
    good = np.r_[rng.uniform(0, 0.5, n), rng.uniform(0.5, 1, n)]  # separates
    noise = rng.uniform(0, 1, 2 * n)  # does not
    w, table = choose_retrieval_weight(good, noise, pos, real, None, 0.01)
    assert w == min(RETRIEVAL_WEIGHTS) and set(table) == {str(g) for g in RETRIEVAL_WEIGHTS}
    w, _ = choose_retrieval_weight(noise, good, pos, real, None, 0.01)  # the kNN score is the informative one
    assert w == max(RETRIEVAL_WEIGHTS)
    w, _ = choose_retrieval_weight(good, good, pos, real, None, 0.01)  # every w ties: the default
    assert w == 0.3
    # the shifted reals of the pool set the threshold too: high-scoring shifted reals under the classifier make
    # the kNN-heavy weight the better one
    shifted = (np.full(50, 0.99), np.zeros(50))
    w, table = choose_retrieval_weight(good, good, pos, real, shifted, 0.01)
    assert table["0.5"]["tpr"] > table["0.1"]["tpr"] and w == 0.5


def test_segmentation_mix_is_chosen_on_validation():
    """choose_seg_mix: α = 1 when only the segmentation evidence separates, no mix (None) when only the head does
    or when they tie; the spec standardises both parts on the real val images; shifted reals in the pool count."""
    from medfake.detection.scores import SEG_MIX_GRID, choose_seg_mix, mix

    rng = np.random.default_rng(0)
    n = 400
    pos = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    real = ~pos
    good = np.r_[rng.normal(0, 1, n), rng.normal(4, 1, n)]
    noise = rng.normal(0, 1, 2 * n)
    spec, table = choose_seg_mix(noise, 10 * good + 3, pos, real, None, 0.01)
    assert spec["alpha"] == 1.0 and set(table) == {str(a) for a in SEG_MIX_GRID}
    z = mix(noise, 10 * good + 3, spec)
    assert abs(z[real].mean()) < 1e-3 and abs(z[real].std() - 1) < 1e-3  # standardised on the val reals
    assert choose_seg_mix(good, noise, pos, real, None, 0.01)[0] is None  # the head alone wins
    assert choose_seg_mix(good, good, pos, real, None, 0.01)[0] is None  # ties go to the smaller α
    # both informative but the segmentation part fires on shifted reals: the pool keeps the head alone
    both = np.r_[rng.normal(0, 1, n), rng.normal(3, 1, n)]
    shifted = (rng.normal(0, 1, 100), np.full(100, 8.0))
    assert choose_seg_mix(good, both, pos, real, shifted, 0.01)[0] is None
