"""Temperature scaling, 1%-FPR thresholds and the verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from medfake.detection.calibrate import apply_temperature, fit_temperature, threshold_at_fpr, verdict


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
