"""The manipulation localizer: it trains on a tiny generated set (loss drops, the card and fp16 weights load), its
threshold is chosen on val, and a detector card that names it takes its explain masks from it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from medfake.data.canonical import to_canonical
from medfake.detection.detector import clear_cache, load_detector
from medfake.detection.localizer import THRESHOLD_GRID, load_localizer, train_localizer
from medfake.io.errors import MedfakeError
from medfake.io.image import Image

from .conftest import make_example

TINY_LOC = {"features": [4, 4, 8, 8, 16, 4]}


@pytest.fixture(scope="module")
def tiny_localizer(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("loc")
    card = train_localizer(tiny_dataset, out, name="loc", config=TINY_LOC, steps=60, batch_size=8, lr=1e-2,
                           device="cpu", seed=0, log=lambda m: None)
    return out, card


def test_train_localizer_loss_drops_and_card(tiny_localizer):
    out, card = tiny_localizer
    assert card["kind"] == "localizer" and card["architecture"] == "localizer-unet"
    assert card["loss_last"] < card["loss_first"]
    assert card["threshold"] in THRESHOLD_GRID
    m = card["metrics"]
    assert 0.0 <= m["pixel_f1"] <= 1.0 and m["n_manipulated"] > 0 and m["n_real"] > 0
    assert set(m["by_method"]) == {"checker"}
    assert card["train_images"]["manipulated"] > 0 and card["train_images"]["real"] > 0
    assert (out / "loc.safetensors").is_file()
    from safetensors.torch import load_file

    assert all(t.dtype == torch.float16 for t in load_file(out / "loc.safetensors").values())
    # the checkerboard patches are easy: after 60 steps the map must find them better than chance
    assert m["pixel_f1"] > 0.3


def test_localizer_masks_have_the_threshold(tiny_localizer):
    out, card = tiny_localizer
    loc = load_localizer("loc", out)
    x = torch.rand(3, 1, 128, 128)
    maps, masks = loc.maps(x), loc.masks(x)
    assert maps.shape == masks.shape == (3, 128, 128)
    assert ((maps >= 0) & (maps <= 1)).all()
    assert np.array_equal(masks, maps >= card["threshold"])


def test_a_fine_tune_starts_from_the_given_localizer(tiny_localizer, tiny_dataset, tmp_path):
    out, card = tiny_localizer
    # one step at a vanishing learning rate: the map is the base's (a fresh network would be near chance)
    ft = train_localizer(tiny_dataset, tmp_path / "ft", name="ft", config=TINY_LOC, steps=1, batch_size=8, lr=1e-9,
                         device="cpu", init_from=out / "loc.json", log=lambda m: None)
    assert ft["init_from"]["version"] == card["version"] and ft["total_steps"] == card["steps"] + 1
    assert abs(ft["metrics"]["pixel_f1"] - card["metrics"]["pixel_f1"]) < 0.02
    with pytest.raises(MedfakeError, match="same architecture"):
        train_localizer(tiny_dataset, tmp_path / "o", config={"features": [4, 4, 8, 8, 16, 8]}, steps=1,
                        device="cpu", init_from=out / "loc.json", log=lambda m: None)


def test_tta_maps_average_the_turned_views_and_turn_them_back():
    """`tta_maps`: the D4 average is equivariant (a turned or mirrored input gives the turned or mirrored map),
    which holds only if every view's map is turned back the right way; 1 view is the plain map."""
    from medfake.detection.localizer import tta_maps

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    x = torch.rand(2, 1, 32, 32)
    plain = tta_maps(net, x, 1)
    assert torch.allclose(plain, torch.sigmoid(net(x)))
    for views, ops in ((8, (lambda t: torch.rot90(t, 1, (-2, -1)), lambda t: t.flip(-1), lambda t: t.flip(-2))),
                       (2, (lambda t: t.flip(-1),))):
        m = tta_maps(net, x, views)
        assert m.shape == x.shape and ((m >= 0) & (m <= 1)).all()
        for op in ops:
            assert torch.allclose(tta_maps(net, op(x), views), op(m), atol=1e-6)
    assert not torch.allclose(tta_maps(net, torch.rot90(x, 1, (-2, -1)), 1), torch.rot90(plain, 1, (-2, -1)),
                              atol=1e-4)  # the plain net is not equivariant: the average above is what made it so
    with pytest.raises(MedfakeError, match="views"):
        tta_maps(net, x, 4)


def test_zero_steps_choose_the_threshold_again_for_test_time_views(tiny_localizer, tiny_dataset, tmp_path):
    """`steps=0` with `init_from`: the base's weights unchanged, the threshold and val pixel-F1 chosen on the
    requested views; the card records them and the loaded localizer's masks use them."""
    from safetensors.torch import load_file

    out, card = tiny_localizer
    assert card["tta_views"] == 8 and load_localizer("loc", out).tta_views == 8  # the default for new localizers
    same = train_localizer(tiny_dataset, tmp_path / "v8", name="v8", config=TINY_LOC, steps=0, device="cpu",
                           init_from=out / "loc.json", tta_views=8, log=lambda m: None)
    # the base's weights, version and training record; the thresholds chosen again (here: the same ones)
    assert (same["version"], same["steps"], same["loss_first"], same["total_steps"]) == (
        card["version"], card["steps"], card["loss_first"], card["total_steps"])
    assert same["threshold_choice"]["tta_views"] == 8 and same["name"] == "v8" and same["weights"] == "v8.safetensors"
    assert same["thresholds_by_views"] == card["thresholds_by_views"]
    assert same["metrics"]["pixel_f1"] == card["metrics"]["pixel_f1"] and same["threshold"] == card["threshold"]
    base_w, w = load_file(out / "loc.safetensors"), load_file(tmp_path / "v8" / "v8.safetensors")
    assert all(torch.equal(base_w[k], w[k]) for k in base_w)
    plain = train_localizer(tiny_dataset, tmp_path / "v1", name="v1", config=TINY_LOC, steps=0, device="cpu",
                            init_from=out / "loc.json", tta_views=1, log=lambda m: None)
    assert plain["tta_views"] == 1 and plain["metrics"]["tta_views"] == 1
    assert plain["metrics"]["pixel_f1_by_threshold"] != card["metrics"]["pixel_f1_by_threshold"]
    loc, loc1 = load_localizer("v8", tmp_path / "v8"), load_localizer("v1", tmp_path / "v1")
    x = torch.rand(2, 1, 128, 128)
    turned = torch.rot90(x, 1, (-2, -1))
    np.testing.assert_allclose(loc.maps(turned), np.rot90(loc.maps(x), 1, (-2, -1)), atol=1e-5)
    np.testing.assert_allclose(loc1.maps(x), torch.sigmoid(loc1.module(x))[:, 0].numpy(), atol=1e-6)
    with pytest.raises(MedfakeError, match="init_from"):
        train_localizer(tiny_dataset, tmp_path / "z", config=TINY_LOC, steps=0, device="cpu", log=lambda m: None)


def test_one_pass_gives_every_view_count_and_the_plain_logits():
    """`view_maps`: the 8-view pass holds the 1- and 2-view averages (the image, then its mirror) and the plain
    view's logits, equal to separate passes; `_predict_maps` gives them in one pass over batches that split the
    mapped and unmapped images unevenly, its top-k evidence the plain network's."""
    from medfake.detection.localizer import TOP_K, _predict_maps, tta_maps, view_maps
    from medfake.models.registry import create, make_config

    torch.manual_seed(0)
    net = create("localizer-unet", make_config("localizer-unet", TINY_LOC)).eval()
    x = torch.rand(5, 1, 128, 128)
    plain, maps = view_maps(net, x, 8)
    assert sorted(maps) == [1, 2, 8]
    with torch.no_grad():
        assert torch.equal(plain, net(x).float())
    for v in (1, 2, 8):
        assert torch.equal(maps[v], tta_maps(net, x, v))
    assert sorted(view_maps(net, x, 2)[1]) == [1, 2] and sorted(view_maps(net, x, 1)[1]) == [1]
    assert not torch.allclose(maps[1], maps[2]) and not torch.allclose(maps[2], maps[8])
    got, top = _predict_maps(net, x[:, 0].numpy(), "cpu", batch=2, views=8, n_maps=3)
    assert sorted(got) == [1, 2, 8]
    for v in (1, 2, 8):
        np.testing.assert_allclose(got[v], maps[v][:3, 0].numpy(), atol=1e-6)
    with torch.no_grad():
        want = net(x).flatten(1).topk(TOP_K, 1).values.mean(1).numpy()
    np.testing.assert_allclose(top, want, atol=1e-5)


def test_the_card_has_a_threshold_per_view_count_and_masks_use_the_chosen_one(tiny_localizer, tmp_path):
    """A card chosen on 8 views records val pixel-F1 and the threshold for 1 and 2 views too (same pass);
    `Localizer(views=...)` / `load_localizer(views=...)` mask at that count's threshold. A count the card has no
    threshold for is an error that names the fix; so is a count that is not 1, 2 or 8."""
    out, card = tiny_localizer
    by = card["metrics"]["by_views"]
    assert sorted(by, key=int) == ["1", "2", "8"] and card["thresholds_by_views"] == {
        v: by[v]["threshold"] for v in by}
    assert by["8"]["threshold"] == card["threshold"] and by["8"]["pixel_f1"] == card["metrics"]["pixel_f1"]
    assert set(by["1"]["pixel_f1_by_method"]) == {"checker"}
    x = torch.rand(2, 1, 128, 128)
    for v in (1, 2, 8):
        loc = load_localizer("loc", out, views=v)
        assert loc.tta_views == v and loc.threshold == card["thresholds_by_views"][str(v)]
        np.testing.assert_array_equal(loc.masks(x), loc.maps(x) >= loc.threshold)
    one = load_localizer("loc", out, views=1)
    np.testing.assert_allclose(one.maps(x), torch.sigmoid(one.module(x))[:, 0].numpy(), atol=1e-6)
    with pytest.raises(MedfakeError, match="must be one of"):
        load_localizer("loc", out, views=4)
    old = {k: v for k, v in card.items() if k not in ("thresholds_by_views", "_path")}
    d = tmp_path / "old"
    d.mkdir()
    (d / "loc.json").write_text(json.dumps(old))
    shutil.copy(out / "loc.safetensors", d / "loc.safetensors")
    assert load_localizer("loc", d).threshold == card["threshold"]
    with pytest.raises(MedfakeError, match="--steps 0 --init-from loc.json --tta-views 2"):
        load_localizer("loc", d, views=2)


def test_method_balance_evens_out_the_methods_draws(tiny_dataset, tmp_path):
    """`method_balance`: a method with few training rows gets a share of the manipulated draws ∝ n^(1 − b); at 0
    the draws follow the data (the earlier sampler), at 1 every method alike. The card records the shares."""
    import csv

    rows = list(csv.DictReader(tiny_dataset.open()))
    man_train = [r for r in rows if r["kind"] == "manipulated" and r["split"] == "train"]
    for r in man_train[:2]:
        r["generator"] = "rare"
    m = tiny_dataset.parent / "two_methods.csv"  # beside it: the rows' paths are relative to the manifest
    with m.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    n = len(man_train)

    def shares(b):
        card = train_localizer(m, tmp_path / f"b{b}", name="b", config=TINY_LOC, steps=1, batch_size=4,
                               device="cpu", method_balance=b, log=lambda s: None)
        assert card["method_balance"] == b
        return card["method_draw_shares"]

    assert shares(0.0) == pytest.approx({"checker": (n - 2) / n, "rare": 2 / n}, abs=1e-4)
    assert shares(1.0) == pytest.approx({"checker": 0.5, "rare": 0.5}, abs=1e-4)
    half = shares(0.5)
    assert 2 / n < half["rare"] < 0.5 and half["rare"] == pytest.approx(2 ** 0.5 / (2 ** 0.5 + (n - 2) ** 0.5),
                                                                          abs=1e-4)
    with pytest.raises(MedfakeError, match="method_balance"):
        train_localizer(m, tmp_path / "x", steps=1, device="cpu", method_balance=1.5, log=lambda s: None)


def test_localizer_needs_manipulated_rows(tmp_path, tiny_dataset):
    rows = tiny_dataset.read_text().splitlines()
    keep = [rows[0]] + [r for r in rows[1:] if ",manipulated," not in r]
    m = tiny_dataset.parent / "no_manip.csv"
    m.write_text("\n".join(keep) + "\n")
    with pytest.raises(MedfakeError, match="real and manipulated"):
        train_localizer(m, tmp_path / "o", steps=1, device="cpu", log=lambda s: None)
    with pytest.raises(MedfakeError, match="not a localizer architecture"):
        train_localizer(tiny_dataset, tmp_path / "o", architecture="dual-srm", steps=1, device="cpu",
                        log=lambda s: None)


def _models_with_localizer(tmp_path, tiny_models_dir, loc_dir):
    """A copy of the tiny models folder whose detector-default names the tiny localizer `loc` (copied beside it) and
    has no copy-move cue, so that its explain mask is the localizer's alone. Returns (folder, detector card)."""
    d = tmp_path / "models"
    shutil.copytree(tiny_models_dir, d)
    for f in loc_dir.glob("loc.*"):
        shutil.copy(f, d / f.name)
    card = json.loads((d / "detector-default.json").read_text())
    card["localizer"] = "loc"
    card.pop("copy_move", None)
    (d / "detector-default.json").write_text(json.dumps(card))
    clear_cache()
    return d, card


def test_detector_takes_masks_from_its_localizer(tmp_path, tiny_models_dir, tiny_localizer):
    d, card = _models_with_localizer(tmp_path, tiny_models_dir, tiny_localizer[0])
    det = load_detector("detector-default", d)
    assert det.localizer is not None and det.localizer.name == "loc"
    rng = np.random.default_rng(3)
    a, _ = make_example("manipulated", rng, size=96)  # not 128: masks come back at the input's size
    im = Image(a)
    pred = det.predict([im], explain=True)[0]
    assert pred.mask.shape == a.shape and pred.heatmap.shape == a.shape
    want = load_localizer("loc", d).masks(torch.as_tensor(to_canonical(im))[None, None])[0]
    from medfake.detection.detector import to_input_size

    assert np.array_equal(pred.mask, to_input_size(want.astype(np.float32), a.shape, nearest=True) >= 0.5)
    # verdicts and scores do not depend on the localizer
    plain = json.loads(json.dumps(card))
    plain.pop("localizer")
    (d / "plain.json").write_text(json.dumps({**plain, "name": "plain"}))
    p2 = load_detector("plain", d).predict([im])[0]
    p1 = det.predict([im])[0]
    assert (p1.verdict, p1.p_synthetic, p1.p_manipulated) == (p2.verdict, p2.p_synthetic, p2.p_manipulated)
    # a card that names a localizer the folder lacks is a clear error
    (d / "loc.json").unlink()
    card["version"] = "other"
    (d / "detector-default.json").write_text(json.dumps(card))
    clear_cache()
    with pytest.raises(MedfakeError, match="names the localizer 'loc'"):
        load_detector("detector-default", d)
    clear_cache()


def test_load_detector_mask_views_sets_the_localizers_views(tmp_path, tiny_models_dir, tiny_localizer):
    """`load_detector(mask_views=...)` (the CLI's --mask-views, the service's MEDFAKE_MASK_VIEWS): the explain mask
    is the localizer's at that view count and its threshold; verdicts do not change; each count is its own cached
    detector."""
    from medfake.detection.detector import to_input_size

    loc_dir, card = tiny_localizer
    d, _ = _models_with_localizer(tmp_path, tiny_models_dir, loc_dir)
    rng = np.random.default_rng(5)
    a, _ = make_example("manipulated", rng, size=128)
    im = Image(a)
    x = torch.as_tensor(to_canonical(im))[None, None]
    preds = {}
    for v in (None, 1, 2):
        det = load_detector("detector-default", d, mask_views=v)
        assert det.localizer.tta_views == (v or 8)
        assert det.localizer.threshold == card["thresholds_by_views"][str(v or 8)]
        preds[v] = det.predict([im], explain=True)[0]
        want = load_localizer("loc", d, views=v).masks(x)[0]
        assert np.array_equal(preds[v].mask, to_input_size(want.astype(np.float32), a.shape, nearest=True) >= 0.5)
    assert load_detector("detector-default", d, mask_views=1) is not load_detector("detector-default", d)
    assert len({(p.verdict, p.p_synthetic, p.p_manipulated) for p in preds.values()}) == 1
    clear_cache()
