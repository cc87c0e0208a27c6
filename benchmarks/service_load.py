"""Load test for the service: start `uvicorn medfake.service:create_app` in a subprocess, fire N /v1/detect
requests (one 128 px PNG each) at a given concurrency with httpx async, report status counts (target: zero
5xx), p50/p99 latency and throughput, and append the result to benchmarks/RESULTS.md.

    python benchmarks/service_load.py                        # shipped models/ (the default detector), 1000 × 16
    python benchmarks/service_load.py --tiny --requests 100  # a tiny detector trained here (checks the script)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED, append  # noqa: E402


def test_png() -> tuple[bytes, str]:
    """A real 128 px test image when ../shared is present, else a smooth generated one."""
    from PIL import Image as PILImage

    if SHARED.exists():
        from medfake.data import read_manifest

        rec = next(r for r in read_manifest(SHARED) if r.split == "test")
        return rec.path.read_bytes(), f"medimg128 test image ({rec.modality})"
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(np.random.default_rng(0).random((128, 128)), 6)
    a = (a - a.min()) / (a.max() - a.min())
    buf = io.BytesIO()
    PILImage.fromarray((a * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue(), "generated 128 px PNG (no ../shared)"


def tiny_detector(out: Path) -> None:
    """A dual-srm detector trained 4 steps on generated blobs, published as detector-default (script check only)."""
    import csv
    import json
    import shutil

    from PIL import Image as PILImage
    from scipy.ndimage import gaussian_filter

    from medfake.data.modalities import MODALITY_NAMES
    from medfake.detection import train_detector

    root = out / "_data"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    checker = (((xx + yy) % 2) * 2 - 1) * 0.12
    rows = []
    for kind in ("real", "synthetic", "manipulated"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(9):
            a = gaussian_filter(rng.random((128, 128)), 6)
            a = 0.15 + 0.7 * (a - a.min()) / (a.max() - a.min())
            mrel = ""
            if kind == "synthetic":
                a = a + checker
            elif kind == "manipulated":
                m = np.zeros((128, 128), bool)
                m[32:80, 32:80] = True
                a = np.where(m, a + checker, a)
                mrel = f"masks/{i}.png"
                (root / "masks").mkdir(exist_ok=True)
                PILImage.fromarray(m.astype(np.uint8) * 255).save(root / mrel)
            PILImage.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)).save(root / kind / f"{i}.png")
            rows.append({"path": f"{kind}/{i}.png", "modality": MODALITY_NAMES[i % 6], "label": "",
                         "split": "train" if i % 3 else "val", "kind": kind, "generator": "", "mask": mrel})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    train_detector("dual-srm", root / "manifest.csv", root / "out", name="det", steps=4, batch_size=8, device="cpu",
                   bank_size=12, config={"stem": 4, "widths": [8, 16, 16], "seg_channels": 4})
    card = json.loads((root / "out" / "det.json").read_text())
    card.update(name="detector-default", weights="detector-default.safetensors")
    for key, suffix in (("retrieval", ".bank.safetensors"), ("anomaly", ".anomaly.safetensors")):
        if card.get(key) and card[key].get("file"):
            shutil.copy(root / "out" / card[key]["file"], out / f"detector-default{suffix}")
            card[key]["file"] = f"detector-default{suffix}"
    shutil.copy(root / "out" / "det.safetensors", out / "detector-default.safetensors")
    (out / "detector-default.json").write_text(json.dumps(card))
    shutil.rmtree(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def fire(url: str, png: bytes, n: int, concurrency: int, explain: bool, api_key: str | None,
               copy_move: bool | None = None):
    import httpx

    lat: list[float] = []
    status: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client):
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/detect", files={"files": ("x.png", png, "image/png")},
                                      data={"explain": str(explain).lower(),
                                            **({} if copy_move is None else {"copy_move": str(copy_move).lower()})},
                                      headers=headers)
                code = r.status_code
            except httpx.HTTPError:
                code = -1  # connection error / timeout
            lat.append(time.perf_counter() - t0)
            status[code] = status.get(code, 0) + 1

    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task(f"{n} × /v1/detect @ {concurrency}", total=n)

        async def ticker():
            while len(lat) < n:
                prog.update(task, completed=len(lat))
                await asyncio.sleep(0.2)

        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            t0 = time.perf_counter()
            tick = asyncio.create_task(ticker())
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
            wall = time.perf_counter() - t0
            tick.cancel()
    return np.array(lat), status, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--models-dir", type=Path, default=None, help="default: MEDFAKE_MODELS_DIR or models/")
    ap.add_argument("--tiny", action="store_true", help="train a tiny detector in a temp dir (checks the script)")
    ap.add_argument("--explain", action="store_true", help="ask for heatmaps and masks (Grad-CAM) too")
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                    help="send copy_move=true/false (default: send nothing, the server's default: on)")
    ap.add_argument("--mask-views", type=int, choices=(1, 2, 8), default=None,
                    help="MEDFAKE_MASK_VIEWS of the server: test-time views of the explain masks (default: the card's)")
    ap.add_argument("--threads", type=int, default=None, help="OMP/torch threads of the server process")
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--note", default="", help="free text added to the RESULTS.md entry")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="medfake-load-")
    models = args.models_dir
    if args.tiny:
        models = Path(tmp.name)
        print("training a tiny detector …", flush=True)
        tiny_detector(models)
    env = dict(os.environ)
    if models is not None:
        env["MEDFAKE_MODELS_DIR"] = str(models)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.mask_views is not None:
        env["MEDFAKE_MASK_VIEWS"] = str(args.mask_views)
    key = "bench-key"
    env["MEDFAKE_API_KEYS"] = key
    env["MEDFAKE_MAX_FILES"] = env.get("MEDFAKE_MAX_FILES", "64")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "medfake.service:create_app", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            env=env, cwd=ROOT)
    try:
        import httpx

        t0 = time.time()
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() - t0 > 60:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        models_info = httpx.get(f"{url}/v1/models", headers={"X-API-Key": key}, timeout=120).json()["models"]
        if not any(m["kind"] == "detector" for m in models_info):
            raise SystemExit("no detector model card in the models folder (use --tiny to check the script)")
        png, what = test_png()
        warm = httpx.post(f"{url}/v1/detect", files={"files": ("x.png", png, "image/png")}, headers={"X-API-Key": key},
                          timeout=120)
        if warm.status_code != 200:
            raise SystemExit(f"warm-up request failed: {warm.status_code} {warm.text[:200]}")
        served = warm.json()["results"][0]  # the detector the server's default resolved to, as its rows name it
        det = {**next((m for m in models_info if m["name"] == served["detector"]), {}),
               "name": served["detector"], "version": served["detector_version"]}
        lat, status, wall = asyncio.run(fire(url, png, args.requests, args.concurrency, args.explain, key,
                                               args.copy_move))
        healthy = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        tmp.cleanup()

    n5xx = sum(v for k, v in status.items() if k >= 500 or k < 0)
    ms = lat * 1000
    body = (
        f"Detector: `{det['name']}` version {det['version']} ({det.get('architecture')}); image: {what}; "
        f"explain={args.explain}; copy_move={'default (on)' if args.copy_move is None else args.copy_move}; "
        + (f"MEDFAKE_MASK_VIEWS={args.mask_views}; " if args.mask_views is not None else "") +
        f"server: 1 uvicorn worker, subprocess"
        + (f", OMP threads {args.threads}" if args.threads else "") + ".\n"
        + (f"{args.note}\n" if args.note else "")
        + "\n| requests | concurrency | status counts | 5xx/errors | p50 ms | p90 ms | p99 ms | max ms | req/s | healthz after |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {args.requests} | {args.concurrency} | {dict(sorted(status.items()))} | {n5xx} | {np.percentile(ms, 50):.0f} | "
        f"{np.percentile(ms, 90):.0f} | {np.percentile(ms, 99):.0f} | {ms.max():.0f} | {args.requests / wall:.1f} | "
        f"{'ok' if healthy else 'FAILED'} |\n"
    )
    if args.no_append:
        print(body)
    else:
        append("Service load (/v1/detect)", body)
    if n5xx or not healthy:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
