"""Masks: shapes, feathering support, and one clear error per bad mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medfake.manipulation import ManipulationError, make_mask, mask_bounds


def test_rect_is_half_open_and_bool():
    m = make_mask((50, 60), rect=(10, 5, 20, 15))
    assert m.dtype == bool and m.shape == (50, 60)
    assert m.sum() == 100 and mask_bounds(m) == (10, 5, 20, 15)


def test_rect_from_cli_string_and_ellipse_polygon():
    assert make_mask((50, 60), rect="0,0,60,50").all()
    e = make_mask((50, 60), ellipse=(30, 25, 10, 5))
    assert e[25, 30] and not e[25, 41] and not e[31, 30]
    assert abs(int(e.sum()) - np.pi * 10 * 5) < 0.25 * np.pi * 10 * 5
    p = make_mask((50, 60), polygon="10,10,40,10,10,40")
    assert p[12, 12] and not p[38, 38]
    assert make_mask((50, 60), polygon=[(10, 10), (40, 10), (10, 40)]).sum() == p.sum()


def test_feather_grows_outwards_with_soft_alpha():
    base = make_mask((64, 64), rect=(20, 20, 40, 40))
    a = make_mask((64, 64), rect=(20, 20, 40, 40), feather=4)
    assert a.dtype == np.float32
    assert np.all(a[base] == 1.0)
    ring = (a > 0) & ~base
    assert ring.any() and np.all(a[ring] < 1.0)
    # support = the mask dilated by 4 px (Euclidean): the pixel 4 px left of the edge is in, 5 px is out
    assert a[30, 16] > 0 and a[30, 15] == 0
    assert np.all(np.diff(a[30, 14:21]) >= 0)


def test_mask_image_matches_and_thresholds(tmp_path):
    arr = np.zeros((30, 40), np.uint8)
    arr[5:10, 5:15] = 255
    PILImage.fromarray(arr).save(tmp_path / "m.png")
    m = make_mask((30, 40), mask_image=tmp_path / "m.png")
    assert m.sum() == 50
    assert make_mask((30, 40), mask_image=arr > 0).sum() == 50


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(rect=(10, 10, 70, 20)), "outside"),
        (dict(rect=(-1, 0, 5, 5)), "outside"),
        (dict(ellipse=(5, 25, 10, 5)), "outside"),
        (dict(polygon=(0, 0, 59, 0, 30, 80)), "outside"),
        (dict(rect=(10, 10, 10, 20)), "empty"),
        (dict(ellipse=(30, 25, 0, 5)), "empty"),
        (dict(polygon=(1, 1, 2, 2)), "at least 3"),
        (dict(rect=(1, 2, 3)), "expected 4"),
        (dict(rect="a,b,c,d"), "numbers"),
        (dict(), "exactly one"),
        (dict(rect=(0, 0, 5, 5), ellipse=(20, 20, 3, 3)), "exactly one"),
        (dict(rect=(0, 0, 5, 5), feather=-1), "feather"),
        (dict(mask_image=np.zeros((50, 60), bool)), "empty"),
        (dict(mask_image=np.ones((10, 60), bool)), "does not match"),
    ],
)
def test_bad_masks_raise_one_clear_error(kwargs, words):
    with pytest.raises(ManipulationError, match=words):
        make_mask((50, 60), **kwargs)


def test_mask_image_file_of_wrong_size(tmp_path):
    PILImage.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ManipulationError, match="does not match the image size 60×50"):
        make_mask((50, 60), mask_image=tmp_path / "m.png")
