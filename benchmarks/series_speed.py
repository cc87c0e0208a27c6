"""A PACS-sized job: one CT series of N 512×512 16-bit DICOM slices through `medfake detect PATH --summary`
(read → window → canonical 128 px → detector → per-image CSV → per-series verdict), slices/s and peak memory.

The slices are pydicom's CT_small.dcm upsampled to 512 px with fresh noise per slice, written as one series (real
geometry and HU rescale; no ../shared needed). What is timed is `medfake detect`'s own code path.

    python benchmarks/series_speed.py [--n 300] [--no-copy-move] [--threads 2] [--no-append]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402


def write_series(folder: Path, n: int, side: int = 512, seed: int = 0) -> str:
    """N slices of one series (CT_small upsampled, noise per slice); returns the Series Instance UID."""
    import pydicom
    from PIL import Image as P
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    src = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    base = np.asarray(P.fromarray(src.pixel_array.astype(np.float32)).resize((side, side), P.BICUBIC))
    rng = np.random.default_rng(seed)
    series, study = generate_uid(), generate_uid()
    for i in range(n):
        ds = src.copy()
        a = np.clip(base + rng.normal(0, 12, base.shape), -1024, 3000).astype(src.pixel_array.dtype)
        ds.Rows = ds.Columns = side
        ds.PixelSpacing = [float(v) * src.Rows / side for v in src.PixelSpacing]
        ds.PixelData = a.tobytes()
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID = series, study, generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"slice_{i:04d}.dcm")
    return series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from medfake.detection import detect_paths, write_csv
    from medfake.detection.detector import load_detector
    from medfake.detection.summary import detector_rates, summarize, write_summary_csv

    load_detector("default")  # the model loads once per process; not part of a series' time
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "series"
        d.mkdir()
        uid = write_series(d, args.n)
        t0 = time.perf_counter()
        rows = detect_paths([d], copy_move=args.copy_move)
        write_csv(rows, Path(tmp) / "res.csv")
        groups = summarize(rows, "series", *detector_rates())
        write_summary_csv(groups, Path(tmp) / "series.csv")
        dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g = groups[0]
    cue = "off" if args.copy_move is False else "on"
    body = (f"{args.n} slices of 512×512 16-bit CT DICOM, one series (`{uid[-12:]}`), copy-move cue {cue}: "
            f"**{args.n / dt:.0f} slices/s** ({dt:.1f} s for the series: read, window, 128 px, detector, CSV, "
            f"series verdict), peak RSS {peak:.0f} MiB. Series verdict: {g['verdict']} ({g['real']} real, "
            f"{g['synthetic']} synthetic, {g['manipulated']} manipulated, {g['uncertain']} uncertain"
            + (f"; {g['message']}" if g["message"] else "") + ").")
    print(body)
    if not args.no_append:
        append("A CT series through `medfake detect --summary`", body)


if __name__ == "__main__":
    main()
