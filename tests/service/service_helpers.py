"""Helpers for the service tests (imported by conftest and the test modules)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np

TINY_DDPM = {"channels": [16, 16, 32], "attention_levels": [False, False, False], "norm_num_groups": 8,
             "num_head_channels": 8}


def smooth_image(seed: int, size: int = 128) -> np.ndarray:
    """A smooth greyscale test image (blobs), float [0, 1]."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((size, size)), 6)
    a = (a - a.min()) / (a.max() - a.min() + 1e-9)
    return a.astype(np.float32)


def png_bytes_of(a: np.ndarray, mode: str = "L") -> bytes:
    from PIL import Image as PILImage

    if mode == "I;16":
        im = PILImage.fromarray((a * 65535).astype(np.uint16))
    elif mode == "RGBA":
        u = (a * 255).astype(np.uint8)
        im = PILImage.fromarray(np.stack([u, u, u, np.full_like(u, 255)], -1), mode="RGBA")
    else:
        im = PILImage.fromarray((a * 255).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """create_app(settings) under a real uvicorn.Server in a thread, on 127.0.0.1:<free port>."""

    def __init__(self, settings):
        import uvicorn

        from medfake.service import create_app

        self.settings = settings
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 20 or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_settings(models_dir: Path, **kw):
    from medfake.settings import Settings

    base = dict(models_dir=Path(models_dir), max_upload_bytes=1_000_000, max_pixels=4_000_000, max_files_per_request=8,
                max_synthesis_images=8, job_workers=1, job_queue=4, job_timeout_s=120.0, request_timeout_s=60.0,
                result_ttl_s=600.0, api_keys=(), cors_origins=())
    base.update(kw)
    return Settings(**base)


@contextlib.contextmanager
def live(models_dir, **kw):
    with LiveServer(make_settings(models_dir, **kw)) as s:
        import httpx

        with httpx.Client(base_url=s.url, timeout=60) as c:
            yield s, c


def wait_job(client, job_id: str, timeout: float = 60.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = client.get(f"/v1/jobs/{job_id}").json()
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


