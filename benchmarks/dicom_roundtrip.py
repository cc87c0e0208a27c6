"""DICOM in, DICOM out over every pydicom test file: each local file of pydicom and pydicom-data that reads as an
image of at least 16 px has its first frame manipulated with `retouch` (a quarter of the image, seeded), written as
`medfake manipulate` writes it, and checked: the written file's unmasked pixels equal the stored values of the
source as read, and the mask's DICOM SEG (where one is written) reads back pixel-exact with highdicom.

    python benchmarks/dicom_roundtrip.py [--no-append]

No download: only files already on disk (pydicom's own test and charset files, the pydicom-data package's store).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import site
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402


def local_files() -> list[str]:
    import pydicom.data

    roots = [os.path.dirname(pydicom.data.__file__)] + [os.path.join(p, "data_store") for p in site.getsitepackages()]
    return sorted({f for r in roots for f in glob.glob(os.path.join(r, "**", "*.dcm"), recursive=True)})


def check(path: str, out: Path) -> tuple[str, str]:
    """(outcome, detail): outcome "seg" (written, SEG pixel-exact), "no-seg" (written, SEG skipped: why),
    "bad" (written wrongly), "error" (not written) or "not-image"."""
    import highdicom as hd
    import pydicom

    from medfake.io import read_image
    from medfake.manipulation import make_mask, manipulate, save_result

    try:
        img = read_image(path, frames=0)
    except Exception as e:  # noqa: BLE001 - a file that is not an image is counted, not a failure here
        return "not-image", type(e).__name__
    h, w = img.shape
    if min(h, w) < 16:
        return "not-image", f"{w}×{h} px"
    try:
        res = manipulate(img, make_mask(img.shape, rect=(w // 4, h // 4, w // 2, h // 2)), "retouch", seed=0)
        paths = save_result(res, out, Path(path).stem)
    except Exception as e:  # noqa: BLE001 - what the survey is for
        return "error", f"{type(e).__name__}: {e}"[:200]
    written = pydicom.dcmread(paths["image"]).pixel_array
    if written.shape != res.mask.shape or not np.array_equal(written[~res.mask], res.stored[~res.mask]):
        return "bad", "unmasked pixels differ from the source's stored values"
    if "mask_seg" not in paths:
        return "no-seg", json.loads(paths["sidecar"].read_text()).get("mask_seg_skipped", "")[:200]
    seg = hd.seg.segread(paths["mask_seg"]).pixel_array.astype(bool).reshape(res.mask.shape)
    return ("seg", "") if np.array_equal(seg, res.mask) else ("bad", "SEG differs from the mask")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on non-conformant test files: the outcome is what counts
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in local_files():
            outcome, detail = check(f, Path(tmp))
            rows.append((Path(f).name, outcome, detail))
    n = Counter(o for _, o, _ in rows)
    images = len(rows) - n["not-image"]
    body = [f"{len(rows)} local pydicom/pydicom-data test files; {images} read as images of ≥ 16 px, their first "
            f"frame manipulated (`retouch`): **{images - n['error'] - n['bad']} written** with the unmasked pixels of the "
            f"source, **{n['seg']} with a DICOM SEG** read back pixel-exact; {n['no-seg']} without a SEG, "
            f"{n['error']} not written, {n['bad']} written wrongly.", ""]
    if any(o in ("no-seg", "error", "bad") for _, o, _ in rows):
        body += ["| file | outcome | why |", "|---|---|---|"]
        body += [f"| {name} | {o} | {d.replace('|', '/')} |" for name, o, d in rows if o in ("no-seg", "error", "bad")]
    text = "\n".join(body)
    if args.no_append:
        print(text)
    else:
        append("DICOM in, DICOM out over pydicom's test files (benchmarks/dicom_roundtrip.py)", text)


if __name__ == "__main__":
    main()
