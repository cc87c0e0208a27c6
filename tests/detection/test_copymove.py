"""The copy-move cue (duplicated texture inside one image): finds a pasted copy and where it is, ignores images
without one (including periodic stripes and straight edges, which match themselves along a ridge of offsets), and
the detector fuses it and uses the thresholds calibrated with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medfake.detection.copymove import CopyMoveConfig, copy_move_scores, fuse, score_to_probability


def texture(seed: int, size: int = 128, sigma: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((size, size)), sigma) + 0.3 * gaussian_filter(rng.random((size, size)), 6)
    a = (a - a.min()) / (a.max() - a.min())
    return (np.round(a * 255) / 255).astype(np.float32)


def with_copy(a: np.ndarray, src=(10, 12), dst=(70, 60), side=30) -> tuple[np.ndarray, np.ndarray]:
    out = a.copy()
    (sy, sx), (ty, tx) = src, dst
    out[ty:ty + side, tx:tx + side] = a[sy:sy + side, sx:sx + side]
    mask = np.zeros_like(a, bool)
    mask[ty:ty + side, tx:tx + side] = True
    return out, mask


def as_batch(*arrays) -> torch.Tensor:
    return torch.as_tensor(np.stack(arrays)[:, None])


def test_a_copied_region_scores_high_and_its_map_covers_copy_and_source():
    a = texture(0)
    fake, mask = with_copy(a)
    src = np.zeros_like(mask)
    src[10:40, 12:42] = True
    scores, regions, offs = copy_move_scores(as_batch(a, fake), return_maps=True)
    assert scores[1] > 0.2 > 0.1 > scores[0]
    assert regions.shape == (2, 2, 128, 128) and regions.dtype == torch.bool
    assert sorted([tuple(offs[1].tolist()), tuple((-offs[1]).tolist())]).count((60, 48)) == 1
    both = (regions[1, 0] | regions[1, 1]).numpy()
    truth = mask | src
    iou = (both & truth).sum() / (both | truth).sum()
    assert iou > 0.6, iou
    # each of the two regions is one of the pair
    for r in regions[1].numpy():
        assert max((r & mask).sum(), (r & src).sum()) / r.sum() > 0.8


def test_the_rim_of_a_field_of_view_is_not_a_copy():
    """A CT-like disc (anti-aliased rim, fine noise inside): windows on the rim match shifted pieces of the curved
    edge better than their neighbouring offsets do; the anisotropy weight takes that away."""
    yy, xx = np.mgrid[:128, :128]
    discs = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        r = np.hypot(yy - 64 + rng.uniform(-3, 3), xx - 64 + rng.uniform(-3, 3))
        disc = np.clip(60 - r, 0, 1)
        a = 0.35 * disc + 0.3 * np.clip(50 - r, 0, 1) + 0.02 * gaussian_filter(rng.normal(size=r.shape), 0.7) * disc
        discs.append((np.round(np.clip(a, 0, 1) * 255) / 255).astype(np.float32))
    plain = copy_move_scores(as_batch(*discs), CopyMoveConfig(autocorrelation=True, edge_weight=0.0))
    weighted = copy_move_scores(as_batch(*discs), CopyMoveConfig(autocorrelation=True))
    assert CopyMoveConfig().edge_weight > 0
    assert (weighted < 0.03).all() and weighted.max() < 0.5 * plain.max(), (plain, weighted)
    votes = copy_move_scores(as_batch(*discs), CopyMoveConfig(autocorrelation=False))  # no rim window votes
    assert (votes < 0.03).all(), votes


def test_no_copy_stripes_edges_and_flat_images_score_low():
    yy, xx = np.mgrid[:128, :128]
    stripes = (0.5 + 0.4 * np.sin(yy / 3.0)).astype(np.float32)  # periodic: matches itself at every period
    edges = ((xx > 40).astype(np.float32) * 0.6 + (yy > 90) * 0.3).astype(np.float32)
    flat = np.full((128, 128), 0.4, np.float32)
    scores = copy_move_scores(as_batch(texture(1), texture(2), stripes, edges, flat))
    assert torch.isfinite(scores).all()
    assert (scores < 0.1).all(), scores
    assert scores[-1] == 0


def test_empty_batch_and_probability_map():
    s, r, o = copy_move_scores(torch.zeros((0, 1, 128, 128)), return_maps=True)
    assert s.shape == (0,) and r.shape == (0, 2, 128, 128) and o.shape == (0, 2)
    # images too small for any offset to be examined score 0 (they scored garbage such as −1.2e9 before)
    tiny = torch.as_tensor(np.random.default_rng(0).random((40, 1, 6, 6)), dtype=torch.float32)
    s, r, o = copy_move_scores(tiny, return_maps=True)
    assert (s == 0).all() and r.shape == (40, 2, 6, 6) and not r.any()
    p = score_to_probability([0.0, 0.3, 1.0], center=0.3, scale=0.03)
    assert p[0] < 1e-3 and abs(p[1] - 0.5) < 1e-9 and p[2] > 0.999
    assert np.allclose(fuse([0.2, 0.0], [0.5, 0.0]), [0.6, 0.0])


def test_config_round_trips_through_a_card_dict():
    cfg = CopyMoveConfig(window=5, candidates=3)
    assert CopyMoveConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg


@pytest.fixture(scope="module")
def det(tiny_models_dir):
    from medfake.detection import load_detector

    return load_detector("tiny-dual", tiny_models_dir)


def test_detector_card_has_the_cue_and_with_copy_move_fuses_it(det):
    from medfake.io.image import Image

    section = det.card["copy_move"]
    assert section["center"] >= 0.1 and section["thresholds"]["manipulated"] is not None
    cm = det.with_copy_move()
    assert cm.version == det.version + "+copy-move"
    assert cm.thresholds == section["thresholds"] and det.thresholds == det.card["thresholds"]
    a = texture(3, sigma=0.7)  # finer texture: a sharper match than the tiny set's shifted reals (copy scores ≈ 0.7)
    fake, mask = with_copy(a)
    plain = det.predict([Image(a), Image(fake)], explain=True)
    fused = cm.predict([Image(a), Image(fake)], explain=True)
    assert "copy_move" not in plain[1].scores
    assert fused[1].scores["copy_move"] > 0.5 > 0.2 > fused[0].scores["copy_move"]
    assert fused[1].scores["p_copy_move"] > 0.99
    assert fused[1].p_manipulated >= plain[1].p_manipulated
    assert fused[1].p_manipulated > 0.99 and fused[1].verdict == "manipulated"
    assert fused[1].mask.shape == (128, 128) and (fused[1].mask & mask).sum() > 0.5 * mask.sum()
    # the references path keeps the cue
    assert cm.with_references([Image(a)], ["real"]).copy_move is cm.copy_move


def test_with_copy_move_on_a_card_without_the_cue_is_a_clear_error(det):
    from medfake.detection.detector import ShippedDetector
    from medfake.io.errors import MedfakeError

    card = {k: v for k, v in det.card.items() if k != "copy_move"}
    old = ShippedDetector(det.module, card, det.bank, det.anomaly)
    with pytest.raises(MedfakeError, match="no calibrated copy-move cue"):
        old.with_copy_move()


def test_detect_paths_copy_move_column(tiny_models_dir, tmp_path):
    from PIL import Image as PILImage

    from medfake.detection import detect_paths

    fake, _ = with_copy(texture(4, sigma=0.7))
    PILImage.fromarray(np.round(fake * 255).astype(np.uint8)).save(tmp_path / "cm.png")
    rows = detect_paths([tmp_path], detector="tiny-dual", models_dir=tiny_models_dir, copy_move=True)
    assert rows[0]["copy_move"] > 0.3 and rows[0]["verdict"] == "manipulated"
    assert detect_paths([tmp_path], detector="tiny-dual", models_dir=tiny_models_dir) == rows  # on by default
    rows = detect_paths([tmp_path], detector="tiny-dual", models_dir=tiny_models_dir, copy_move=False)
    assert rows[0]["copy_move"] is None


def test_the_cue_is_on_by_default_where_the_card_has_it(det):
    """None (every entry point's default) fuses the cue when the card calibrated one and otherwise keeps the plain
    detector; True requires it; False takes it off again; asking twice does not fuse twice."""
    from medfake.detection.detector import ShippedDetector, use_copy_move
    from medfake.io.errors import MedfakeError

    plain = det
    on = use_copy_move(plain, None)
    assert on.copy_move is not None and on.version == plain.version + "+copy-move"
    assert use_copy_move(on, None) is on and use_copy_move(on, True) is on
    assert plain.with_copy_move() is on and on._lock is plain._lock  # made once, one explain lock per network
    off = use_copy_move(on, False)
    assert off.copy_move is None and off.version == plain.version and off.thresholds == plain.thresholds
    assert use_copy_move(plain, False) is plain
    card = {k: v for k, v in det.card.items() if k != "copy_move"}  # a card calibrated without the cue
    old = ShippedDetector(det.module, card, det.bank, det.anomaly)
    assert use_copy_move(old, None) is old
    with pytest.raises(MedfakeError, match="no calibrated copy-move cue"):
        use_copy_move(old, True)


def test_sparse_correlations_match_a_direct_computation():
    """The fast paths (zero-padded gathers, the 8 neighbouring offsets from one patch, slice shifts, windowed means
    at chosen pixels) give the plain definition's numbers, including offsets that move a window partly or wholly
    off the image."""
    from medfake.detection.copymove import _box, _shifted, _SparseCorr, _window_mean, residual

    rng = np.random.default_rng(3)
    h, w, win = 23, 19, 5
    r = torch.as_tensor(rng.standard_normal((2, h, w)), dtype=torch.float64)
    e = _box(r[:, None] ** 2, win)[:, 0]
    p = win // 2
    rp = np.pad(r.numpy(), ((0, 0), (h + p, h + p), (w + p, w + p)))
    ep = np.pad(e.numpy(), ((0, 0), (h, h), (w, w)))

    def direct(i, y, x, dy, dx):
        a = rp[i, h + y:h + y + win, w + x:w + x + win]
        b = rp[i, h + y + dy:h + y + dy + win, w + x + dx:w + x + dx + win]
        return (a * b).sum() / max(np.sqrt(ep[i, h + y, w + x] * ep[i, h + y + dy, w + x + dx]), 1e-12)

    py = torch.as_tensor(rng.integers(0, h, (2, 3, 7)))
    px = torch.as_tensor(rng.integers(0, w, (2, 3, 7)))
    sc = _SparseCorr(r, e, py, px, win)
    for dy, dx in [(0, 1), (-4, 6), (h - 1, 0), (2, -w + 1), (h - 2, w - 2), (-h + 1, -w + 1)]:
        got = sc.at(torch.full(py.shape, dy), torch.full(px.shape, dx)).numpy()
        want = np.array([[[direct(i, int(py[i, a, b]), int(px[i, a, b]), dy, dx) for b in range(7)]
                          for a in range(3)] for i in range(2)])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        got = sc.best_neighbour(torch.full(py.shape, dy), torch.full(px.shape, dx)).numpy()
        want = np.max([sc.at(torch.full(py.shape, dy + a), torch.full(px.shape, dx + b)).numpy()
                       for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)], axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    offs = torch.tensor([[[3, -5], [-h + 1, 2]], [[0, w - 1], [h, 0]]])
    got = _shifted(r, offs).numpy()
    for i in range(2):
        for m, (dy, dx) in enumerate(offs[i].tolist()):
            want = np.pad(r[i].numpy(), ((h + 1, h + 1), (w + 1, w + 1)))[h + 1 + dy:2 * h + 1 + dy,
                                                                          w + 1 + dx:2 * w + 1 + dx]
            np.testing.assert_array_equal(got[i, m], want)
    c = residual(torch.rand(2, 1, h, w, dtype=torch.float64)).expand(2, 3, h, w).contiguous()
    ci = torch.as_tensor(rng.integers(0, h * w, (2, 3, 4)))
    want = torch.gather((_box(c, 5) / 25).flatten(2), 2, ci)
    torch.testing.assert_close(_window_mean(c, ci, 5), want)


def test_candidate_offsets_are_the_most_prominent_autocorrelation_peaks():
    """The half-plane search gives what a direct search of every offset gives: the direct linear autocorrelation,
    each offset's prominence over its 8 neighbours (wrapping around the ±offset grid) per √overlap, the K best
    examined offsets, one of each ± pair."""
    from medfake.detection.copymove import candidate_offsets, residual

    cfg = CopyMoveConfig(min_offset=3, min_overlap=20)
    h, w = 14, 11
    copied, _ = with_copy(texture(4, 64), src=(2, 3), dst=(20, 30), side=12)
    x = torch.stack([torch.as_tensor(copied[16:16 + h, 20:20 + w]),
                     torch.as_tensor(texture(9, 64)[:h, :w])])[:, None].double()
    r = residual(x)
    box = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(r * r, (3, 3, 3, 3)), cfg.window, stride=1)
    rn = (r / (box.sqrt() + cfg.whiten))[:, 0].numpy()
    for i in range(2):
        ac = {}
        for dy in range(-h + 1, h):
            for dx in range(-w + 1, w):
                a = rn[i, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
                b = rn[i, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
                ac[dy, dx] = (a * b).sum()

        def at(dy, dx):  # the 2h × 2w grid wraps around; offsets of no overlap correlate 0
            dy, dx = (dy + h) % (2 * h) - h, (dx + w) % (2 * w) - w
            return ac.get((dy, dx), 0.0)

        prom = {}
        for (dy, dx), v in ac.items():
            overlap = (h - abs(dy)) * (w - abs(dx))
            if max(abs(dy), abs(dx)) < cfg.min_offset or overlap < cfg.min_overlap or not (dy > 0 or (dy == 0 < dx)):
                continue
            nb = max(at(dy + a, dx + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0))
            prom[dy, dx] = (v - nb) / np.sqrt(overlap)
        want = sorted(prom, key=prom.get, reverse=True)  # every examined offset, in order: each prominence counts
        got = candidate_offsets(r[i:i + 1], dataclasses.replace(cfg, candidates=len(prom)))[0]
        assert [tuple(o) for o in got.tolist()] == want


def test_the_gpus_indexed_shift_equals_the_cpus_slice_copies(monkeypatch):
    # a GPU shifts by one indexing read (the slice loop was one kernel launch per pair); checked here on the CPU
    from medfake.detection import copymove

    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 37, 41, generator=g)
    offs = torch.randint(-50, 51, (5, 6, 2), generator=g)
    offs[0, 0], offs[1, 1], offs[2, 2], offs[3, 3] = (torch.tensor(v) for v in ([0, 0], [36, -40], [37, 0], [-37, -41]))
    assert torch.equal(copymove._shifted_indexed(a, offs), copymove._shifted(a, offs))
    x = torch.as_tensor(np.stack([texture(1, sigma=0.7), with_copy(texture(4, sigma=0.7))[0]])[:, None])
    cfg = CopyMoveConfig(autocorrelation=True)  # the shifts are the autocorrelation's
    s0, r0, o0 = copy_move_scores(x, cfg, return_maps=True)
    monkeypatch.setattr(copymove, "_shifted", copymove._shifted_indexed)
    s1, r1, o1 = copy_move_scores(x, cfg, return_maps=True)
    assert torch.equal(s1, s0) and torch.equal(r1, r0) and torch.equal(o1, o0)


@pytest.mark.parametrize("autocorrelation", [True, False])
def test_rounding_noise_does_not_move_a_copys_score_or_map(autocorrelation):
    # an exact copy holds ~576 windows of correlation 1 ± 1e-7, more than the 128 examined: choosing among them by
    # float rounding moved the score by up to 0.035 under 1e-7 input noise (and by 0.023 between a GPU and the CPU)
    imgs = [texture(4, sigma=0.7), with_copy(texture(4, sigma=0.7))[0]]
    x = torch.as_tensor(np.stack(imgs)[:, None])
    cfg = CopyMoveConfig(autocorrelation=autocorrelation)
    s0, r0, o0 = copy_move_scores(x, cfg, return_maps=True)
    assert s0[1] > 0.2
    for seed, eps in enumerate((1e-7, 1e-6, 1e-5)):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        s1, r1, o1 = copy_move_scores(x + eps * noise, cfg, return_maps=True)
        torch.testing.assert_close(s1, s0, atol=1e-3, rtol=0)
        assert torch.equal(o1, o0) and (r1 != r0).float().mean() < 0.001


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU path of the cue is checked "
                                                            "where one exists (the CPU path is every other test)")
@pytest.mark.parametrize("autocorrelation", [True, False])
def test_the_cue_gives_the_same_scores_and_maps_on_a_gpu(autocorrelation):
    imgs = [texture(s, sigma=0.7) for s in range(3)] + [with_copy(texture(4, sigma=0.7))[0]]
    x = torch.as_tensor(np.stack(imgs)[:, None])
    cfg = CopyMoveConfig(autocorrelation=autocorrelation)
    s_cpu, r_cpu, o_cpu = copy_move_scores(x, cfg, return_maps=True)
    s_gpu, r_gpu, o_gpu = copy_move_scores(x.cuda(), cfg, return_maps=True)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, atol=1e-4, rtol=1e-4)
    assert torch.equal(o_gpu.cpu(), o_cpu) and (r_gpu.cpu() != r_cpu).float().mean() < 0.01


def test_block_matching_finds_a_small_near_copy_that_the_autocorrelation_misses():
    """A 16 px copy with ±1 grey-level changes (the paste-back of a resampled copy): the autocorrelation's K
    candidates miss its offset, block matching votes for it, and the score rises from real-image level; texture
    without a copy gets no offset with enough votes."""
    from medfake.detection.copymove import block_match, candidate_offsets, residual

    cfg = CopyMoveConfig()
    images = []
    for seed in range(3):
        fake, mask = with_copy(texture(seed), src=(20, 15), dst=(80, 70), side=16)
        fake[mask] = np.clip(fake[mask] + np.random.default_rng(seed).integers(-1, 2, mask.sum()) / 255, 0, 1)
        images.append(fake)
    x = as_batch(*images)
    ac = candidate_offsets(residual(x), cfg)
    assert not (ac == torch.tensor([60, 55])).all(-1).any()
    found = block_match(x, cfg)
    matched, votes = found.offsets, found.votes
    assert matched.shape == (3, cfg.match_candidates, 2)
    assert (matched[:, 0] == torch.tensor([60, 55])).all() and (votes[:, 0] >= 3 * cfg.match_votes).all(), votes
    without = copy_move_scores(x, dataclasses.replace(cfg, match_candidates=0, autocorrelation=True))
    with_, regions, offs = copy_move_scores(x, cfg, return_maps=True)
    assert (without < 0.05).all() and (with_ > 0.15).all(), (without, with_)
    assert (offs == torch.tensor([60, 55])).all()
    src = np.zeros_like(mask)
    src[20:36, 15:31] = True
    for r in regions.numpy():  # the matched windows and their partners: source and copy
        for got, want in ((r[0], src), (r[1], mask)):
            assert (got & want).sum() / (got | want).sum() > 0.7
    plain = block_match(as_batch(texture(1), texture(2)), cfg)
    assert (plain.votes < cfg.match_votes).all() and (plain.score == 0).all(), plain.votes


def test_a_card_written_before_block_matching_runs_without_it():
    old = {k: v for k, v in CopyMoveConfig().to_dict().items()
           if not k.startswith("match_") and k not in ("max_flat", "autocorrelation")}
    was = CopyMoveConfig.from_dict(old)
    assert (was.match_candidates, was.max_flat, was.autocorrelation) == (0, 1.0, True)
    assert CopyMoveConfig().autocorrelation  # the default, as every card before the switch existed
    assert CopyMoveConfig.from_dict(CopyMoveConfig().to_dict()) == CopyMoveConfig()
    assert CopyMoveConfig.from_dict(None) == CopyMoveConfig()


def test_burned_in_text_repeated_across_a_dual_pane_display_is_not_a_copy():
    """The same annotation twice on a uniform strip (a dual-pane ultrasound's caption): an exact duplicate, which the
    cue found before windows on a uniform background were ignored (max_flat)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    images = []
    for seed in range(3):
        a = texture(seed)
        a[104:124] = 0.18
        im = PILImage.fromarray(np.round(a * 255).astype(np.uint8))
        for x0 in (4, 68):
            ImageDraw.Draw(im).text((x0, 108), "9123 5.0 R15", fill=250)
        images.append(np.asarray(im, np.float32) / 255)
    x = as_batch(*images)
    assert (copy_move_scores(x, CopyMoveConfig(max_flat=1.0)) > 0.3).all()  # the duplicate is there
    assert (copy_move_scores(x) < 0.05).all()


def test_the_coarse_pass_finds_a_copy_after_jpeg_75_that_the_fine_cue_loses():
    """JPEG 75 changes each pixel by a grey level or more, differently in the copy and its source (their 8 × 8 JPEG
    blocks fall differently): no fine hash (2 px cells, 6/255 bins) matches any more and the correlation sinks to
    real-image level. The coarse pass (3 px cells, 14/255 bins) still votes for the offset, and its map is the copy
    and its source; the images without a copy get no coarse votes."""
    import io

    from PIL import Image

    from medfake.detection.copymove import block_match

    def jpeg(a: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(np.round(a * 255).astype(np.uint8)).save(buf, "JPEG", quality=75)
        return np.asarray(Image.open(buf), np.float32) / 255

    cfg = CopyMoveConfig()
    fine_only = dataclasses.replace(cfg, coarse_cell=0)
    for seed in range(3):
        a = texture(seed, sigma=1.5)
        fake, mask = with_copy(a, dst=(70, 61))
        x = as_batch(jpeg(a), jpeg(fake))
        assert block_match(x, cfg).score.max() == 0
        assert copy_move_scores(x, fine_only).max() < 0.05
        coarse = block_match(x, cfg.coarse()).score
        assert coarse[0] == 0 and coarse[1] > 0.5
        scores, regions, offs = copy_move_scores(x, cfg, return_maps=True)
        assert scores[0] < 0.05 and scores[1] == coarse[1]
        assert sorted([tuple(offs[1].tolist()), tuple((-offs[1]).tolist())]).count((60, 49)) == 1
        found = regions[1, 0] | regions[1, 1]
        src = np.zeros_like(mask)
        src[10:40, 12:42] = True
        assert (found.numpy() & (mask | src)).sum() / found.sum() > 0.9 and (found.numpy() & mask).sum() > 0.5 * 900


def test_cards_calibrated_before_the_coarse_pass_run_without_it():
    d = CopyMoveConfig().to_dict()
    assert CopyMoveConfig.from_dict(d).coarse_cell == 3  # a card written since keeps it
    for k in ("coarse_cell", "coarse_quant", "coarse_norm"):
        d.pop(k)
    old = CopyMoveConfig.from_dict(d)
    assert old.coarse_cell == 0 and old.match_candidates == 2  # block matching (fine) stays as calibrated


@pytest.mark.parametrize("seed", range(4))
def test_of_the_two_matching_regions_the_copy_is_the_one_with_a_seam(seed):
    """The cue's map marks a copy and its source alike; a pasted copy's content does not continue across its edge,
    its source's does. copy_of_pair keeps the copy, wherever the two lie (the paste swapped with its source too)."""
    from medfake.detection.copymove import copy_of_pair, seam_strength

    a = texture(seed, sigma=1.0)
    for src, dst in (((10, 12), (70, 60)), ((70, 60), (10, 12))):
        fake, mask = with_copy(a, src=src, dst=dst)
        _, regions, _ = copy_move_scores(as_batch(fake), return_maps=True)
        regions = regions[0].numpy()
        assert regions[0].any() and regions[1].any()
        got = copy_of_pair(fake, regions)
        assert (got & mask).sum() / got.sum() > 0.9, (src, dst)
        copy = max(regions, key=lambda r: (r & mask).sum())
        source = min(regions, key=lambda r: (r & mask).sum())
        assert seam_strength(fake, copy) > seam_strength(fake, source)
    assert seam_strength(a, np.zeros_like(mask)) == 0.0
    assert copy_of_pair(a, np.stack([mask, mask])).sum() == mask.sum()  # equal seams: both (here one region)


@pytest.mark.parametrize("per_sort", [64, 2])  # one sort for the batch; and images split across several sorts
def test_equal_pairs_are_the_windows_sharing_a_hash_with_exactly_one_other(monkeypatch, per_sort):
    from medfake.detection import copymove

    monkeypatch.setattr(copymove, "_SORT_IMAGES", per_sort)
    g = torch.Generator().manual_seed(0)
    key = torch.randint(0, 40, (5, 30), generator=g) * (2 ** 40) + 7  # many repeats: pairs, triples and singles
    key[4] = torch.arange(30) + 1000  # all distinct: no pairs
    key[3, :] = 5  # all equal: a constant pattern, no pairs
    tex = torch.rand((5, 30), generator=g) < 0.7
    img, p0, p1 = copymove._equal_pairs(key, tex)
    got = sorted((int(i), *sorted((int(a), int(b)))) for i, a, b in zip(img, p0, p1))
    want = []
    for i in range(5):
        for v in set(key[i][tex[i]].tolist()):
            at = [j for j in range(30) if tex[i, j] and key[i, j] == v]
            if len(at) == 2:
                want.append((i, *at))
    assert got == sorted(want) and len(want) > 3  # the keys above make several pairs
    empty = copymove._equal_pairs(key, torch.zeros_like(tex))
    assert all(t.numel() == 0 for t in empty)


def test_bins_finer_than_a_grey_level_are_refused():
    with pytest.raises(ValueError, match="grey level"):
        CopyMoveConfig(match_quant=0.5 / 255)
    with pytest.raises(ValueError, match="grey level"):
        CopyMoveConfig(coarse_quant=0.5 / 255)
    # no block matching: the bins are not used
    CopyMoveConfig(match_candidates=0, match_quant=0.5 / 255, autocorrelation=True)


def test_without_the_autocorrelation_the_score_is_the_block_matching_vote():
    """`autocorrelation` False: the score is the larger of the fine and coarse passes' vote scores and the map their
    windows; with it (the default) the score is never below the votes' (the larger of the two kinds of evidence)."""
    from medfake.detection.copymove import block_match, flat_pixels

    a = texture(3)
    fake, mask = with_copy(a, side=24)
    x = as_batch(a, fake, texture(4))
    cfg = CopyMoveConfig(autocorrelation=False)
    s, regions, offs = copy_move_scores(x, cfg, return_maps=True)
    flat = flat_pixels(x)
    votes = torch.maximum(block_match(x, cfg, flat).score, block_match(x, cfg.coarse(), flat).score)
    assert torch.equal(s, votes) and s[1] > 0.2 and s[0] < 0.05 and s[2] < 0.05, s
    assert not regions[0].any() and not regions[2].any()
    assert (regions[1, 0] | regions[1, 1]).numpy()[mask].mean() > 0.8
    assert sorted([tuple(offs[1].tolist()), tuple((-offs[1]).tolist())]).count((60, 48)) == 1

    assert CopyMoveConfig.from_dict(cfg.to_dict()) == cfg
    both = copy_move_scores(x, CopyMoveConfig())
    assert (both >= s).all() and not torch.equal(both, s)  # the correlation's sharpness where it is the larger
    with pytest.raises(ValueError, match="autocorrelation or block matching"):
        CopyMoveConfig(match_candidates=0, autocorrelation=False)
