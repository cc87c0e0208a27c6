"""API tests against a real uvicorn server: health, models, model_path refusal, API keys, CORS, limits, jobs."""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import httpx
import numpy as np
import pytest
from .service_helpers import live, png_bytes_of, smooth_image, wait_job

REFUSED = "model paths are not accepted; choose a model by name from GET /v1/models"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(w: int = 100_000, h: int = 100_000) -> bytes:
    """A tiny file whose IHDR declares w×h pixels (decompression-bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        png_chunk(b"IEND", b"")


def assert_json_error(r: httpx.Response, status: int | tuple[int, ...]):
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in body["detail"] and "/tmp/" not in body["detail"] and "/work/" not in body["detail"]


# ------------------------------------------------------------------ health, models, page
def test_health_ready_models_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert sorted(m["name"] for m in r.json()["models"]) == ["ddpm", "detector-default", "vae"]
    models = client.get("/v1/models").json()
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name["detector-default"]["kind"] == "detector"
    assert by_name["vae"]["kind"] == "autoencoder"
    m = by_name["ddpm"]
    assert m["name"] == "ddpm" and m["kind"] == "generator" and m["version"].endswith("-s2")
    assert "brain_mri" in m["modalities"] and isinstance(m["metrics"], dict)
    assert "command" not in m["card"]  # no server command lines / paths
    assert models["modalities"]["chest_xray"] == ["NORMAL", "PNEUMONIA"]
    assert {x["name"]: x["diffusion"] for x in models["manipulation_methods"]}["repaint-ddim"] is True
    page = client.get("/")
    assert page.status_code == 200 and "Synthesis" in page.text and "Detection" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").json()["paths"]["/v1/detect"]


def test_readyz_without_models_is_503(tmp_path, tiny_models):
    import shutil

    with live(tmp_path) as (_, c):
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        assert_json_error(c.post("/v1/synthesize", json={"modality": "brain_mri"}), 503)
        # a card whose weights do not fit its architecture is reported, by name, without server paths
        shutil.copy(tiny_models / "ddpm.json", tmp_path / "broken.json")
        shutil.copy(tiny_models / "detector-default.safetensors", tmp_path / "ddpm.safetensors")
        r = c.get("/readyz")
        assert r.status_code == 503
        (row,) = r.json()["models"]
        assert row["name"] == "broken" and not row["ok"] and row["problem"] and str(tmp_path) not in row["problem"]
        assert c.get("/healthz").status_code == 200
        j = c.post("/v1/synthesize", json={"modality": "brain_mri", "model": "broken", "steps": 1}).json()
        failed = wait_job(c, j["job_id"])
        assert failed["state"] == "failed" and str(tmp_path) not in failed["error"]


def test_device_without_a_gpu_is_a_clear_503(tiny_models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: MEDFAKE_DEVICE=cuda is valid here")
    with live(tiny_models, device="cuda") as (_, c):
        r = c.post("/v1/detect", files={"files": ("a.png", png_bytes_of(smooth_image(0)), "image/png")})
        assert_json_error(r, 503)
        assert "sees no CUDA GPU" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
    with live(tiny_models, device="cpu") as (_, c):
        r = c.post("/v1/detect", files={"files": ("a.png", png_bytes_of(smooth_image(0)), "image/png")})
        assert r.status_code == 200 and r.json()["results"][0]["verdict"] in ("real", "synthetic", "manipulated",
                                                                              "uncertain")


# ------------------------------------------------------------------ model_path is refused everywhere
@pytest.mark.parametrize("path,kind", [
    ("/v1/detect", "files"), ("/v1/manipulate", "image"), ("/detect/manipulated", "image"),
    ("/detect/synthesis8", "image"), ("/manipulate", "image"), ("/synthesis", None), ("/v1/preview", "file"),
])
def test_model_path_refused_in_forms(client, path, kind):
    files = {kind: ("a.png", png_bytes_of(smooth_image(0)), "image/png")} if kind else None
    data = {"model_path": "/etc/passwd", "modality": "brain_mri", "method": "retouch", "rect": "1,1,9,9"}
    r = client.post(path, data=data, files=files)
    assert_json_error(r, 400)
    assert r.json()["detail"] == REFUSED


def test_model_path_refused_in_json_and_query_and_names(client):
    r = client.post("/v1/synthesize", json={"modality": "brain_mri", "model_path": "x.pt"})
    assert_json_error(r, 400)
    assert client.post("/v1/synthesize?model_path=x", json={"modality": "brain_mri"}).status_code == 400
    for bad in ("../models/ddpm", "/etc/passwd", "ddpm.json", "x/y"):
        r = client.post("/v1/synthesize", json={"modality": "brain_mri", "model": bad})
        assert_json_error(r, 400)
        assert r.json()["detail"] == REFUSED
    assert_json_error(client.post("/v1/synthesize", json={"modality": "brain_mri", "model": "nonexistent"}), 404)


# ------------------------------------------------------------------ API keys and CORS
def test_api_key_enforced(tiny_models):
    with live(tiny_models, api_keys=("s3cret", "other")) as (_, c):
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/").status_code == 200 and c.get("/static/style.css").status_code == 200
        for path in ("/v1/models", "/docs", "/openapi.json", "/v1/jobs/" + "0" * 32):
            assert_json_error(c.get(path), 401)
            assert_json_error(c.get(path, headers={"X-API-Key": "wrong"}), 401)
        assert_json_error(c.post("/v1/detect", files={"files": ("a.png", b"x")}), 401)
        assert c.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": "other"}).status_code == 200


def test_cors_off_by_default(client):
    pre = client.options("/v1/models", headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    r = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_configured_origins_only(tiny_models):
    with live(tiny_models, cors_origins=("https://ok.example",)) as (_, c):
        r = c.get("/v1/models", headers={"Origin": "https://ok.example"})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
        assert r.headers.get("access-control-allow-credentials") != "true"
        r = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        pre = c.options("/v1/detect", headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://ok.example"


# ------------------------------------------------------------------ limits
def test_oversize_upload_413_declared_and_streamed(client, server):
    cap = server.settings.max_upload_bytes
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (cap + 10)
    assert_json_error(client.post("/v1/detect", files={"files": ("big.png", big, "image/png")}), 413)

    def chunks():  # no Content-Length: chunked transfer, counted as it streams
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n" \
                   b"Content-Type: image/png\r\n\r\n"
        yield boundary
        for _ in range(cap // 65536 + 4):
            yield b"\0" * 65536
        yield b"\r\n--xyz--\r\n"

    r = client.post("/v1/detect", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert_json_error(r, 413)
    assert client.get("/healthz").status_code == 200


def test_too_many_files_and_bombs(client, server):
    n = server.settings.max_files_per_request + 1
    files = [("files", (f"f{i}.png", png_bytes_of(smooth_image(i, 16)), "image/png")) for i in range(n)]
    r = client.post("/v1/detect", files=files)
    assert_json_error(r, 413)
    assert "too many files" in r.json()["detail"]
    r = client.post("/v1/detect", files={"files": ("bomb.png", bomb_png(), "image/png")})
    assert_json_error(r, 413)
    assert "bomb" in r.json()["detail"] or "exceeds the limit" in r.json()["detail"]
    r = client.post("/v1/preview", files={"file": ("bomb.png", bomb_png(70_000, 70_000), "image/png")})
    assert_json_error(r, 413)


def test_bad_files_are_rows_not_failures(client):
    """Two bad files → 422 with both reasons; the v1 detect endpoint never 5xx on bad input."""
    files = [("files", ("a.png", b"not an image", "image/png")), ("files", ("b.dcm", b"", "application/dicom"))]
    r = client.post("/v1/detect", files=files)
    assert_json_error(r, 422)
    assert "a.png" in r.json()["detail"] and "b.dcm" in r.json()["detail"]


def test_preview_decodes_16bit_png(client):
    a = smooth_image(3, 40)
    r = client.post("/v1/preview", files={"file": ("x16.png", png_bytes_of(a, "I;16"), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (40, 40) and body["image"].startswith("data:image/png;base64,")


def test_preview_decodes_a_metaimage_volume_and_refuses_its_detached_header(client, tmp_path):
    """An .mha upload (ITK's one-file MetaImage, written here by SimpleITK) is a volume: its middle slice and slice
    count come back; an .mhd upload, whose voxels would be in another file, is one clear 422."""
    import SimpleITK as sitk

    vol = (np.stack([smooth_image(k, 48) for k in range(5)]) * 3000 - 1000).astype(np.int16)  # z, y, x
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "v.mha"))
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "v.mhd"))
    mha = (tmp_path / "v.mha").read_bytes()
    r = client.post("/v1/preview", files={"file": ("v.mha", mha, "application/octet-stream")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "metaimage" and (body["width"], body["height"]) == (48, 48)
    assert (body["frames"], body["frame"]) == (5, 2)
    r = client.post("/v1/preview", files={"file": ("v.mhd", (tmp_path / "v.mhd").read_bytes(), "text/plain")})
    assert_json_error(r, 422)
    assert "one .mha" in r.json()["detail"]


def test_synthesis_validation(client, server):
    assert_json_error(client.post("/v1/synthesize", json={"modality": "heart_echo"}), 422)
    assert_json_error(client.post("/v1/synthesize", json={"modality": "brain_mri", "label": "NORMAL"}), 422)
    too_many = server.settings.max_synthesis_images + 1
    assert_json_error(client.post("/v1/synthesize", json={"modality": "brain_mri", "n": too_many}), 413)
    assert_json_error(client.post("/v1/synthesize", json={"modality": "brain_mri", "n": 0}), 422)
    assert_json_error(client.post("/v1/synthesize", json={"modality": "brain_mri", "sampler": "euler"}), 422)
    r = client.post("/v1/synthesize", json={"modality": "brain_mri", "model": "vae"})
    assert_json_error(r, 422)
    assert "not a generator" in r.json()["detail"]
    assert_json_error(client.post("/v1/synthesize", content=b"{not json", headers={"Content-Type": "application/json"}), 422)
    assert_json_error(client.get("/v1/jobs/not-a-job"), 404)
    assert_json_error(client.get("/v1/jobs/" + "a" * 32 + "/result"), 404)


def test_synthesis_cost_is_bounded_before_queueing(tiny_models):
    """images × steps (× 2 with guidance) at the settings the job would use is refused with 413 and a way out,
    before any job is queued; requests within the bound run."""
    with live(tiny_models, max_synthesis_passes=20) as (_, c):
        ask = {"modality": "brain_mri", "label": "glioma", "sampler": "ddim", "model": "ddpm"}
        r = c.post("/v1/synthesize", json={**ask, "n": 8, "steps": 3})
        assert_json_error(r, 413)
        assert "24 network passes" in r.json()["detail"] and "at most 6 images" in r.json()["detail"]
        r = c.post("/v1/synthesize", json={**ask, "n": 4, "steps": 3, "guidance": 2.0})
        assert_json_error(r, 413)
        assert "guidance 2" in r.json()["detail"] and "at most 3 images" in r.json()["detail"]
        # steps left open: the job's default (DDIM 50 for a card without sampler settings) is what is counted
        assert_json_error(c.post("/v1/synthesize", json={**ask, "n": 1}), 413)
        ok = c.post("/v1/synthesize", json={**ask, "n": 3, "steps": 3, "guidance": 2.0})
        assert ok.status_code == 202, ok.text
        assert wait_job(c, ok.json()["job_id"])["state"] == "done"


# ------------------------------------------------------------------ jobs
def test_synthesis_job_runs_to_completion(client):
    import pydicom
    from PIL import Image as PILImage

    r = client.post("/v1/synthesize", json={"modality": "brain_mri", "label": "glioma", "n": 2, "sampler": "ddim",
                                            "steps": 3, "seed": 7, "model": "ddpm"})
    assert r.status_code == 202, r.text
    jid = r.json()["job_id"]
    seen = []
    t0 = time.time()
    while time.time() - t0 < 60:
        j = client.get(f"/v1/jobs/{jid}").json()
        seen.append((j["state"], j["progress"]))
        if j["state"] in ("done", "failed"):
            break
        time.sleep(0.02)
    assert j["state"] == "done", j
    assert j["progress"] == 1.0 and all(0.0 <= p <= 1.0 for _, p in seen)
    assert [p for _, p in seen] == sorted(p for _, p in seen)  # progress never goes back
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{jid}/result").content))
    names = sorted(z.namelist())
    pngs = [n for n in names if n.endswith(".png")]
    dcms = [n for n in names if n.endswith(".dcm")]
    assert len(pngs) == 2 and len(dcms) == 2 and "result.json" in names
    im = PILImage.open(io.BytesIO(z.read(pngs[0])))
    assert im.size == (128, 128) and im.mode == "L"
    ds = pydicom.dcmread(io.BytesIO(z.read(dcms[0])))
    assert "SYNTHETIC" in ds.DerivationDescription and ds.Rows == 128
    with_images = client.get(f"/v1/jobs/{jid}?images=true").json()
    assert [i["label"] for i in with_images["images"]] == ["glioma", "glioma"]


def test_compat_synthesis_returns_base64_pngs(client):
    import base64

    from PIL import Image as PILImage

    r = client.post("/synthesis", data={"class": "brain_mri_notumor", "num_images": "2", "steps": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["labels"] == ["notumor", "notumor"] and len(body["images"]) == 2
    assert PILImage.open(io.BytesIO(base64.b64decode(body["images"][0]))).size == (128, 128)
    assert_json_error(client.post("/synthesis", data={"class": "brain"}), 422)


def test_queue_full_429_timeout_and_expiry(tiny_models):
    with live(tiny_models, job_queue=1, job_workers=1, job_timeout_s=0.3, result_ttl_s=1.0) as (s, c):
        slow = {"modality": "brain_mri", "n": 8, "sampler": "ddpm", "steps": 1000}
        ids, codes = [], []
        for _ in range(4):
            r = c.post("/v1/synthesize", json=slow)
            codes.append(r.status_code)
            if r.status_code == 202:
                ids.append(r.json()["job_id"])
            else:
                assert_json_error(r, 429)
        assert codes[:2] == [202, 202] and 429 in codes
        j = wait_job(c, ids[0])
        assert j["state"] == "failed" and "time limit" in j["error"]
        for jid in ids[1:]:
            wait_job(c, jid)
        fast = c.post("/v1/synthesize", json={"modality": "brain_mri", "n": 1, "steps": 1}).json()["job_id"]
        assert wait_job(c, fast)["state"] == "done"
        job_dir = s.app.state.jobs.root / fast
        assert job_dir.is_dir()
        time.sleep(1.3)
        assert c.get(f"/v1/jobs/{fast}").json()["state"] == "expired"
        assert not job_dir.exists()
        assert_json_error(c.get(f"/v1/jobs/{fast}/result"), 410)
