"""Fixtures for the service tests: a tiny real DDPM trained for 2 steps, and a real uvicorn server on a free
loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from .service_helpers import TINY_DDPM, LiveServer, make_settings, png_bytes_of, smooth_image


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """models/ with a tiny class-conditional DDPM ('ddpm') and a tiny KL autoencoder ('vae', which the service must
    never offer as a generator) trained 2 steps on generated PNGs, and the tiny default detector."""
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
    train_generator("vae", recs, out, name="vae", config={"channels": [8, 8, 16], "norm_num_groups": 8}, steps=2,
                    batch_size=4, device="cpu", ckpt_every=1000, log_every=1)
    _tiny_detector(tmp_path_factory.mktemp("service-detds"), out)
    for p in out.glob("*.ckpt*"):
        p.unlink()
    return out


def _tiny_detector(root: Path, out: Path) -> None:
    """A dual-srm detector (synthetic + manipulated heads, segmentation) trained a few steps on generated
    blobs: real, synthetic (+ checkerboard), manipulated (checkerboard patch in a square mask). Published
    as the default detector card."""
    import csv
    import json
    import shutil

    import numpy as np

    from medfake.data.modalities import MODALITY_NAMES
    from medfake.detection import train_detector

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    checker = (((xx + yy) % 2) * 2 - 1).astype(np.float32) * 0.12
    rows = []
    for kind in ("real", "synthetic", "manipulated"):
        for i in range(9):
            a = 0.15 + 0.7 * smooth_image(int(rng.integers(1 << 30)))
            mrel = ""
            if kind == "synthetic":
                a = a + checker
            elif kind == "manipulated":
                m = np.zeros((128, 128), bool)
                y0, x0 = (int(v) for v in rng.integers(0, 64, 2))
                m[y0:y0 + 48, x0:x0 + 48] = True
                a = np.where(m, a + checker, a)
                mrel = f"masks/{i}.png"
                (root / "masks").mkdir(exist_ok=True)
                (root / mrel).write_bytes(png_bytes_of(m.astype(np.float32)))
            rel = f"{kind}/{i}.png"
            (root / kind).mkdir(exist_ok=True)
            (root / rel).write_bytes(png_bytes_of(np.clip(a, 0, 1)))
            rows.append({"path": rel, "modality": MODALITY_NAMES[i % 6], "label": "", "split": "train" if i % 3 else "val",
                         "kind": kind, "generator": "checker" if kind != "real" else "", "mask": mrel})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp = root / "out"
    train_detector("dual-srm", root / "manifest.csv", tmp, name="det", steps=4, batch_size=8, lr=3e-3, device="cpu",
                   seed=0, bank_size=12, config={"stem": 4, "widths": [8, 16, 16], "seg_channels": 4})
    card = json.loads((tmp / "det.json").read_text())
    card.update(name="detector-default", weights="detector-default.safetensors")
    for key, suffix in (("retrieval", ".bank.safetensors"), ("anomaly", ".anomaly.safetensors")):
        if card.get(key) and card[key].get("file") and (tmp / card[key]["file"]).exists():
            shutil.copy(tmp / card[key]["file"], out / f"detector-default{suffix}")
            card[key]["file"] = f"detector-default{suffix}"
    shutil.copy(tmp / "det.safetensors", out / "detector-default.safetensors")
    (out / "detector-default.json").write_text(json.dumps(card))


@pytest.fixture(scope="session")
def server(tiny_models):
    with LiveServer(make_settings(tiny_models)) as s:
        yield s


@pytest.fixture
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


