"""models/weights.py: strict loading and the weight-space blend of two fine-tunes."""

import pytest
import torch

from medfake.models.registry import create
from medfake.models.weights import WeightsMismatchError, interpolate_states, load_weights, save_weights


def _two_nets():
    torch.manual_seed(0)
    a = create("dual-srm", stem=4, widths=[4, 8, 8, 8, 8], seg_channels=4)
    b = create("dual-srm", stem=4, widths=[4, 8, 8, 8, 8], seg_channels=4)
    with torch.no_grad():
        for t in b.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t))
            else:
                t.fill_(7)
    return a.state_dict(), b.state_dict()


def test_interpolate_states_is_the_elementwise_blend():
    a, b = _two_nets()
    assert any(not t.is_floating_point() for t in a.values())  # BatchNorm's num_batches_tracked
    for w in (0.0, 0.3, 0.5, 1.0):
        m = interpolate_states(a, b, w)
        assert set(m) == set(a)
        for k, t in m.items():
            if t.is_floating_point():
                assert torch.allclose(t, (1 - w) * a[k] + w * b[k], atol=1e-6), (k, w)
            else:  # counters are not blended: the base's
                assert torch.equal(t, a[k])
    assert all(torch.equal(interpolate_states(a, b, 0.0)[k], a[k]) for k in a)  # the ends are exact
    assert all(torch.equal(interpolate_states(a, b, 1.0)[k], b[k]) for k in a if a[k].is_floating_point())


def test_interpolate_states_refuses_mismatches():
    a, b = _two_nets()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_states(a, b, 1.5)
    k = next(iter(b))
    with pytest.raises(WeightsMismatchError, match="different tensors"):
        interpolate_states(a, {kk: v for kk, v in b.items() if kk != k}, 0.5)
    with pytest.raises(WeightsMismatchError, match="shape"):
        interpolate_states(a, {**b, k: torch.zeros(3)}, 0.5)


def test_load_weights_is_strict(tmp_path):
    a, _ = _two_nets()
    net = create("dual-srm", stem=4, widths=[4, 8, 8, 8, 8], seg_channels=4)
    p = save_weights(a, tmp_path / "w.safetensors", fp16=False)
    load_weights(net, p)
    assert all(torch.equal(net.state_dict()[k], a[k]) for k in a)
    other = create("dual-srm", stem=4, widths=[4, 8, 8, 8, 16], seg_channels=4)
    with pytest.raises(WeightsMismatchError, match="does not match the architecture"):
        load_weights(other, p)
