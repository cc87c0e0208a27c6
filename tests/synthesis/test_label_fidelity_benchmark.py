"""benchmarks/label_fidelity.py: the label score is renormalised over the asked modality's labels."""

import numpy as np
import pytest
import torch

from medfake.data.modalities import CLASS_INDEX


def _net_favouring(*classes, logit=8.0):
    """A real 20-way linear classifier whose output ignores the image and favours the given (modality, label)s."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128 * 128, len(CLASS_INDEX)))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.zero_()
        for c in classes:
            net[1].bias[CLASS_INDEX[c]] = logit
    return net


def test_label_scores_renormalise_over_the_modality(load_benchmark):
    lf = load_benchmark("label_fidelity")
    arr = np.random.default_rng(0).random((3, 128, 128), dtype=np.float32)
    # a chest X-ray class far ahead of every brain class does not count for brain_mri's labels
    net = _net_favouring(("brain_mri", "glioma"), ("chest_xray", "NORMAL"), logit=8.0)
    with torch.no_grad():
        net[1].bias[CLASS_INDEX[("chest_xray", "NORMAL")]] = 30.0
    p, top = lf.label_scores(net, arr, "brain_mri", "glioma")
    assert top == 1.0 and p == pytest.approx(np.exp(8) / (np.exp(8) + 3), rel=1e-5)
    p, top = lf.label_scores(net, arr, "brain_mri", "notumor")
    assert top == 0.0 and p == pytest.approx(1 / (np.exp(8) + 3), rel=1e-4)
    p, top = lf.label_scores(_net_favouring(), arr, "chest_xray", "PNEUMONIA")  # no preference: chance
    assert p == pytest.approx(0.5)
