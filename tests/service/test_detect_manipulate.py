"""Detection and manipulation endpoints with a tiny real detector and the real manipulation package."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from medfake.manipulation import make_mask

from .service_helpers import png_bytes_of, smooth_image, wait_job
from .test_api import assert_json_error


def from_data_url(url: str) -> bytes:
    head, b64 = url.split(",", 1)
    assert head.startswith("data:") and head.endswith(";base64")
    return base64.b64decode(b64)


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def dicom_upload(a: np.ndarray) -> bytes:
    from medfake.io import Image, Provenance, dicom_bytes

    return dicom_bytes(Image(a), Provenance("synthetic", "test"))


def test_v1_detect_rows_errors_and_maps(client):
    odd = smooth_image(1, 96)[:, :80]  # 80 wide × 96 high: maps must come back at this size
    files = [("files", ("odd.png", png_bytes_of(odd), "image/png")),
             ("files", ("scan.dcm", dicom_upload(smooth_image(2)), "application/dicom")),
             ("files", ("broken.png", png_bytes_of(smooth_image(3))[:60], "image/png"))]
    r = client.post("/v1/detect", files=files, data={"include_image": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["errors"] == 1
    a, b, c = body["results"]
    assert [a["filename"], b["filename"], c["filename"]] == ["odd.png", "scan.dcm", "broken.png"]
    for row in (a, b):
        assert 0.0 <= row["p_synthetic"] <= 1.0 and 0.0 <= row["p_manipulated"] <= 1.0
        assert row["verdict"] in ("real", "synthetic", "manipulated", "uncertain")
        assert row["modality"] in ("brain_mri", "chest_xray", "lung_ct", "kidney_ct", "breast_us", "knee_xray")
    assert (a["width"], a["height"]) == (80, 96)
    assert "80x96 px, upsampled" in a["note"] and b["note"] is None  # a small input's verdict says why it differs
    assert png_array(from_data_url(a["heatmap"])).shape == (96, 80)
    assert png_array(from_data_url(a["mask"])).shape == (96, 80)
    assert png_array(from_data_url(a["image"])).shape == (96, 80)
    assert c["verdict"] == "error" and c["status"] == 422 and "broken.png" in c["message"]
    assert c["p_synthetic"] is None
    assert b["series_uid"] and a["series_uid"] is None  # the DICOM's own UIDs; a PNG has none
    assert [g["group"] for g in body["series"]] == ["odd.png", b["series_uid"], "broken.png"]
    assert [g["verdict"] for g in body["series"]] == [a["verdict"], b["verdict"], "error"]


def test_v1_detect_series_summary(client, group_rule):
    """Two files of one DICOM series and one of another: one verdict per series (detection.summary's rule, the
    detector's 1 % per image weighed against the series' size); /v1/summary gives the same over the rows, and two
    uploads that share a file name stay two groups."""
    import pydicom
    from pydicom.uid import generate_uid

    def member(series: str, i: int) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(dicom_upload(smooth_image(10 + i))))
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue()

    study, s1, s2 = generate_uid(), generate_uid(), generate_uid()
    files = [("files", (f"{i}.dcm", member(s, i), "application/dicom")) for i, s in enumerate((s1, s1, s2))]
    body = client.post("/v1/detect", files=files, data={"explain": "false"}).json()
    rows, groups = body["results"], {g["group"]: g for g in body["series"]}
    assert [r["series_uid"] for r in rows] == [s1, s1, s2] and all(r["study_uid"] == study for r in rows)
    assert set(groups) == {s1, s2} and (groups[s1]["files"], groups[s1]["images"]) == (2, 2)
    rule = group_rule[1]
    assert groups[s1]["verdict"] == rule([r["verdict"] for r in rows[:2]])
    assert groups[s2]["verdict"] == rows[2]["verdict"]  # a one-image series is its image's verdict
    assert groups[s1]["max_p_synthetic"] == pytest.approx(max(r["p_synthetic"] for r in rows[:2]))
    again = client.post("/v1/summary", json={"results": rows}).json()  # what the web page sends after its batches
    assert again["groups"] == body["series"] and again["group_by"] == "series"
    by_study = client.post("/v1/summary", json={"results": rows, "group_by": "study"}).json()["groups"]
    assert [(g["group"], g["files"]) for g in by_study] == [(study, 3)]
    # constructed rows: 2 of 3 synthetic is more than chance, 1 of 3 is not; PNGs of the same name are two groups
    made = [{"filename": "a.dcm", "verdict": v, "series_uid": "1.2.3", "p_synthetic": 0.9 if v != "real" else 0.1}
            for v in ("synthetic", "synthetic", "real")]
    made += [{"filename": "x.png", "verdict": "synthetic"}, {"filename": "x.png", "verdict": "real"}]
    g = client.post("/v1/summary", json={"results": made}).json()["groups"]
    assert [(x["group"], x["verdict"]) for x in g] == [("1.2.3", "synthetic"), ("x.png (1)", "synthetic"),
                                                       ("x.png (2)", "real")]
    made[1]["verdict"] = "real"
    g = client.post("/v1/summary", json={"results": made}).json()["groups"]
    assert g[0]["verdict"] == "uncertain" and "1 of 3 image(s)" in g[0]["message"]


def test_v1_summary_is_bounded_and_validated(client):
    ok = {"filename": "a.png", "verdict": "real"}
    for body, why in (({"results": [{"filename": "a", "verdict": "fake"}]}, "verdict"),
                      ({"results": [{**ok, "p_synthetic": 1.5}]}, "p_synthetic"),
                      ({"results": [ok], "group_by": "patient"}, "group_by"),
                      ({"results": [ok], "path": "/etc/passwd"}, "path"),
                      ({"results": [ok] * 20_001}, "results")):
        r = client.post("/v1/summary", json=body)
        assert r.status_code == 422 and why in r.text, (why, r.status_code)
    r = client.post("/v1/summary", json={"results": [ok], "model": "../models/detector-default.json"})
    assert r.status_code in (400, 404, 422), r.text
    r = client.post("/v1/summary", json={"results": []})
    assert r.status_code == 200 and r.json()["groups"] == []


def test_v1_detect_copy_move_cue(client):
    """copy_move=true (and the default) runs the cue, false does not: its score comes back per row, a pasted copy
    of fine texture scores higher than the image it came from, and the mask keeps the image's size."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(7)
    a = gaussian_filter(rng.random((128, 128)), 0.7)
    a = (a - a.min()) / (a.max() - a.min())
    fake = a.copy()
    fake[70:100, 60:90] = a[10:40, 12:42]
    files = [("files", ("orig.png", png_bytes_of(a), "image/png")),
             ("files", ("copy.png", png_bytes_of(fake), "image/png"))]
    r = client.post("/v1/detect", files=files, data={"copy_move": "true"})
    assert r.status_code == 200, r.text
    orig, cm = r.json()["results"]
    assert cm["scores"]["copy_move"] > 0.3 > 0.1 > orig["scores"]["copy_move"]
    assert cm["p_manipulated"] >= cm["scores"]["p_copy_move"] > 0.9
    assert png_array(from_data_url(cm["mask"])).shape == (128, 128)
    r = client.post("/v1/detect", files=files[:1])  # the cue is on by default where the card has it
    assert r.json()["results"][0]["scores"]["copy_move"] == orig["scores"]["copy_move"]
    r = client.post("/v1/detect", files=files[:1], data={"copy_move": "false"})
    assert r.status_code == 200, r.text
    assert "copy_move" not in r.json()["results"][0]["scores"]


def test_compat_detect_labels_match_probabilities(client):
    img = png_bytes_of(smooth_image(5))
    v1 = client.post("/v1/detect", files={"files": ("x.png", img, "image/png")}).json()["results"][0]
    man = client.post("/detect/manipulated", files={"image": ("x.png", img, "image/png")}).json()
    assert man["probability"] == pytest.approx(v1["p_manipulated"], abs=1e-6)
    assert man["label"] == ("manipulated" if man["probability"] >= 0.5 else "real")
    syn = client.post("/detect/synthesis8", files={"image": ("x.png", img, "image/png")}).json()
    assert syn["p_synthetic"] == pytest.approx(v1["p_synthetic"], abs=1e-6)
    assert syn["class"] == f"{v1['modality']}_{'fake' if v1['p_synthetic'] >= 0.5 else 'real'}"
    assert sum(syn["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    mod = v1["modality"]
    real, fake = syn["probabilities"][f"{mod}_real"], syn["probabilities"][f"{mod}_fake"]
    assert (fake > real) == (v1["p_synthetic"] > 0.5)
    assert_json_error(client.post("/detect/manipulated", files={"image": ("x.png", b"\x89PNG garbage", "image/png")}), 422)
    assert_json_error(client.post("/detect/synthesis8", data={"model": "ddpm"},
                                  files={"image": ("x.png", img, "image/png")}), 422)  # a generator is no detector


def test_v1_manipulate_classical_inline(client):
    a = smooth_image(7, 100)
    r = client.post("/v1/manipulate", files={"image": ("in.png", png_bytes_of(a), "image/png")},
                    data={"method": "retouch", "rect": "20,30,60,70", "seed": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    orig, mask, out = (png_array(from_data_url(body[k])) for k in ("original", "mask", "result"))
    assert orig.shape == mask.shape == out.shape == (100, 100)
    inside = mask > 0
    assert inside[30:70, 20:60].all() and not inside[:30].any() and not inside[:, :20].any()
    assert np.array_equal(orig[~inside], out[~inside])  # nothing outside the mask changes
    assert not np.array_equal(orig[inside], out[inside])
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(from_data_url(body["dicom"])))
    assert "MANIPULATED" in ds.DerivationDescription and (ds.Rows, ds.Columns) == (100, 100)
    assert body["record"]["method"] == "retouch"
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(from_data_url(body["mask_dicom"]))))
    assert np.array_equal(seg.pixel_array.astype(bool), inside)  # the mask as a DICOM SEG over the result
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID


def test_v1_manipulate_mask_png_and_errors(client):
    a = smooth_image(8, 64)
    m = np.zeros((64, 64), np.float32)
    m[10:30, 12:40] = 1
    files = {"image": ("in.png", png_bytes_of(a), "image/png"), "mask": ("m.png", png_bytes_of(m), "image/png")}
    r = client.post("/v1/manipulate", files=files, data={"method": "copy-move", "seed": "1"})
    assert r.status_code == 200, r.text
    got = png_array(from_data_url(r.json()["mask"])) > 0
    assert got[10:30, 12:40].all()
    img = {"image": ("in.png", png_bytes_of(a), "image/png")}
    bad_mask = {**img, "mask": ("m.png", png_bytes_of(np.ones((32, 32), np.float32)), "image/png")}
    assert_json_error(client.post("/v1/manipulate", files=bad_mask, data={"method": "retouch"}), 422)
    assert_json_error(client.post("/v1/manipulate", files=img, data={"method": "retouch", "rect": "0,0,100,10"}), 422)
    assert_json_error(client.post("/v1/manipulate", files=img, data={"method": "warp", "rect": "0,0,10,10"}), 422)
    assert_json_error(client.post("/v1/manipulate", files=img, data={"method": "retouch"}), 422)
    assert_json_error(client.post("/v1/manipulate", files=img, data={"method": "retouch", "rect": "a,b"}), 422)
    empty = {**img, "mask": ("m.png", png_bytes_of(np.zeros((64, 64), np.float32)), "image/png")}
    assert_json_error(client.post("/v1/manipulate", files=empty, data={"method": "retouch"}), 422)


def test_v1_manipulate_diffusion_runs_as_job(client):
    a = smooth_image(9)
    r = client.post("/v1/manipulate", files={"image": ("in.png", png_bytes_of(a), "image/png")},
                    data={"method": "repaint-ddim", "ellipse": "64,64,20,16", "modality": "brain_mri",
                          "label": "glioma", "steps": "2", "seed": "0"})
    assert r.status_code == 202, r.text
    j = wait_job(client, r.json()["job_id"])
    assert j["state"] == "done", j
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{j['id']}/result").content))
    assert {"original.png", "mask.png", "result.png", "result.dcm", "mask.dcm", "result.json"} <= set(z.namelist())
    out, orig = png_array(z.read("result.png")), png_array(z.read("original.png"))
    mask = png_array(z.read("mask.png")) > 0
    assert out.shape == (128, 128) and mask.any()
    assert np.array_equal(out[~mask], orig[~mask])
    drawn = make_mask((128, 128), ellipse=(64, 64, 20, 16))
    assert mask[drawn].all() and mask.sum() > drawn.sum()  # RePaint's default 2 px feather grew the support
    assert json.loads(z.read("result.json"))["record"]["feather_px"] == 2.0
    files = client.get(f"/v1/jobs/{j['id']}?images=true").json()["files"]
    assert files["result.png"].startswith("data:image/png;base64,")


def test_compat_manipulate(client):
    r = client.post("/manipulate", files={"image": ("in.png", png_bytes_of(smooth_image(4)), "image/png")},
                    data={"rect": "10,10,50,50", "method": "retouch"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["method"] == "retouch"
    assert png_array(base64.b64decode(body["manipulated"])).shape == (128, 128)


def test_v1_detect_says_when_a_multiframe_upload_had_only_its_first_frame_scored(client):
    from pydicom.data import get_testdata_file

    data = open(get_testdata_file("emri_small.dcm"), "rb").read()  # 10 frames
    single = open(get_testdata_file("CT_small.dcm"), "rb").read()
    files = [("files", ("cine.dcm", data, "application/dicom")), ("files", ("ct.dcm", single, "application/dicom"))]
    cine, ct = client.post("/v1/detect", files=files, data={"explain": "false"}).json()["results"]
    assert "frame 1 of 10 scored" in cine["note"]
    assert "frame 1 of" not in (ct["note"] or "")


def test_v1_siemens_mosaic_detect_scores_a_slice_preview_and_edit_keep_it_whole(client, siemens_mosaic):
    data = siemens_mosaic.read_bytes()
    r = client.post("/v1/detect", files=[("files", ("dwi.dcm", data, "application/dicom"))], data={"explain": "true"})
    assert r.status_code == 200, r.text
    (row,) = r.json()["results"]
    assert "slice 25 of the 48 in this Siemens mosaic scored" in row["note"]
    assert png_array(from_data_url(row["heatmap"])).shape[:2] == (128, 128)  # the slice's map, not the mosaic's
    prev = client.post("/v1/preview", files={"file": ("dwi.dcm", data, "application/dicom")}).json()
    assert (prev["width"], prev["height"]) == (896, 896)  # the web page draws masks on the picture as stored
    r = client.post("/v1/manipulate", files={"image": ("dwi.dcm", data, "application/dicom")},
                    data={"method": "retouch", "rect": "300,300,340,350", "seed": "1"})
    assert r.status_code == 200, r.text
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(from_data_url(r.json()["dicom"])))
    assert (ds.Rows, ds.Columns) == (896, 896)


def test_an_ensemble_card_is_a_detector_and_the_default(tmp_path, tiny_models):
    """A models folder with a two-network ensemble card: listed as a detector, checked by /readyz with its members,
    the default of /v1/detect; an ensemble whose member is missing is reported by name and does not stop the rest."""
    import shutil

    from .service_helpers import live

    folder = tmp_path / "models"
    shutil.copytree(tiny_models, folder)
    card = json.loads((folder / "detector-default.json").read_text())
    for suffix in (".safetensors", ".bank.safetensors", ".anomaly.safetensors"):
        if (folder / f"detector-default{suffix}").exists():
            shutil.copy(folder / f"detector-default{suffix}", folder / f"second{suffix}")
    card.update(name="second", weights="second.safetensors")
    for key, suffix in (("retrieval", ".bank.safetensors"), ("anomaly", ".anomaly.safetensors")):
        if card.get(key) and card[key].get("file"):
            card[key]["file"] = f"second{suffix}"
    (folder / "second.json").write_text(json.dumps(card))
    for suffix in (".safetensors", ".bank.safetensors", ".anomaly.safetensors"):  # a third network
        if (folder / f"second{suffix}").exists():
            shutil.copy(folder / f"second{suffix}", folder / f"third{suffix}")
    (folder / "third.json").write_text(json.dumps(card).replace('"second', '"third'))
    ens = {"name": "detector-ensemble", "kind": "detector-ensemble", "version": "t1",
           "members": {"primary": "detector-default", "second": "second"}, "veto": {"synthetic": 0.6,
                                                                                    "manipulated": 0.6}}
    (folder / "detector-ensemble.json").write_text(json.dumps(ens))
    with live(folder) as (_, c):
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert {m["name"]: m["ok"] for m in r.json()["models"]}["detector-ensemble"] is True
        listed = {m["name"]: m for m in c.get("/v1/models").json()["models"]}["detector-ensemble"]
        assert listed["kind"] == "detector" and "second" in listed["architecture"]
        files = [("files", ("a.png", png_bytes_of(smooth_image(4)), "image/png"))]
        for data in ({}, {"model": "detector-ensemble"}):
            r = c.post("/v1/detect", files=files, data=data)
            assert r.status_code == 200, r.text
            (row,) = r.json()["results"]
            assert row["detector"] == "detector-ensemble" and "t1" in row["detector_version"]
            assert row["verdict"] in ("real", "synthetic", "manipulated", "uncertain")
        # a second opinion of two networks (their mean): listed with both, ready, the default
        three = {**ens, "version": "t2", "members": {"primary": "detector-default", "second": ["second", "third"]}}
        (folder / "detector-ensemble.json").write_text(json.dumps(three))
        assert c.get("/readyz").status_code == 200
        listed = {m["name"]: m for m in c.get("/v1/models").json()["models"]}["detector-ensemble"]
        assert listed["architecture"] == "ensemble of detector-default and second + third"
        r = c.post("/v1/detect", files=files)
        assert r.status_code == 200 and "t2" in r.json()["results"][0]["detector_version"], r.text
        assert "third" in r.json()["results"][0]["detector_version"]
        for second in ("gone", ["second", "gone"]):
            (folder / "detector-ensemble.json").write_text(json.dumps({**ens, "members": {
                "primary": "detector-default", "second": second}}))
            r = c.get("/readyz")
            assert r.status_code == 503
            bad = {m["name"]: m for m in r.json()["models"]}["detector-ensemble"]
            assert not bad["ok"] and "gone" in bad["problem"] and str(folder) not in bad["problem"]
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", ["CT_small.dcm", "US1_UNCR.dcm"])
def test_v1_manipulate_dicom_upload_keeps_its_stored_values_and_colours(client, name):
    """A DICOM upload's result DICOM keeps the upload's own stored values outside the mask (a CT's values outside its
    display window too) and a colour upload its colours (RGB out); the upload's name is a label, never a file."""
    import pydicom
    from pydicom.data import get_testdata_file

    from medfake.io.readers import dicom_colour

    data = open(get_testdata_file(name), "rb").read()
    if name == "CT_small.dcm":  # a soft-tissue window in the file: most of its values lie outside it
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.WindowCenter, ds.WindowWidth = 40, 400
        buf = io.BytesIO()
        ds.save_as(buf)
        data = buf.getvalue()
    r = client.post("/v1/manipulate", files={"image": ("pyproject.toml", data, "application/dicom")},
                    data={"method": "retouch", "rect": "20,30,60,70", "seed": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    src, out = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(from_data_url(body["dicom"])))
    inside = png_array(from_data_url(body["mask"])) > 0
    want = dicom_colour(src, src.pixel_array)
    want = src.pixel_array if want is None else want
    assert out.pixel_array.shape == want.shape and np.array_equal(out.pixel_array[~inside], want[~inside])
    assert not np.array_equal(out.pixel_array[inside], want[inside])
    import hashlib

    assert body["record"]["input"]["sha256"] == hashlib.sha256(data).hexdigest()  # the upload's, not a file's
    assert body["record"]["input"]["stored_source"] in ("file", "colour")


def _whole_object_repaint_job(client, up, frame: int, depth: int = 0) -> zipfile.ZipFile:
    """A 2-step RePaint-DDIM job on `frame` (± depth) of an upload, answered whole; its result zip."""
    r = client.post("/v1/manipulate", files=up, data={"method": "repaint-ddim", "ellipse": "30,30,10,8",
                                                      "frame": str(frame), "depth": str(depth), "all_frames": "true",
                                                      "modality": "brain_mri", "label": "glioma", "steps": "2"})
    assert r.status_code == 202, r.text
    j = wait_job(client, r.json()["job_id"])
    assert j["state"] == "done", j
    return zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{j['id']}/result").content))


def test_v1_manipulate_frame_of_a_multiframe_upload_back_whole(client):
    """`frame` picks the frame of a multi-frame upload; `all_frames` answers the whole object (the other frames as
    uploaded); without it, that frame alone. A frame the file lacks, or a PNG back whole, is a 422 naming the reason;
    an object that would be larger uncompressed than the upload limit (here a small RLE upload of 1 MB+ of frames)
    is a 413: the answer is bounded as the request is."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import RLELossless

    data = open(get_testdata_file("emri_small.dcm"), "rb").read()
    src = pydicom.dcmread(io.BytesIO(data))
    up = {"image": ("mr.dcm", data, "application/dicom")}
    r = client.post("/v1/manipulate", files=up, data={"method": "retouch", "rect": "16,16,40,40", "frame": "3",
                                                      "all_frames": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = pydicom.dcmread(io.BytesIO(from_data_url(body["dicom"])))
    inside = png_array(from_data_url(body["mask"])) > 0
    assert out.NumberOfFrames == 10 and out.SOPClassUID == src.SOPClassUID
    assert all(np.array_equal(out.pixel_array[i], src.pixel_array[i]) for i in range(10) if i != 3)
    assert np.array_equal(out.pixel_array[3][~inside], src.pixel_array[3][~inside])
    assert not np.array_equal(out.pixel_array[3][inside], src.pixel_array[3][inside])
    assert "frame_number=4 of 10" in out.DerivationDescription and body["record"]["input"]["frame"] == 3
    assert body["mask_dicom"] is None  # no frame of reference: highdicom cannot segment one frame of it (PNG mask)
    r = client.post("/v1/manipulate", files=up, data={"method": "retouch", "rect": "16,16,40,40", "frame": "3"})
    assert r.status_code == 200, r.text
    one = pydicom.dcmread(io.BytesIO(from_data_url(r.json()["dicom"])))
    assert one.NumberOfFrames == 1 and np.array_equal(one.pixel_array[~inside], src.pixel_array[3][~inside])
    assert r.json()["mask_dicom"] is not None

    png = {"image": ("in.png", png_bytes_of(smooth_image(4)), "image/png")}
    import nibabel as nib

    nii = {"image": ("v.nii", nib.Nifti1Image(np.ones((20, 20, 5), np.int16), np.eye(4)).to_bytes(), "image/x-nii")}
    for files, extra, words in [(up, {"frame": "10"}, "frame 10 out of range (0..9)"),
                                (nii, {"all_frames": "true"}, "not a NIfTI volume"),
                                (png, {"all_frames": "true"}, "neither a multi-frame DICOM nor a NIfTI volume"),
                                (png, {"frame": "3"}, "has no frame 3")]:
        r = client.post("/v1/manipulate", files=files, data={"method": "retouch", "rect": "1,1,9,9", **extra})
        assert_json_error(r, 422)
        assert words in r.json()["detail"], r.text

    big = pydicom.dcmread(io.BytesIO(data))
    frames = np.zeros((40, 128, 128), np.uint16)
    frames[:, 32:96, 32:96] = 700
    big.Rows = big.Columns = 128
    big.NumberOfFrames = 40
    big.compress(RLELossless, frames)
    buf = io.BytesIO()
    big.save_as(buf)
    assert len(buf.getvalue()) < 100_000 < 40 * 128 * 128 * 2 - 1_000_000
    r = client.post("/v1/manipulate", files={"image": ("rle.dcm", buf.getvalue(), "application/dicom")},
                    data={"method": "retouch", "rect": "40,40,80,80", "frame": "5", "all_frames": "true"})
    assert_json_error(r, 413)
    assert "MiB uncompressed" in r.json()["detail"], r.text
    r = client.post("/v1/manipulate", files={"image": ("rle.dcm", buf.getvalue(), "application/dicom")},
                    data={"method": "retouch", "rect": "40,40,80,80", "frame": "5"})
    assert r.status_code == 200, r.text

    # a diffusion edit runs as a job; its result.dcm is the whole object too
    z = _whole_object_repaint_job(client, up, frame=2)
    out = pydicom.dcmread(io.BytesIO(z.read("result.dcm")))
    inside = png_array(z.read("mask.png")) > 0
    assert out.NumberOfFrames == 10 and "frame_number=3 of 10" in out.DerivationDescription
    assert all(np.array_equal(out.pixel_array[i], src.pixel_array[i]) for i in range(10) if i != 2)
    assert np.array_equal(out.pixel_array[2][~inside], src.pixel_array[2][~inside])


def test_v1_manipulate_a_lesion_over_several_frames(client):
    """`depth` with `all_frames`: frames frame ± depth are edited (the mask shrinking away from the centre, one
    seed; copy-move one offset), written into the one object; the record names them. Without all_frames, or past
    the object's frames, a 422 saying why; a diffusion slab runs as a job and comes back the same way."""
    import pydicom
    from pydicom.data import get_testdata_file

    data = open(get_testdata_file("emri_small.dcm"), "rb").read()
    src = pydicom.dcmread(io.BytesIO(data))
    up = {"image": ("mr.dcm", data, "application/dicom")}
    form = {"method": "retouch", "mode": "noise", "ellipse": "32,32,12,10", "frame": "4", "all_frames": "true"}
    r = client.post("/v1/manipulate", files=up, data={**form, "depth": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = pydicom.dcmread(io.BytesIO(from_data_url(body["dicom"])))
    assert body["record"]["slab_frames"] == [2, 3, 4, 5, 6] and out.NumberOfFrames == 10
    assert "frame_number=3,4,5,6,7 of 10" in out.DerivationDescription
    changed = [int((out.pixel_array[i] != src.pixel_array[i]).sum()) for i in range(10)]
    assert all(changed[i] == 0 for i in (0, 1, 7, 8, 9)), changed
    assert changed[4] > changed[3] > 0 and changed[4] > changed[5] > 0 and changed[2] > 0 and changed[6] > 0
    for words, extra in [("add all_frames=true", {"all_frames": "false", "depth": "1"}),
                         ("needs frames -1–9; mr.dcm has 0–9", {"depth": "5", "frame": "4"}),
                         ("needs frames 7–11", {"depth": "2", "frame": "9"})]:
        r = client.post("/v1/manipulate", files=up, data={**form, **extra})
        assert_json_error(r, 422)
        assert words in r.json()["detail"], r.text
    z = _whole_object_repaint_job(client, up, frame=5, depth=1)
    out = pydicom.dcmread(io.BytesIO(z.read("result.dcm")))
    assert "frame_number=5,6,7 of 10" in out.DerivationDescription
    assert [i for i in range(10) if not np.array_equal(out.pixel_array[i], src.pixel_array[i])] == [4, 5, 6]


def test_mask_views_setting_chooses_the_localizers_test_time_views(tmp_path, tiny_models):
    """MEDFAKE_MASK_VIEWS (Settings.mask_views) reaches the detector's localizer: a real server at 1 view returns
    the 1-view mask at the card's 1-view threshold, unset it uses the card's 8 views; a view count the card has no
    threshold for is a clear 503 (and /readyz names it) and the server stays up."""
    import shutil

    import torch

    from medfake.data.canonical import to_canonical
    from medfake.detection.localizer import load_localizer
    from medfake.io import read_image
    from medfake.models.registry import create, make_config
    from medfake.models.weights import save_weights

    from .service_helpers import live

    d = tmp_path / "models"
    shutil.copytree(tiny_models, d)
    card = json.loads((d / "detector-default.json").read_text())
    card["localizer"] = "loc"
    card.pop("copy_move", None)  # the mask is then the localizer's alone
    (d / "detector-default.json").write_text(json.dumps(card))
    torch.manual_seed(0)
    cfg = {"features": [4, 4, 8, 8, 16, 4]}
    save_weights(create("localizer-unet", make_config("localizer-unet", cfg)), d / "loc.safetensors")
    (d / "loc.json").write_text(json.dumps({
        "name": "loc", "kind": "localizer", "architecture": "localizer-unet", "version": "t1", "config": cfg,
        "weights": "loc.safetensors", "dtype": "float16", "threshold": 0.5, "tta_views": 8,
        "thresholds_by_views": {"1": 0.5, "8": 0.5}}))
    (tmp_path / "a.png").write_bytes(png_bytes_of(smooth_image(4)))  # as the server decodes it: 8-bit
    x = torch.as_tensor(to_canonical(read_image(tmp_path / "a.png")))[None, None]
    want = {v: load_localizer("loc", d, views=v).masks(x)[0] for v in (1, 8)}
    assert not np.array_equal(want[1], want[8])  # the two view counts give other masks here
    files = {"files": ("a.png", (tmp_path / "a.png").read_bytes(), "image/png")}
    for views in (1, None):
        with live(d, mask_views=views) as (_, c):
            r = c.post("/v1/detect", files=files, data={"explain": "true"})
            assert r.status_code == 200, r.text
            got = png_array(from_data_url(r.json()["results"][0]["mask"])) > 0
            assert np.array_equal(got, want[views or 8])
            loc_row = next(m for m in c.get("/readyz").json()["models"] if m["name"] == "loc")
            assert loc_row["ok"], loc_row
    with live(d, mask_views=2) as (_, c):
        r = c.post("/v1/detect", files=files, data={"explain": "true"})
        assert_json_error(r, 503)
        assert "no mask threshold for 2 test-time views" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")  # the misconfiguration shows before the first explained request too
        loc_row = next(m for m in ready.json()["models"] if m["name"] == "loc")
        assert ready.status_code == 503 and not loc_row["ok"] and "MEDFAKE_MASK_VIEWS=2" in loc_row["problem"]


def test_mask_views_environment_is_checked(monkeypatch):
    from medfake.settings import Settings

    monkeypatch.setenv("MEDFAKE_MASK_VIEWS", "2")
    assert Settings().mask_views == 2
    monkeypatch.setenv("MEDFAKE_MASK_VIEWS", "")
    assert Settings().mask_views is None
    monkeypatch.setenv("MEDFAKE_MASK_VIEWS", "4")
    with pytest.raises(ValueError, match="MEDFAKE_MASK_VIEWS must be 1, 2 or 8"):
        Settings()
