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


SYNTAXES: list[tuple[str, str]] = []  # (source, written) transfer syntax of each one-frame output


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
    out_ds = pydicom.dcmread(paths["image"])
    ts = pydicom.dcmread(path, stop_before_pixels=True, force=True).file_meta.get("TransferSyntaxUID")
    SYNTAXES.append((ts.name if ts else "none declared", out_ds.file_meta.TransferSyntaxUID.name))
    written = out_ds.pixel_array
    if written.shape[:2] != res.mask.shape or not np.array_equal(written[~res.mask], res.stored[~res.mask]):
        return "bad", "unmasked pixels differ from the source's stored values"
    if "mask_seg" not in paths:
        return "no-seg", json.loads(paths["sidecar"].read_text()).get("mask_seg_skipped", "")[:200]
    seg = hd.seg.segread(paths["mask_seg"]).pixel_array.astype(bool).reshape(res.mask.shape)
    return ("seg", "") if np.array_equal(seg, res.mask) else ("bad", "SEG differs from the mask")


def check_whole(path: str, out: Path) -> tuple[str, str] | None:
    """For a multi-frame file (None for any other): its last frame manipulated and the whole object written back
    (`save_result(..., all_frames=True)`, `medfake manipulate --frame N --all-frames`): every other frame as the
    source shows it, the edited frame's unmasked pixels its stored values, and the SEG (where one is written) over
    that frame pixel-exact. Outcomes as `check`, plus "refused" (`io.writers.whole_object_problem`)."""
    import highdicom as hd
    import pydicom

    from medfake.io import read_image
    from medfake.io.readers import dicom_colour
    from medfake.io.writers import whole_object_problem
    from medfake.manipulation import make_mask, manipulate, save_result

    try:
        first = read_image(path, frames=0)
    except Exception:  # noqa: BLE001 - counted by `check`
        return None
    n = int(first.meta.extra.get("number_of_frames", 1) or 1)
    if n < 2 or min(first.shape) < 16 or "mosaic" in first.meta.extra:
        return None
    try:
        img = read_image(path, frames=n - 1)
        if whole_object_problem(img):  # refused before any edit, as `medfake manipulate --all-frames` refuses it
            return "refused", whole_object_problem(img)
        h, w = img.shape
        res = manipulate(img, make_mask(img.shape, rect=(w // 4, h // 4, w // 2, h // 2)), "retouch", seed=0)
        paths = save_result(res, out, Path(path).stem + "_whole", all_frames=True)
    except Exception as e:  # noqa: BLE001 - what the survey is for
        return "error", f"{type(e).__name__}: {e}"[:200]
    src, ds = pydicom.dcmread(path), pydicom.dcmread(paths["image"])
    shown = dicom_colour(src, src.pixel_array)
    shown = src.pixel_array if shown is None else shown
    written = ds.pixel_array
    if written.shape != shown.shape or not all(np.array_equal(written[i], shown[i]) for i in range(n - 1)):
        return "bad", "the frames not edited differ from the source's"
    if not np.array_equal(written[n - 1][~res.mask], res.stored[~res.mask]):
        return "bad", "the edited frame's unmasked pixels differ from the source's stored values"
    if "mask_seg" not in paths:
        return "no-seg", json.loads(paths["sidecar"].read_text()).get("mask_seg_skipped", "")[:200]
    seg = hd.seg.segread(paths["mask_seg"]).pixel_array.astype(bool).reshape(res.mask.shape)
    return ("seg", "") if np.array_equal(seg, res.mask) else ("bad", "SEG differs from the mask")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on non-conformant test files: the outcome is what counts
    rows, whole = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for f in local_files():
            outcome, detail = check(f, Path(tmp))
            rows.append((Path(f).name, outcome, detail))
            got = check_whole(f, Path(tmp)) if outcome not in ("not-image", "error") else None
            if got is not None:
                whole.append((Path(f).name, *got))
    n = Counter(o for _, o, _ in rows)
    images = len(rows) - n["not-image"]
    body = [f"{len(rows)} local pydicom/pydicom-data test files; {images} read as images of ≥ 16 px, their first "
            f"frame manipulated (`retouch`): **{images - n['error'] - n['bad']} written** with the unmasked pixels of the "
            f"source, **{n['seg']} with a DICOM SEG** read back pixel-exact; {n['no-seg']} without a SEG, "
            f"{n['error']} not written, {n['bad']} written wrongly.", ""]
    if any(o in ("no-seg", "error", "bad") for _, o, _ in rows):
        body += ["| file | outcome | why |", "|---|---|---|"]
        body += [f"| {name} | {o} | {d.replace('|', '/')} |" for name, o, d in rows if o in ("no-seg", "error", "bad")]
    same = Counter(src for src, got in SYNTAXES if src == got)
    body += ["", "Transfer syntax of the one-frame outputs (`io.writers._keep_transfer_syntax`: the source's where that "
                 "loses nothing, else Explicit VR Little Endian):", "",
             "| source transfer syntax | files written | in the same syntax |", "|---|---|---|"]
    body += [f"| {src} | {k} | {same[src]} |" for src, k in sorted(Counter(s for s, _ in SYNTAXES).items(),
                                                                     key=lambda t: -t[1])]
    m = Counter(o for _, o, _ in whole)
    written = len(whole) - m["error"] - m["bad"] - m["refused"]
    body += ["", f"Written back whole (`--all-frames`), the last frame edited: {len(whole)} multi-frame files, "
                 f"**{written} written** with every other frame as in the source, "
                 f"**{m['seg']} with a DICOM SEG** over the edited frame read back pixel-exact; {m['no-seg']} without "
                 f"a SEG, {m['refused']} refused with the reason (16/32-bit colour frames, which medfake writes "
                 f"only as one 8-bit grey frame), {m['error']} not written otherwise, {m['bad']} written wrongly."]
    if whole:
        body += ["", "| multi-frame file | outcome | why |", "|---|---|---|"]
        body += [f"| {name} | {o} | {d.replace('|', '/')} |" for name, o, d in whole]
    text = "\n".join(body)
    if args.no_append:
        print(text)
    else:
        append("DICOM in, DICOM out over pydicom's test files (benchmarks/dicom_roundtrip.py)", text)


if __name__ == "__main__":
    main()
