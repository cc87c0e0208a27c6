"""The data-set builder on a tiny real set with tiny generators trained 2 steps in the session."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image as PILImage

from medfake.evaluation import BuildError, build_dataset, check_leakage
from medfake.evaluation.build import MANIFEST_COLUMNS, assign_splits, mask_from_geometry, random_mask_geometry

from .conftest import BUILD_KW, manipulation_methods


def _rows(root):
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_manifest_and_formats(built):
    rows = _rows(built)
    assert set(MANIFEST_COLUMNS) <= set(rows[0])
    kinds = Counter((r["kind"], r["generator"]) for r in rows)
    assert kinds[("real", "real")] == 16
    for g in ("ddpm", "ddim", "dcgan"):
        assert kinds[("synthetic", g)] == 16  # 8 per modality × 2 modalities
    for m in manipulation_methods():
        assert kinds[("manipulated", m)] == 16
    for r in rows:
        p = built / r["path"]
        assert p.parts[-5:-1] == ("images", r["kind"], r["generator"], r["modality"])
        with PILImage.open(p) as im:  # every image, real or fake, is the canonical 128 px 8-bit PNG
            assert (im.format, im.mode, im.size) == ("PNG", "L", (128, 128))
            assert not im.info  # no text/gamma/... chunks
        if r["kind"] == "synthetic":
            assert r["model_version"] and r["seed"] and not r["source"]
        if r["kind"] == "real":
            assert r["source"] and not r["mask"]
        if r["kind"] == "manipulated":
            assert r["source"] and r["mask"]
            with PILImage.open(built / r["mask"]) as mk:
                a = np.asarray(mk)
            assert a.shape == (128, 128) and set(np.unique(a)) <= {0, 255} and (a == 255).any()
    audit = json.loads((built / "audit.json").read_text())
    assert audit["passed"] and audit["auc"] < 0.6


def test_no_leakage_and_split_proportions(built):
    rows = _rows(built)
    check_leakage(rows)
    real_split = {r["source"]: r["split"] for r in rows if r["kind"] == "real"}
    for r in rows:
        if r["kind"] == "manipulated":
            assert r["split"] == real_split[r["source"]]
            if r["generator"] == "splice":
                assert r["donor"] and real_split[r["donor"]] == r["split"]
    # the folder had 8 reals per modality → 70/15/15 → 6/1/1; 8 synthetic per modality follow 6/1/1 too
    for m in ("chest_xray", "lung_ct"):
        real = Counter(r["split"] for r in rows if r["kind"] == "real" and r["modality"] == m)
        assert real == {"train": 6, "val": 1, "test": 1}
        for g in ("ddpm", "dcgan"):
            syn = Counter(r["split"] for r in rows if r["generator"] == g and r["modality"] == m)
            assert syn == real


def test_diffusion_manipulations_inject_or_remove(built):
    rows = [r for r in _rows(built) if r["generator"] == "repaint-ddim"]
    if not rows:
        pytest.skip("medfake.manipulation not available")
    healthy = {"chest_xray": "NORMAL", "lung_ct": "NonCOVID"}
    ops = Counter("remove" if r["label"] == healthy[r["modality"]] else "inject" for r in rows)
    assert ops["remove"] > 0 and ops["inject"] > 0


def test_deterministic_and_resumable(built, real_folder, tiny_models, tmp_path):
    kw = dict(BUILD_KW, manipulated=["copy-move"] if manipulation_methods() else [], per_modality=4,
              synthetic=["dcgan", "ddim"])
    a = build_dataset(real_folder, tmp_path / "a", models_dir=tiny_models, progress=False, **kw)
    b = build_dataset(real_folder, tmp_path / "b", models_dir=tiny_models, progress=False, workers=2, **kw)
    ra, rb = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [(r["path"], r["split"], r["sha256_pixels"]) for r in ra] == [(r["path"], r["split"], r["sha256_pixels"]) for r in rb]
    assert a["resumed"] == 0
    # interrupt: lose two finished files and the last log line; the rerun makes exactly what is missing
    lost = [r for r in ra if r["kind"] != "real"][:2]
    for r in lost:
        (tmp_path / "a" / r["path"]).unlink()
    log = tmp_path / "a" / "items.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # a half-written line
    c = build_dataset(real_folder, tmp_path / "a", models_dir=tiny_models, progress=False, **kw)
    assert c["resumed"] == len(ra) - 3
    assert [r["sha256_pixels"] for r in _rows(tmp_path / "a")] == [r["sha256_pixels"] for r in ra]
    # a different seed in the same folder is refused, not mixed in
    with pytest.raises(BuildError, match="different settings.*seed"):
        build_dataset(real_folder, tmp_path / "a", models_dir=tiny_models, progress=False, **dict(kw, seed=8))


def test_bad_input_is_one_clear_error(tmp_path, real_folder, tiny_models):
    with pytest.raises(BuildError, match="does not exist"):
        build_dataset(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(BuildError, match="unknown generator 'gan'"):
        build_dataset(real_folder, tmp_path / "o", synthetic=["gan"], manipulated=[], models_dir=tiny_models)
    with pytest.raises(BuildError, match="unknown manipulation"):
        build_dataset(real_folder, tmp_path / "o", synthetic=[], manipulated=["blur"])
    from medfake.io.errors import MedfakeError

    with pytest.raises(MedfakeError, match="unknown model 'ddpm'"):
        build_dataset(real_folder, tmp_path / "o2", synthetic=["ddpm"], manipulated=[], models_dir=tmp_path)
    assert not (tmp_path / "o2" / "manifest.csv").exists()


def test_assign_splits_and_masks():
    rng = np.random.default_rng(0)
    s = assign_splits(20, {"train": 1500, "val": 200, "test": 200}, rng)
    assert Counter(s) == {"train": 16, "val": 2, "test": 2}
    for _ in range(50):
        g = random_mask_geometry(rng)
        assert 12 <= g["h"] <= 45 and 12 <= g["w"] <= 45  # 10–35 % of 128
        m = mask_from_geometry(g)
        assert m.any() and m.shape == (128, 128)
        ys, xs = np.nonzero(m)
        assert ys.min() >= g["y0"] and ys.max() < g["y0"] + g["h"] and xs.max() < g["x0"] + g["w"]


def test_extend_a_build_with_vae_reconstructions(real_folder, tiny_models, tmp_path):
    """Adding a generator to a finished build keeps every built item and adds only the new ones; VAE
    reconstructions come from real images of the same split and are new pixels."""
    kw = dict(BUILD_KW, synthetic=["dcgan"], manipulated=[], per_modality=2)
    build_dataset(real_folder, tmp_path / "x", models_dir=tiny_models, progress=False, **kw)
    before = {r["path"]: r["sha256_pixels"] for r in _rows(tmp_path / "x")}
    s = build_dataset(real_folder, tmp_path / "x", models_dir=tiny_models, progress=False,
                      **dict(kw, synthetic=["dcgan", "vae"], counts={"vae": 3}))
    rows = _rows(tmp_path / "x")
    assert s["resumed"] == len(before)
    assert {r["path"]: r["sha256_pixels"] for r in rows if r["path"] in before} == before
    vae = [r for r in rows if r["generator"] == "vae"]
    assert Counter(r["modality"] for r in vae) == {"chest_xray": 3, "lung_ct": 3}
    reals = {r["source"]: r for r in rows if r["kind"] == "real"}
    for r in vae:
        assert r["kind"] == "synthetic" and r["model_version"].startswith("vae-")
        src = reals[r["source"]]
        assert src["split"] == r["split"] and src["label"] == r["label"]
        assert src["sha256_pixels"] != r["sha256_pixels"]
        with PILImage.open(tmp_path / "x" / r["path"]) as im:
            assert im.size == (128, 128) and im.mode == "L"
    check_leakage(rows)
    # changing what was already built is still refused
    with pytest.raises(BuildError, match="different settings.*counts"):
        build_dataset(real_folder, tmp_path / "x", models_dir=tiny_models, progress=False,
                      **dict(kw, synthetic=["dcgan", "vae"], counts={"vae": 3, "dcgan": 1}))


def test_repaint_masks_feathered_as_the_cli_does(real_folder, tiny_models, tmp_path):
    """RePaint edits get the 2 px feather `medfake manipulate` uses by default (so the benchmark's edits carry no
    seam the tool's own edits lack); their masks are the feathered support; `feather=0` gives the drawn mask;
    a build's feather cannot change on resume, but a method added later brings its own default."""
    if "repaint-ddim" not in manipulation_methods():
        pytest.skip("medfake.manipulation not available")
    from scipy import ndimage

    kw = dict(BUILD_KW, synthetic=[], manipulated=["repaint-ddim"], per_modality=2)
    build_dataset(real_folder, tmp_path / "soft", models_dir=tiny_models, progress=False, **kw)
    build_dataset(real_folder, tmp_path / "sharp", models_dir=tiny_models, progress=False, feather=0, **kw)
    assert json.loads((tmp_path / "soft" / "build.json").read_text())["feather"] == {"repaint-ddim": 2.0}
    assert "feather" not in json.loads((tmp_path / "sharp" / "build.json").read_text())
    soft, sharp = _rows(tmp_path / "soft"), _rows(tmp_path / "sharp")
    pairs = [(a, b) for a, b in zip(soft, sharp) if a["kind"] == "manipulated"]
    assert len(pairs) == 4 and all(a["path"] == b["path"] for a, b in pairs)
    for a, b in pairs:
        with PILImage.open(tmp_path / "soft" / a["mask"]) as m1, PILImage.open(tmp_path / "sharp" / b["mask"]) as m2:
            soft_m, sharp_m = np.asarray(m1) > 127, np.asarray(m2) > 127
        # the support is the drawn mask grown by the feather (2 px, plus the linear ramp's last partial pixel)
        assert (soft_m & ~sharp_m).any() and not (sharp_m & ~soft_m).any()
        assert not (soft_m & ~ndimage.binary_dilation(sharp_m, np.ones((3, 3), bool), iterations=3)).any()
        with PILImage.open(tmp_path / "soft" / a["path"]) as i1, PILImage.open(tmp_path / "sharp" / b["path"]) as i2:
            assert not np.array_equal(np.asarray(i1), np.asarray(i2))
    with pytest.raises(BuildError, match="different settings.*feather"):
        build_dataset(real_folder, tmp_path / "soft", models_dir=tiny_models, progress=False, feather=0, **kw)
    # adding a classical method to the sharp build: its own default (none) keeps the build extendable
    s = build_dataset(real_folder, tmp_path / "sharp", models_dir=tiny_models, progress=False, feather=0,
                      **dict(kw, manipulated=["repaint-ddim", "retouch"]))
    assert s["resumed"] == len(sharp)
    with pytest.raises(BuildError, match="feather must be"):
        build_dataset(real_folder, tmp_path / "bad", models_dir=tiny_models, progress=False, feather=-1, **kw)
    # repaint_eta reaches repaint-ddim (η = 0: the first benchmark build's deterministic sampler) and build.json
    build_dataset(real_folder, tmp_path / "eta0", models_dir=tiny_models, progress=False, feather=0, repaint_eta=0,
                  **kw)
    assert json.loads((tmp_path / "eta0" / "build.json").read_text())["repaint_eta"] == 0.0
    eta0 = {r["path"]: r["sha256_pixels"] for r in _rows(tmp_path / "eta0") if r["kind"] == "manipulated"}
    assert all(eta0[b["path"]] != b["sha256_pixels"] for _, b in pairs)


def test_sampling_plain_or_as_the_card_chose(real_folder, tiny_models, tmp_path):
    """The DDPM's fakes are drawn at the plain settings whatever its card chose (so a rebuild draws the same
    benchmark), or with `sampling="card"` at the card's per-modality choice (what `medfake synth` does)."""
    import shutil

    md = tmp_path / "models"
    shutil.copytree(tiny_models, md)
    kw = dict(BUILD_KW, synthetic=["ddim"], manipulated=[], per_modality=2)
    build_dataset(real_folder, tmp_path / "before", models_dir=md, progress=False, **kw)
    card = json.loads((md / "ddpm.json").read_text())
    card["sampling"] = {"per_modality": {m: {"sampler": "ddim", "eta": 1.0, "guidance": 3.0}
                                         for m in ("brain_mri", "chest_xray", "lung_ct", "kidney_ct", "breast_us",
                                                   "knee_xray")}}
    (md / "ddpm.json").write_text(json.dumps(card))
    build_dataset(real_folder, tmp_path / "plain", models_dir=md, progress=False, **kw)
    build_dataset(real_folder, tmp_path / "card", models_dir=md, progress=False, sampling="card", **kw)
    assert "sampling" not in json.loads((tmp_path / "plain" / "build.json").read_text())
    assert json.loads((tmp_path / "card" / "build.json").read_text())["sampling"] == "card"

    def fakes(name):
        return {r["path"]: r["sha256_pixels"] for r in _rows(tmp_path / name) if r["kind"] == "synthetic"}

    before, plain, by_card = fakes("before"), fakes("plain"), fakes("card")
    assert before and plain == before
    differ = sum(by_card[p] != plain[p] for p in plain)
    assert set(by_card) == set(plain) and differ >= len(plain) // 2, (differ, len(plain))
    with pytest.raises(BuildError, match="different settings.*sampling"):
        build_dataset(real_folder, tmp_path / "card", models_dir=md, progress=False, **kw)
    with pytest.raises(BuildError, match="sampling must be"):
        build_dataset(real_folder, tmp_path / "bad", models_dir=md, progress=False, sampling="best", **kw)
