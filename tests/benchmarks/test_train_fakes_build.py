"""benchmarks/train_fakes_build.py without building: a build's synthetic rows become training rows under the
benchmark's generator names, with paths relative to the merged manifest; its real rows are left out."""

import csv


def test_a_builds_fakes_become_training_rows_renamed(load_benchmark, tmp_path):
    fetch = load_benchmark("train_fakes_build")
    build = tmp_path / "vx48"
    build.mkdir()
    (build / "manifest.csv").write_text(
        "path,modality,label,split,kind,generator,source,seed\n"
        "images/real/real/brain_mri/a.png,brain_mri,glioma,train,real,real,brain_mri/train/a.png,\n"
        "images/synthetic/ddpm/brain_mri/b.png,brain_mri,glioma,test,synthetic,ddpm,,17\n"
        "images/synthetic/ddim/lung_ct/c.png,lung_ct,COVID,val,synthetic,ddim,,18\n")
    cols = ["path", "modality", "label", "split", "kind", "generator", "mask"]
    rows = fetch.train_rows(build / "manifest.csv", {"ddpm": "ddpm-v", "ddim": "ddim-v"}, tmp_path / "t.csv", cols)
    assert [r["path"] for r in rows] == ["vx48/images/synthetic/ddpm/brain_mri/b.png",
                                         "vx48/images/synthetic/ddim/lung_ct/c.png"]
    assert [r["generator"] for r in rows] == ["ddpm-v", "ddim-v"] and {r["split"] for r in rows} == {"train"}
    assert all(list(r) == cols and r["mask"] == "" for r in rows)
    assert fetch.SEED != 0 and set(fetch.BUILDS) == {"vx48", "vc48"}
    with open(tmp_path / "t.csv", "w", newline="") as fh:  # the rows read back as the manifest reader sees them
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 2


def test_manipulated_rows_keep_their_masks_and_must_come_from_training_reals(load_benchmark, tmp_path):
    """train_repaint_build's use: manipulated rows with image and mask paths made relative to the merged manifest,
    renamed; a manipulated row of a val or test source stops the merge (no val or test image may leak)."""
    import pytest

    fetch = load_benchmark("train_fakes_build")
    build = tmp_path / "rp54"
    build.mkdir()
    head = "path,modality,label,split,kind,generator,source,mask\n"
    (build / "manifest.csv").write_text(
        head + "images/real/real/brain_mri/a.png,brain_mri,glioma,train,real,real,/x/a.png,\n"
        "images/manipulated/repaint/brain_mri/b.png,brain_mri,glioma,train,manipulated,repaint,/x/a.png,"
        "masks/manipulated/repaint/brain_mri/b.png\n")
    cols = ["path", "modality", "label", "split", "kind", "generator", "mask"]
    (row,) = fetch.train_rows(build / "manifest.csv", {"repaint": "repaint-v"}, tmp_path / "t.csv", cols,
                              kind="manipulated")
    assert row["path"] == "rp54/images/manipulated/repaint/brain_mri/b.png" and row["generator"] == "repaint-v"
    assert row["mask"] == "rp54/masks/manipulated/repaint/brain_mri/b.png" and row["split"] == "train"
    (build / "manifest.csv").write_text(
        head + "images/manipulated/repaint/lung_ct/c.png,lung_ct,COVID,test,manipulated,repaint,/x/c.png,m.png\n")
    with pytest.raises(SystemExit, match="split 'test'"):
        fetch.train_rows(build / "manifest.csv", {}, tmp_path / "t.csv", cols, kind="manipulated")
