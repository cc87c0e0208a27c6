"""Per-series / per-study verdicts (`medfake detect --summary`): the grouping and verdict rule on constructed rows,
then end to end on a real DICOM study written from pydicom's CT (two series, one file truncated), a multi-frame
DICOM and a PNG, with a tiny trained detector."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medfake.cli import app
from medfake.detection.summary import MAX_FLAGGED, SUMMARY_COLUMNS, chance, detector_rates, summarize

runner = CliRunner()
SEVERITY = ("manipulated", "synthetic", "uncertain")


def _row(path, verdict, series="", study="", file=None, ps=0.1, pm=0.2):
    err = verdict == "error"
    return {"path": path, "verdict": verdict, "series_uid": series, "study_uid": study, "file": file or path,
            "p_synthetic": "" if err else ps, "p_manipulated": "" if err else pm}


def test_group_verdicts_on_constructed_rows(group_rule):
    tail = group_rule[0]
    rows = [_row("a0", "real", "A", "S"), _row("a1", "synthetic", "A", "S", ps=0.9), _row("a2", "real", "A", "S"),
            _row("b0", "manipulated", "B", "S", pm=0.8), _row("b1", "synthetic", "B", "S"),
            _row("c0", "real", "C", "T"), _row("c1", "uncertain", "C", "T"),
            _row("d0", "real", "D", "T"), _row("d1", "error", "D", "T"),
            _row("e0", "error", "E", "U"), _row("e1", "error", "E", "U"),
            _row("f0", "real", "F", "U"), _row("f1", "real", "F", "U"),
            _row("m.dcm#0", "real", file="m.dcm"), _row("m.dcm#1", "real", file="m.dcm"), _row("x.png", "real")]
    g = {r["group"]: r for r in summarize(rows)}
    assert list(g) == ["A", "B", "C", "D", "E", "F", "m.dcm", "x.png"]  # order of first appearance
    assert {k: v["verdict"] for k, v in g.items()} == {
        "A": "uncertain", "B": "manipulated", "C": "real", "D": "uncertain", "E": "error", "F": "real",
        "m.dcm": "real", "x.png": "real"}
    assert g["A"]["flagged"] == "a1" and g["A"]["max_p_synthetic"] == pytest.approx(0.9)
    # one false alarm in three images happens to 3 % of real series (> the 1 % per image): uncertain, and why
    assert g["A"]["p_chance"] == pytest.approx(tail(1, 3, 0.01)) and "1 of 3 image(s)" in g["A"]["message"]
    assert g["B"]["p_chance"] == pytest.approx(tail(2, 2, 0.01)) and g["B"]["message"] == ""
    assert g["F"]["p_chance"] is None and g["F"]["message"] == ""
    # one uncertain image in two is what 3 % of real pairs show (> the 1.5 % per image): real, but said
    assert g["C"]["p_chance"] == pytest.approx(tail(1, 2, 0.015)) and "1 of 2 image(s) uncertain" in g["C"]["message"]
    assert summarize([_row("u", "uncertain", "U1")])[0]["verdict"] == "uncertain"  # alone: its own verdict
    assert (g["A"]["images"], g["A"]["real"], g["A"]["synthetic"], g["A"]["files"]) == (3, 2, 1, 3)
    assert g["B"]["flagged"] == "b0; b1" and g["B"]["max_p_manipulated"] == pytest.approx(0.8)
    assert g["D"]["message"] == "1 of 2 file(s) could not be read" and g["D"]["images"] == 1
    assert g["E"]["message"] and g["E"]["max_p_synthetic"] is None and g["E"]["images"] == 0
    assert g["F"]["message"] == "" and g["F"]["flagged"] == ""
    assert g["m.dcm"]["group_by"] == "file" and (g["m.dcm"]["files"], g["m.dcm"]["images"]) == (1, 2)
    assert g["A"]["group_by"] == "series" and g["A"]["series_uid"] == "A" and g["A"]["study_uid"] == "S"
    by_study = {r["group"]: r for r in summarize(rows, "study")}
    assert by_study["S"]["verdict"] == "manipulated" and by_study["S"]["images"] == 5
    assert by_study["S"]["series_uid"] == ""  # two series in it
    assert by_study["T"]["verdict"] == "uncertain" and by_study["U"]["verdict"] == "uncertain"  # unreadable files
    assert by_study["U"]["message"] == "2 of 4 file(s) could not be read"
    by_file = summarize(rows, "file")
    assert len(by_file) == len(rows) - 1  # only m.dcm's two frames share a group
    one = [_row("m0", "manipulated", "M", pm=0.9)]  # a one-image series is its image's verdict
    assert summarize(one)[0]["verdict"] == "manipulated" and summarize(one)[0]["p_chance"] == pytest.approx(0.01)
    many = [_row(f"s{i}", "synthetic", "Z") for i in range(MAX_FLAGGED + 3)]
    assert summarize(many)[0]["flagged"].endswith("… (+3 more)")
    with pytest.raises(ValueError, match="series, study, file"):
        summarize(rows, "patient")
    for bad in ({"fpr": 0.0}, {"fpr": 0.02, "uncertain_fpr": 0.01}):
        with pytest.raises(ValueError, match="false-alarm rates"):
            summarize(rows, **bad)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 120, 300])
def test_long_series_need_more_alarms_than_chance(n, group_rule):
    """A real 300-slice series at 1 % false alarms per image nearly always holds one: the group is called fake only
    from the smallest count a real series reaches at most 1 % of the time, and uncertain below it."""
    tail = group_rule[0]
    k_min = next(k for k in range(1, n + 1) if tail(k, n, 0.01) <= 0.01 * (1 + 1e-9))
    assert chance(k_min, n, 0.01) == pytest.approx(tail(k_min, n, 0.01))
    for k in {k_min - 1, k_min, min(n, k_min + 1)} - {0}:
        rows = [_row(f"x{i}", "synthetic" if i < k else "real", "S") for i in range(n)]
        g = summarize(rows)[0]
        assert g["verdict"] == ("synthetic" if k >= k_min else "uncertain"), (n, k)
        assert (g["synthetic"], g["real"]) == (k, n - k)
    assert {1: 1, 2: 2, 3: 2, 10: 2, 120: 5, 300: 9}[n] == k_min
    # uncertain images alone: weighed the same way at the 1.5 % a real image is called anything but real
    j_min = next(j for j in range(1, n + 1) if tail(j, n, 0.015) <= 0.015 * (1 + 1e-9))
    for j in {j_min - 1, j_min} - {0}:
        rows = [_row(f"u{i}", "uncertain" if i < j else "real", "S") for i in range(n)]
        assert summarize(rows)[0]["verdict"] == ("uncertain" if j >= j_min else "real"), (n, j)


def test_a_stricter_detector_needs_fewer_alarms():
    rows = [_row(f"y{i}", "synthetic" if i < 3 else "real", "S") for i in range(120)]  # 3 of 120
    assert summarize(rows, fpr=0.01)[0]["verdict"] == "uncertain"  # 1.2 expected by chance
    assert summarize(rows, fpr=0.001)[0]["verdict"] == "synthetic"  # 0.12 expected


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    d = tmp_path_factory.mktemp("study")
    study, s1, s2 = generate_uid(), generate_uid(), generate_uid()
    for series, n in ((s1, 3), (s2, 2)):
        for i in range(n):
            ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
            ds.save_as(d / f"{series[-6:]}_{i}.dcm")
    bad = d / f"{s2[-6:]}_1.dcm"
    bad.write_bytes(bad.read_bytes()[:-5000])  # pixel data cut short, header intact
    shutil.copy(get_testdata_file("emri_small.dcm"), d / "multi.dcm")  # 10 frames, its own study and series
    shutil.copy(get_testdata_file("liver.dcm"), d / "seg.dcm")  # a DICOM SEG: an error row, no group's member
    a = np.random.default_rng(0).random((96, 96))
    PILImage.fromarray(np.round(a * 255).astype(np.uint8)).save(d / "plain.png")
    return d, study, s1, s2


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_detect_summary_end_to_end(study_dir, tiny_models_dir, tmp_path, group_rule):
    import pydicom
    from pydicom.data import get_testdata_file

    d, study, s1, s2 = study_dir
    res, summ = tmp_path / "res.csv", tmp_path / "series.csv"
    r = runner.invoke(app, ["detect", str(d), "--out", str(res), "--summary", str(summ), "--models-dir",
                            str(tiny_models_dir), "--no-copy-move"])
    assert r.exit_code == 0, r.output
    assert "group(s) (3 series, 1 file(s) without UIDs)" in " ".join(r.output.split())
    rows = _csv(res)
    assert len(rows) == 5 + 10 + 1 + 1
    seg = next(row for row in rows if row["path"].endswith("seg.dcm"))
    assert seg["verdict"] == "error" and "Segmentation" in seg["message"]
    by_path = {row["path"]: row for row in rows}
    bad = by_path[str(d / f"{s2[-6:]}_1.dcm")]
    assert bad["verdict"] == "error" and bad["series_uid"] == s2 and bad["study_uid"] == study
    assert by_path[str(d / "plain.png")]["series_uid"] == ""
    emri = pydicom.dcmread(get_testdata_file("emri_small.dcm"), stop_before_pixels=True)
    assert by_path[f"{d / 'multi.dcm'}#3"]["series_uid"] == emri.SeriesInstanceUID
    with open(summ, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == SUMMARY_COLUMNS
    g = {row["group"]: row for row in _csv(summ)}
    assert set(g) == {s1, s2, emri.SeriesInstanceUID, str(d / "plain.png")}
    assert (g[s1]["files"], g[s1]["images"], g[s1]["error"]) == ("3", "3", "0")
    assert (g[s2]["files"], g[s2]["images"], g[s2]["error"]) == ("2", "1", "1")
    assert g[s2]["verdict"] != "real"  # one of its two files is unreadable
    assert (g[emri.SeriesInstanceUID]["images"], g[str(d / "plain.png")]["group_by"]) == ("10", "file")
    fpr, ufpr = detector_rates("default", tiny_models_dir)
    assert 0 < fpr < ufpr < 1
    images = [row for row in rows if row is not seg]
    for gid, grp in g.items():  # each group's verdict follows the rule (checked on constructed rows above)
        mine = [row["verdict"] for row in images if gid in (row["series_uid"], row["path"])]
        assert grp["verdict"] == group_rule[1](mine, fpr, ufpr), gid
        assert sum(int(grp[v]) for v in ("real", *SEVERITY, "error")) == len(mine)
    r = runner.invoke(app, ["detect", str(d), "--out", str(res), "--summary", str(summ), "--group-by", "study",
                            "--models-dir", str(tiny_models_dir), "--no-copy-move"])
    assert r.exit_code == 0, r.output
    g = {row["group"]: row for row in _csv(summ)}
    assert g[study]["files"] == "5" and g[study]["series_uid"] == "" and g[study]["verdict"] != "real"
    r = runner.invoke(app, ["detect", str(d), "--summary", str(summ), "--group-by", "patient",
                            "--models-dir", str(tiny_models_dir)])
    assert r.exit_code == 2 and "--group-by" in r.output


def test_detect_every_slice_of_a_nifti_volume(tiny_models_dir, tmp_path):
    """--slices all scores every axial slice of a NIfTI volume (rows path#k) and --summary makes the volume one
    group; by default only the middle slice is read, and a bad choice is a usage error."""
    import nibabel as nib

    vol = (np.random.default_rng(3).random((48, 40, 6)) * 1000).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    res, summ = tmp_path / "r.csv", tmp_path / "s.csv"
    args = ["detect", str(tmp_path / "vol.nii.gz"), "--out", str(res), "--summary", str(summ), "--models-dir",
            str(tiny_models_dir), "--no-copy-move"]
    r = runner.invoke(app, args + ["--slices", "all"])
    assert r.exit_code == 0, r.output
    rows = _csv(res)
    assert [row["path"].rsplit("#", 1)[1] for row in rows] == [str(k) for k in range(6)]
    (g,) = _csv(summ)
    assert (g["group_by"], g["files"], g["images"]) == ("file", "1", "6")
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and len(_csv(res)) == 1 and "#" not in _csv(res)[0]["path"]
    r = runner.invoke(app, args + ["--slices", "some"])
    assert r.exit_code != 0 and "middle" in r.output


def test_detect_reads_a_siemens_mosaic_as_its_slices(tiny_models_dir, siemens_mosaic, tmp_path):
    """A Siemens mosaic DICOM is a volume stored as one picture: --slices all gives one row per slice (path#k, 48
    slices of 128 px, not one 896 px picture), one group in the summary; by default its middle slice alone."""
    res, summ = tmp_path / "r.csv", tmp_path / "s.csv"
    args = ["detect", str(siemens_mosaic), "--out", str(res), "--summary", str(summ), "--models-dir",
            str(tiny_models_dir), "--no-copy-move"]
    r = runner.invoke(app, args + ["--slices", "all"])
    assert r.exit_code == 0, r.output
    rows = _csv(res)
    assert [row["path"] for row in rows] == [f"{siemens_mosaic}#{k}" for k in range(48)]
    (g,) = _csv(summ)
    assert (g["files"], g["images"]) == ("1", "48")
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and [row["path"] for row in _csv(res)] == [str(siemens_mosaic)]
