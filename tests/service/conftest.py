"""Fixtures for the service tests: a tiny real DDPM trained for 2 steps, and a real uvicorn server on a free
loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from .service_helpers import TINY_DDPM, LiveServer, make_settings, png_bytes_of, smooth_image


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """models/ with a tiny class-conditional DDPM ('ddpm') trained 2 steps on generated PNGs."""
    import torch

    from medfake.data.manifest import Record
    from medfake.synthesis.train import train_generator

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("service-data")
    recs = []
    for i, (mod, lab) in enumerate([("brain_mri", "glioma"), ("brain_mri", "notumor")] * 2):
        p = root / mod / lab / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(png_bytes_of(smooth_image(i)))
        recs.append(Record(p, mod, lab, "train"))
    out = tmp_path_factory.mktemp("service-models")
    train_generator("ddpm", recs, out, name="ddpm", config=TINY_DDPM, steps=2, batch_size=4, device="cpu",
                    ckpt_every=1000, log_every=1)
    for p in out.glob("*.ckpt.pt"):
        p.unlink()
    return out


@pytest.fixture(scope="session")
def server(tiny_models):
    with LiveServer(make_settings(tiny_models)) as s:
        yield s


@pytest.fixture
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


