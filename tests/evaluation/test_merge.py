"""`medfake dataset merge`: another build's rows under new names, kept by later builds, replaced without loss."""

import csv
import json
import shutil
from collections import Counter

import pytest

from medfake.evaluation import BuildError, build_dataset, check_leakage
from medfake.evaluation.merge import merge_build, parse_renames

from .conftest import BUILD_KW


def _rows(root):
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _build(real_folder, tiny_models, out, **kw):
    build_dataset(real_folder, out, models_dir=tiny_models, progress=False,
                  **dict(BUILD_KW, per_modality=2, audit=False, **kw))
    return out


@pytest.fixture()
def pair(real_folder, tiny_models, tmp_path):
    """target: reals + dcgan; source: ddim fakes and copy-move edits of the same real set (seed 3: other pixels)."""
    dst = _build(real_folder, tiny_models, tmp_path / "dst", synthetic=["dcgan"], manipulated=[])
    src = _build(real_folder, tiny_models, tmp_path / "src", synthetic=["ddim"], manipulated=["copy-move"])
    return src, dst


def test_merge_adds_renamed_rows_and_files(pair):
    src, dst = pair
    before = _rows(dst)
    s = merge_build(src, dst, {"ddim": "ddim-v", "copy-move": "copy-move-b"}, audit=False)
    rows = _rows(dst)
    assert s["added"] == 8 and s["replaced"] == 0 and len(rows) == len(before) + 8
    assert rows[:len(before)] == before  # the build's own rows untouched
    src_by_seed = {(r["generator"], r["seed"]): r for r in _rows(src)}
    new = [r for r in rows if r["generator"] in ("ddim-v", "copy-move-b")]
    assert Counter(r["generator"] for r in new) == {"ddim-v": 4, "copy-move-b": 4}
    for r in new:
        old = src_by_seed[({"ddim-v": "ddim", "copy-move-b": "copy-move"}[r["generator"]], r["seed"])]
        assert f"/{r['generator']}/" in r["path"] and (dst / r["path"]).read_bytes() == (src / old["path"]).read_bytes()
        assert (r["split"], r["source"], r["model_version"], r["sha256_pixels"]) == \
            (old["split"], old["source"], old["model_version"], old["sha256_pixels"])
        if r["kind"] == "manipulated":
            assert (dst / r["mask"]).read_bytes() == (src / old["mask"]).read_bytes()
            assert r["mask"].startswith("masks/manipulated/copy-move-b/")
    check_leakage(rows)
    log = json.loads((dst / "merges.json").read_text())
    assert log[-1]["renames"] == {"ddim": "ddim-v", "copy-move": "copy-move-b"} and log[-1]["replaced"] is None


def test_later_build_keeps_merged_rows(pair, real_folder, tiny_models):
    src, dst = pair
    merge_build(src, dst, {"ddim": "ddim-v"}, audit=False)
    merged = [r for r in _rows(dst) if r["generator"] == "ddim-v"]
    # extend the target's own build with vae reconstructions: the merged rows stay
    _build(real_folder, tiny_models, dst, synthetic=["dcgan", "vae"], manipulated=[])
    rows = _rows(dst)
    assert [r for r in rows if r["generator"] == "ddim-v"] == merged
    assert Counter(r["generator"] for r in rows)["vae"] == 4


def test_replace_moves_old_rows_and_refuses_without_flag(pair, real_folder, tiny_models, tmp_path):
    src, dst = pair
    merge_build(src, dst, {"ddim": "ddim-v"}, audit=False)
    first = {r["path"]: (dst / r["path"]).read_bytes() for r in _rows(dst) if r["generator"] == "ddim-v"}
    src2 = _build(real_folder, tiny_models, tmp_path / "src2", synthetic=["ddim"], manipulated=[], seed=11)
    manifest = (dst / "manifest.csv").read_bytes()
    with pytest.raises(BuildError, match="already holds merged rows of ddim-v.*--replace"):
        merge_build(src2, dst, {"ddim": "ddim-v"}, audit=False)
    assert (dst / "manifest.csv").read_bytes() == manifest  # nothing written
    s = merge_build(src2, dst, {"ddim": "ddim-v"}, replace=True, audit=False)
    assert s["replaced"] == 4 and s["added"] == 4
    rows = [r for r in _rows(dst) if r["generator"] == "ddim-v"]
    assert {r["seed"] for r in rows} == {r["seed"] for r in _rows(src2) if r["generator"] == "ddim"}
    moved = json.loads((dst / "merges.json").read_text())[-1]["replaced"]["moved_to"]
    for path, data in first.items():  # the replaced files were moved, not deleted
        assert (dst / moved / path).read_bytes() == data
    with (dst / moved / "manifest.csv").open(newline="") as fh:
        assert {r["path"] for r in csv.DictReader(fh)} == set(first)
    merge_build(src, dst, {"ddim": "ddim-v"}, replace=True, audit=False)  # again, within the same second or not
    moved2 = json.loads((dst / "merges.json").read_text())[-1]["replaced"]["moved_to"]
    assert moved2 != moved and (dst / moved / "manifest.csv").exists() and (dst / moved2 / "manifest.csv").exists()


def test_bad_merges_are_one_clear_error(pair, real_folder, tiny_models, tmp_path):
    src, dst = pair
    manifest = (dst / "manifest.csv").read_bytes()
    with pytest.raises(BuildError, match="has no rows of vae; it has copy-move, ddim"):
        merge_build(src, dst, {"vae": "vae-v"}, audit=False)
    with pytest.raises(BuildError, match="builder's own name"):
        merge_build(src, dst, {"ddim": "ddpm"}, audit=False)
    with pytest.raises(BuildError, match="bad new name"):
        merge_build(src, dst, {"ddim": "../x"}, audit=False)
    with pytest.raises(BuildError, match="not a built data set"):
        merge_build(tmp_path / "nope", dst, {"ddim": "ddim-v"}, audit=False)
    other_real = shutil.copytree(real_folder, tmp_path / "real2")  # another real set as far as a build knows
    with pytest.raises(BuildError, match="same real set"):
        merge_build(_build(other_real, tiny_models, tmp_path / "o", synthetic=["ddim"], manipulated=[]),
                    dst, {"ddim": "ddim-v"}, audit=False)
    bad = shutil.copytree(src, tmp_path / "bad")
    (bad / "build.json").write_text("{not json")
    with pytest.raises(BuildError, match="build.json cannot be read"):
        merge_build(bad, dst, {"ddim": "ddim-v"}, audit=False)
    shutil.copy(src / "build.json", bad / "build.json")
    (bad / "manifest.csv").write_text("path,modality\nimages/x.png,brain_mri\n")
    with pytest.raises(BuildError, match="lacks the column.*kind, generator, split"):
        merge_build(bad, dst, {"ddim": "ddim-v"}, audit=False)
    for text in ("ddim", "ddim=", "a=b,a=c", ""):
        with pytest.raises(BuildError):
            parse_renames(text)
    assert parse_renames(" ddpm=ddpm-v , ddim=ddim-v") == {"ddpm": "ddpm-v", "ddim": "ddim-v"}
    assert (dst / "manifest.csv").read_bytes() == manifest and not (dst / "merges.json").exists()


def _tree(root):
    """Every file's bytes and every folder (None), so a folder left behind counts as a change."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("fail_at", ["copy", "manifest"])
def test_failed_merge_puts_everything_back(pair, monkeypatch, fail_at):
    """A replace merge that fails half-way (the third copy, or the manifest write): the target is as it was."""
    import medfake.evaluation.merge as merge

    src, dst = pair
    merge_build(src, dst, {"ddim": "ddim-v"}, audit=False)
    first_cm = next(r for r in _rows(src) if r["generator"] == "copy-move")
    stray = dst / first_cm["path"].replace("/copy-move/", "/copy-move-b/")  # left by a merge killed mid-copy
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray")
    before = _tree(dst)
    calls = []
    real_copy, real_write = shutil.copy2, merge.write_manifest

    def copy2(a, b):
        calls.append(b)
        if fail_at == "copy" and len(calls) == 3:
            open(b, "wb").write(b"half")  # a partial file, as a full disk leaves it
            raise OSError(28, "No space left on device")
        return real_copy(a, b)

    def write_manifest(path, *a, **kw):
        if fail_at == "manifest" and path.name.startswith(".manifest.csv"):
            raise OSError(28, "No space left on device")
        return real_write(path, *a, **kw)

    monkeypatch.setattr(merge.shutil, "copy2", copy2)
    monkeypatch.setattr(merge, "write_manifest", write_manifest)
    with pytest.raises(BuildError, match="failed .*No space left on device.*nothing in the target was changed"):
        merge_build(src, dst, {"ddim": "ddim-v", "copy-move": "copy-move-b"}, replace=True, audit=False)
    assert len(calls) == (3 if fail_at == "copy" else 12)  # 4 fakes, 4 edits with their masks
    after = _tree(dst)
    assert after.keys() == before.keys() and after == before  # no file and no folder (replaced/, images/...) left
    monkeypatch.undo()
    s = merge_build(src, dst, {"ddim": "ddim-v", "copy-move": "copy-move-b"}, replace=True, audit=False)
    assert s["added"] == 8 and s["replaced"] == 4
    assert stray.read_bytes() == (src / first_cm["path"]).read_bytes() and not list(dst.rglob(".*before-merge"))


def test_shortcut_in_new_files_is_refused_before_writing(pair):
    """New files that carry something the target's reals do not (here a tEXt chunk) fail the audit: nothing merged."""
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    from medfake.evaluation.audit import ShortcutAuditError

    src, dst = pair
    for r in _rows(src):
        if r["generator"] in ("ddim", "copy-move"):
            info = PngInfo()
            info.add_text("Software", "another generator")
            with PILImage.open(src / r["path"]) as im:
                im.load()
            im.save(src / r["path"], pnginfo=info)
    before = _tree(dst)
    with pytest.raises(ShortcutAuditError, match="chunk_tEXt.*nothing was merged"):
        merge_build(src, dst, {"ddim": "ddim-v", "copy-move": "copy-move-b"})
    assert _tree(dst) == before
    s = merge_build(src, dst, {"ddim": "ddim-v", "copy-move": "copy-move-b"}, audit=False)  # the user's choice
    assert s["added"] == 8 and "audit" not in s


def test_merge_cli(pair):
    from typer.testing import CliRunner

    from medfake.cli import app

    src, dst = pair
    runner = CliRunner()
    r = runner.invoke(app, ["dataset", "merge", str(src), "--into", str(dst), "--rename", "ddim=ddpm"])
    assert r.exit_code == 2 and "builder's own name" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["dataset", "merge", str(src), "--into", str(dst), "--rename", "ddim=ddim-v"])
    assert r.exit_code == 0, r.output
    assert "merged 4 rows" in r.output and "synthetic/ddim-v 4" in r.output and "shortcut audit passed" in r.output
