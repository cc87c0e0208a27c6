"""benchmarks/ensemble_probe.py's plain rule on constructed scores: thresholds at the val reals' 99th percentile
per head, synthetic before manipulated, and the table row's rates."""

import numpy as np


def test_plain_rule_thresholds_and_order(load_benchmark):
    probe = load_benchmark("ensemble_probe")
    rng = np.random.default_rng(0)
    val = np.column_stack([rng.random(1000), rng.random(1000) * 0.5, np.zeros(1000)])
    val_real = np.ones(1000, bool)
    x = np.array([[0.999, 0.0, 0], [0.5, 0.499, 0], [0.5, 0.4, 0], [0.999, 0.499, 0]])
    # thresholds ≈ 0.99 (synthetic) and ≈ 0.495 (manipulated); a score over both is called synthetic
    assert probe.verdicts(val, val_real, x).tolist() == [1, 2, 0, 1]
    # fakes in the val set do not move the thresholds: only val reals count
    val2 = np.vstack([val, np.ones((500, 3))])
    assert probe.verdicts(val2, np.r_[val_real, np.zeros(500, bool)], x).tolist() == [1, 2, 0, 1]


def test_row_reports_f1_recall_and_outside_rates(load_benchmark):
    probe = load_benchmark("ensemble_probe")
    kinds = np.array(["real"] * 4 + ["synthetic"] * 2 + ["manipulated"] * 2)
    mods = np.array(["brain_mri", "brain_mri", "lung_ct", "lung_ct"] * 2)
    v_test = np.array([0, 0, 0, 1, 1, 0, 2, 2])  # one lung_ct real flagged, one synthetic missed
    line = probe.row("x", v_test, kinds, mods, [np.array([0, 0, 0, 1]), np.array([0, 3])])
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "x"
    assert cells[1] == "0.500 / 0.50"  # synthetic: tp 1, 2 predicted not real among real+synthetic, 2 true
    assert cells[2] == "0.800 / 1.00"  # manipulated: tp 2, 3 predicted, 2 true
    assert cells[3] == "lung_ct 50.0%"
    assert cells[4:6] == ["25.0%", "50.0%"] and cells[6].startswith("**33.3%** (2 of 6)")


def test_k_of_n_alarms_where_k_members_do_with_their_majority_verdict(load_benchmark):
    probe = load_benchmark("ensemble_probe")
    v = np.array([[0, 1, 1, 2, 3, 1],
                  [0, 0, 1, 2, 3, 2],
                  [0, 0, 2, 0, 1, 3]])  # members × images: 0 real, 1 synthetic, 2 manipulated, 3 uncertain
    assert probe.k_of_n(v, 2).tolist() == [0, 0, 1, 2, 3, 1]  # the last: one vote each, synthetic first
    assert probe.k_of_n(v, 3).tolist() == [0, 0, 1, 0, 3, 1]
    assert probe.k_of_n(v, 1).tolist() == [0, 1, 1, 2, 3, 1]
