"""`medfake detect` / `medfake train detector` contract: CSV header, one row per image and per frame, error rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medfake.cli import app
from medfake.detection import CSV_HEADER, detect_paths, write_csv

from .conftest import make_example

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from pydicom.data import get_testdata_file

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(5)
    for i, kind in enumerate(["real", "synthetic", "real"]):
        a, _ = make_example(kind, rng, size=96 + 32 * i)
        PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(d / f"img{i}.png")
    (d / "sub").mkdir()
    a, _ = make_example("manipulated", rng)
    PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(d / "sub" / "edit.jpg", quality=95)
    shutil.copy(get_testdata_file("emri_small.dcm"), d / "sub" / "multi.dcm")  # 10 frames
    (d / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return d


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_detect_csv_contract(inputs, tiny_models_dir, tmp_path):
    out = tmp_path / "res.csv"
    r = runner.invoke(app, ["detect", str(inputs), "--out", str(out), "--models-dir", str(tiny_models_dir),
                            "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    header = out.read_text().splitlines()[0]
    assert header.startswith("path,modality,p_synthetic,p_manipulated,verdict")
    assert tuple(header.split(",")[:5]) == CSV_HEADER
    rows = _rows(out)
    # 3 PNGs + 1 JPEG + 10 DICOM frames + 1 broken file
    assert len(rows) == 15
    frames = [row["path"] for row in rows if "multi.dcm" in row["path"]]
    assert frames == [f"{inputs / 'sub' / 'multi.dcm'}#{i}" for i in range(10)]
    err = [row for row in rows if row["verdict"] == "error"]
    assert len(err) == 1 and err[0]["path"] == str(inputs / "sub" / "broken.png") and err[0]["message"]
    for row in rows:
        if row["verdict"] != "error":
            assert 0 <= float(row["p_synthetic"]) <= 1 and 0 <= float(row["p_manipulated"]) <= 1
            assert row["verdict"] in ("real", "synthetic", "manipulated", "uncertain")
            assert row["modality"] and float(row["anomaly"]) >= 0
            assert float(row["copy_move"]) > -2  # the card has the cue: on by default
    r = runner.invoke(app, ["detect", str(inputs / "img0.png"), "--out", str(out), "--models-dir",
                            str(tiny_models_dir), "--no-copy-move"])
    assert r.exit_code == 0, r.output
    assert _rows(out)[0]["copy_move"] == ""


def test_detect_files_as_given_and_table_output(inputs, tiny_models_dir):
    r = runner.invoke(app, ["detect", str(inputs / "img0.png"), str(inputs / "sub" / "broken.png"),
                            "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 0, r.output
    assert "error" in r.output and any(v in r.output for v in ("real", "synthetic", "manipulated", "uncertain"))
    assert "cannot" in r.output  # the reason is shown


def test_detect_heatmaps_and_reference(inputs, tiny_models_dir, tmp_path):
    ref = tmp_path / "ref"
    rng = np.random.default_rng(9)
    for sub, kind in (("real", "real"), ("fake", "synthetic")):
        (ref / sub).mkdir(parents=True)
        for i in range(3):
            a, _ = make_example(kind, rng)
            PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(ref / sub / f"{i}.png")
    heat = tmp_path / "heat"
    rows = detect_paths([inputs / "img1.png"], detector="default", models_dir=tiny_models_dir, reference=ref,
                        heatmaps=heat)
    assert len(rows) == 1 and rows[0]["knn_synthetic"] is not None
    hm = PILImage.open(rows[0]["heatmap"])
    assert hm.size == (128, 128)  # img1 is 128×128: maps have the input's size
    assert PILImage.open(rows[0]["mask"]).size == (128, 128)
    assert rows[0]["mask_seg"] == ""  # a PNG: no DICOM SEG (test_predicted_region_as_dicom_seg)
    write_csv(rows, tmp_path / "x.csv")
    assert _rows(tmp_path / "x.csv")[0]["heatmap"].endswith("_heatmap.png")
    # the maps are listed in the folder's index.json, so a run over that folder does not score them as images
    left: list = []
    assert detect_paths([heat], detector="default", models_dir=tiny_models_dir, left_out=left) == []
    assert sorted(p.name for p in left) == sorted(Path(rows[0][k]).name for k in ("heatmap", "mask"))


def test_detect_bad_inputs_are_clear_errors(tiny_models_dir, tmp_path):
    r = runner.invoke(app, ["detect", str(tmp_path / "nothing.png"), "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(app, ["detect", str(tmp_path), "--detector", "missing", "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 2 and "unknown model" in r.output
    (tmp_path / "ref" / "weird").mkdir(parents=True)
    (tmp_path / "a.png").write_bytes((tiny_models_dir / "tiny-dual.json").read_bytes())
    r = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--reference", str(tmp_path / "ref"),
                            "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 2 and "weird" in r.output


def test_detect_device_option(tiny_models_dir, tmp_path):
    """Its own input (not the `inputs` set, which needs pydicom-data): the GPU session runs it where that is absent."""
    import torch

    a, _ = make_example("real", np.random.default_rng(3))
    PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(tmp_path / "img.png")
    args = ["detect", str(tmp_path / "img.png"), "--models-dir", str(tiny_models_dir)]
    cpu, auto = tmp_path / "cpu.csv", tmp_path / "auto.csv"
    r = runner.invoke(app, args + ["--out", str(cpu), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, args + ["--out", str(auto)])  # auto: a GPU where there is one
    assert r.exit_code == 0, r.output
    a, b = _rows(cpu)[0], _rows(auto)[0]
    assert a["verdict"] == b["verdict"] and abs(float(a["p_synthetic"]) - float(b["p_synthetic"])) < 1e-3
    bad = tmp_path / "bad.csv"
    for device, says in [("tpu0", "unknown device"), ("mps", "unsupported device")] + \
            ([] if torch.cuda.is_available() else [("cuda", "sees no CUDA GPU")]):
        r = runner.invoke(app, args + ["--out", str(bad), "--device", device])
        assert r.exit_code == 2 and says in r.output, (device, r.output)
        assert not bad.exists()


def test_train_detector_cli(tiny_dataset, tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["train", "detector", "--config", "dual-srm", "--data", str(tiny_dataset), "--out", str(out),
                            "--steps", "3", "--batch-size", "6", "--device", "cpu",
                            "--overrides", '{"stem": 4, "widths": [8, 8], "seg_channels": 4}'])
    assert r.exit_code == 0, r.output
    assert (out / "dual-srm.json").exists() and (out / "dual-srm.safetensors").exists()
    r = runner.invoke(app, ["train", "detector", "--config", "dual-srm", "--data", str(tiny_dataset), "--out",
                            str(tmp_path / "x"), "--overrides", "{bad json"])
    assert r.exit_code == 2 and "JSON" in r.output


def test_train_localizer_cli(tiny_dataset, tmp_path):
    import json

    out = tmp_path / "loc"
    r = runner.invoke(app, ["train", "localizer", "--data", str(tiny_dataset), "--out", str(out), "--steps", "2",
                            "--batch-size", "4", "--device", "cpu", "--name", "loc"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "loc.json").read_text())
    assert card["kind"] == "localizer" and card["steps"] == 2 and (out / "loc.safetensors").exists()
    assert card["command"].startswith("medfake ")  # the process's own argv (pytest's under CliRunner)
    r = runner.invoke(app, ["train", "localizer", "--data", str(tiny_dataset), "--out", str(out), "--steps", "1",
                            "--batch-size", "4", "--device", "cpu", "--name", "ft", "--init-from",
                            str(out / "loc.json"), "--augment", "--jpeg-p", "0.6", "--resample-p", "0.5",
                            "--method-balance", "0.5"])
    assert r.exit_code == 0, r.output
    ft = json.loads((out / "ft.json").read_text())
    assert ft["init_from"]["version"] == card["version"]
    assert "'jpeg_p': 0.6" in ft["augment"] and "'resample_p': 0.5" in ft["augment"]  # the card says what it saw
    assert ft["method_balance"] == 0.5
    assert "2 views" in " ".join(r.output.split())  # the training line gives val pixel-F1 per view count
    r = runner.invoke(app, ["train", "localizer", "--data", str(tiny_dataset), "--out", str(tmp_path / "again"),
                            "--steps", "0", "--device", "cpu", "--init-from", str(out / "loc.json"), "--tta-views", "2"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again" / "localizer.json").read_text())
    assert (again["version"], again["steps"], again["tta_views"]) == (card["version"], 2, 2)
    assert "chose the thresholds of" in " ".join(r.output.split()) and again["threshold_choice"]["tta_views"] == 2
    r = runner.invoke(app, ["train", "localizer", "--data", str(tiny_dataset), "--out", str(out), "--steps", "1",
                            "--device", "cpu", "--jpeg-p", "0.6"])
    assert r.exit_code == 2 and "add --augment" in " ".join(r.output.split())
    r = runner.invoke(app, ["train", "localizer", "--data", str(tiny_dataset), "--out", str(out), "--steps", "1",
                            "--config", "localizer-fast", "--device", "cpu", "--init-from", str(out / "loc.json")])
    assert r.exit_code == 2 and "same architecture" in r.output
    r = runner.invoke(app, ["train", "localizer", "--data", str(tmp_path / "none.csv"), "--out", str(out)])
    assert r.exit_code == 2 and "not found" in r.output


def test_predicted_region_as_dicom_seg(tmp_path):
    """For a single-frame DICOM called manipulated, --heatmaps also writes the predicted region as a DICOM SEG over
    the input (a PACS viewer overlays it); nothing for other verdicts, an empty mask, a frame of a multi-frame file
    or a PNG. The writer is real; the prediction is constructed, so the test does not hang on a model's verdict."""
    from types import SimpleNamespace

    import highdicom as hd
    from pydicom.data import get_testdata_file

    from medfake.detection.run import _save_seg
    from medfake.io import Image, read_image

    ct = read_image(get_testdata_file("CT_small.dcm", download=False))
    mask = np.zeros(ct.shape, bool)
    mask[40:70, 20:60] = True
    det = SimpleNamespace(name="detector-default", version="v9")
    got = _save_seg(SimpleNamespace(verdict="manipulated", mask=mask), ct, tmp_path / "a.dcm", det)
    seg = hd.seg.segread(got)
    assert np.array_equal(seg.pixel_array.astype(bool), mask)
    assert seg.SegmentSequence[0].SegmentLabel == "Suspected manipulation" and seg.ContentLabel == "SUSPECTED"
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "medfake detector-default"
    assert "ground truth" not in seg.SeriesDescription  # a prediction, not the edit's record
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        ct.meta.dicom.SOPInstanceUID
    mr_frame = read_image(get_testdata_file("emri_small.dcm", download=False), frames=1)
    for pred, image in ((SimpleNamespace(verdict="real", mask=mask), ct),
                        (SimpleNamespace(verdict="manipulated", mask=np.zeros_like(mask)), ct),
                        (SimpleNamespace(verdict="manipulated", mask=np.ones(mr_frame.shape, bool)), mr_frame),
                        (SimpleNamespace(verdict="manipulated", mask=mask), Image(ct.array))):
        assert _save_seg(pred, image, tmp_path / "b.dcm", det) == "" and not (tmp_path / "b.dcm").exists()


def test_detect_folder_of_manipulations_scores_the_images_not_their_masks(tiny_models_dir, tmp_path):
    """`medfake manipulate` writes the edit, its mask as PNG and DICOM SEG and a sidecar; `medfake detect` on that
    folder scores the edited image only (the SEG used to be an error row and the PNG mask a scored "image")."""
    from pydicom.data import get_testdata_file

    out = tmp_path / "edits"
    r = runner.invoke(app, ["manipulate", get_testdata_file("CT_small.dcm", download=False), "--rect", "30,30,50,55",
                            "--method", "copy-move", "--out", str(out)])
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in out.iterdir())
    assert [n for n in written if "_mask" in n] == ["CT_small_copy-move_mask.dcm", "CT_small_copy-move_mask.png"]
    res = tmp_path / "res.csv"
    r = runner.invoke(app, ["detect", str(out), "--out", str(res), "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 0, r.output
    assert [row["path"] for row in _rows(res)] == [str(out / "CT_small_copy-move.dcm")]
    assert "left out 2 mask/heat-map file(s)" in " ".join(r.output.split())
    r = runner.invoke(app, ["detect", str(out / "CT_small_copy-move_mask.png"), "--out", str(res), "--models-dir",
                            str(tiny_models_dir)])  # named on its own: scored
    assert r.exit_code == 0 and len(_rows(res)) == 1, r.output


def test_detect_mask_views_must_be_a_view_count(inputs, tiny_models_dir):
    r = runner.invoke(app, ["detect", str(inputs / "img0.png"), "--models-dir", str(tiny_models_dir),
                            "--mask-views", "4"])
    assert r.exit_code != 0 and "--mask-views must be 1, 2 or 8, not 4" in r.output
