"""The CLI shells, and end to end with the detection stage's own detector (trained 2 steps here)."""

import csv

import pytest
from typer.testing import CliRunner

from medfake.cli import app

runner = CliRunner()


def test_dataset_build_cli(real_folder, tiny_models, tmp_path):
    out = tmp_path / "ds"
    r = runner.invoke(app, ["dataset", "build", "--real", str(real_folder), "--out", str(out), "--synthetic",
                            "dcgan,ddim", "--manipulated", "", "--per-modality", "2", "--real-per-modality", "3",
                            "--models-dir", str(tiny_models), "--steps", "2", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "shortcut audit passed" in r.output
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 2 * 3 + 2 * 2 * 2
    assert (out / "audit.json").exists()


def test_cli_errors_are_one_line(real_folder, tmp_path):
    r = runner.invoke(app, ["dataset", "build", "--real", str(real_folder), "--out", str(tmp_path / "o"),
                            "--synthetic", "gan"])
    assert r.exit_code == 2 and "unknown generator(s) gan" in r.output and "vae" in r.output
    assert not (tmp_path / "o").exists()
    r = runner.invoke(app, ["eval", "--data", str(real_folder), "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "kind" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["eval", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_eval_cli_with_detection_stage_detector(built, tmp_path):
    try:
        from medfake.detection import train_detector
    except ImportError:
        pytest.skip("medfake.detection not available")
    import torch

    torch.set_num_threads(1)
    card = train_detector("resnet18-12", built / "manifest.csv", tmp_path / "det", name="detector-default", steps=2,
                          batch_size=8, device="cpu", log_every=1)
    assert card["name"] == "detector-default"
    out = tmp_path / "ev"
    r = runner.invoke(app, ["eval", "--data", str(built / "manifest.csv"), "--models-dir", str(tmp_path / "det"),
                            "--out", str(out), "--no-robustness", "--adversarial-max", "0"])
    assert r.exit_code == 0, r.output
    import json

    res = json.loads((out / "results.json").read_text())
    assert res["split"] == "test" and res["detector"]["name"] == "detector-default"
    assert "adversarial" not in res  # --adversarial-max 0 attacks nothing (it used to fail on an empty stack)
    assert res["n"] == sum(1 for row in csv.DictReader((built / "manifest.csv").open()) if row["split"] == "test")
    assert (out / "report.html").stat().st_size > 10_000
    # the copy-move cue: on by default where the card has it, --no-copy-move off, --copy-move required
    has_cue = bool(card.get("copy_move"))
    assert res["detector"]["copy_move_cue"] is has_cue
    args = ["eval", "--data", str(built / "manifest.csv"), "--models-dir", str(tmp_path / "det"), "--out",
            str(tmp_path / "ev2"), "--no-robustness", "--adversarial-max", "0", "--no-external"]
    r = runner.invoke(app, args + ["--no-copy-move"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ev2" / "results.json").read_text())["detector"]["copy_move_cue"] is False
    r = runner.invoke(app, args + ["--copy-move"])
    if has_cue:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code != 0 and "no calibrated copy-move cue" in r.output
