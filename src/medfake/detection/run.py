"""Batch detection over files and folders → rows (one per image / frame) → CSV. Used by the CLI and the service.

CSV contract: the header starts exactly `path,modality,p_synthetic,p_manipulated,verdict`, followed by
EXTRA_COLUMNS. `path` is the path as found (`path#frame` for the frames of a multi-frame file). An unreadable
file gives one row with verdict `error` and the reason in `message`; the run continues. `study_uid` and `series_uid`
are a DICOM file's Study and Series Instance UIDs (also on its error row when its header could be read), which
`detection.summary` groups rows by. `provenance` is what a DICOM declares about its own making
(`io.writers.declared_provenance`: medfake's marks, another tool's DERIVED description, a secondary capture; empty
for an original): shown beside the verdict, never used by it (an attacker strips it). Each row dict also carries
`file` (the file as found; not a CSV column).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..io.errors import ImageReadError, NotAnImageError
from ..io.image import Image
from ..io.readers import iter_image_files, read_images
from ..io.writers import declared_provenance
from .base import CSV_HEADER, Detector
from .retrieval import reference_files
from .summary import dicom_uids

EXTRA_COLUMNS = ("p_modality", "anomaly", "p_synthetic_classifier", "knn_synthetic", "copy_move", "heatmap", "mask",
                 "message", "study_uid", "series_uid", "provenance", "mask_seg")
COLUMNS = CSV_HEADER + EXTRA_COLUMNS


def add_references(detector, reference_dir: str | Path):
    """A detector whose retrieval bank also holds the images under reference_dir/{real,synthetic,manipulated}."""
    pairs = reference_files(reference_dir)
    images, labels = [], []
    for f, label in pairs:
        for im in read_images(f):  # an unreadable reference is an error: the user chose these files
            images.append(im)
            labels.append(label)
    return detector.with_references(images, labels)


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[-120:]


def _save_seg(pred, image: Image, path: Path, detector) -> str:
    """The predicted manipulated region as a DICOM SEG over the input DICOM (`io.writers.dicom_seg`), for a
    single-frame DICOM called manipulated: a PACS viewer then overlays where the detector thinks the image was
    changed. "" where there is none to write or highdicom cannot describe the image."""
    from ..io.writers import Provenance, dicom_seg

    if (pred.verdict != "manipulated" or pred.mask is None or not np.asarray(pred.mask).any()
            or image.meta.dicom is None or image.meta.frame is not None):
        return ""
    name, version = getattr(detector, "name", "detector"), str(getattr(detector, "version", ""))
    prov = Provenance("detected", name, version)
    try:
        seg = dicom_seg(np.asarray(pred.mask, dtype=bool), image.meta.dicom, prov,
                        segment_label="Suspected manipulation", content_label="SUSPECTED",
                        description=f"medfake {name} {version}: suspected manipulation")
    except ValueError:
        return ""
    seg.save_as(path)
    return str(path)


def _save_maps(pred, image: Image, out_dir: Path, index: int, label: str) -> tuple[str, str]:
    from PIL import Image as PILImage
    import matplotlib

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{index:05d}_{_safe_name(Path(label).name)}"
    rgb = matplotlib.colormaps["jet"](pred.heatmap)[..., :3]
    base = np.repeat(image.array[..., None], 3, axis=2)
    over = np.round((0.55 * base + 0.45 * rgb) * 255).astype(np.uint8)
    hp = out_dir / f"{stem}_heatmap.png"
    PILImage.fromarray(over).save(hp)
    mp = out_dir / f"{stem}_mask.png"
    PILImage.fromarray(pred.mask.astype(np.uint8) * 255).save(mp)
    return str(hp), str(mp)


def _header_uids(path: str | Path) -> dict:
    """The UIDs of a DICOM file whose pixels could not be read, from its header alone (nothing for another file or
    an unreadable header): the error row then still counts in its series."""
    try:
        with open(path, "rb") as fh:
            if fh.read(132)[128:] != b"DICM":
                return {}
        import pydicom

        return dicom_uids(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID",
                                                                                   "SeriesInstanceUID"]))
    except Exception:  # noqa: BLE001 - best effort: the row already says why the file failed
        return {}


def _row(label: str, pred=None, message: str = "", image: Image | None = None, file: str | None = None) -> dict:
    ids = dicom_uids(image.meta.dicom) if image is not None and image.meta.dicom is not None else {}
    if image is not None:
        ids["provenance"] = declared_provenance(image.meta.dicom)
    if pred is None:
        return {"path": label, "modality": "", "p_synthetic": "", "p_manipulated": "", "verdict": "error",
                "message": message, "file": file or label, **ids}
    s = pred.scores
    return {"path": label, "modality": pred.modality, "p_synthetic": pred.p_synthetic,
            "p_manipulated": pred.p_manipulated, "verdict": pred.verdict, "p_modality": s.get("p_modality"),
            "anomaly": s.get("anomaly"), "p_synthetic_classifier": s.get("p_synthetic_classifier"),
            "knn_synthetic": s.get("knn_synthetic"), "copy_move": s.get("copy_move"),
            "message": message or pred.note, "file": file or label, **ids}


def detect_images(detector: Detector, items: Sequence[tuple[str, Image]], *, heatmaps: str | Path | None = None,
                  batch_size: int = 64, start_index: int = 0, files: Sequence[str] | None = None) -> list[dict]:
    """(label, Image) pairs → rows, in order (`files`: each item's file, for the rows' `file`; default the label)."""
    rows = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        preds = detector.predict([im for _, im in chunk], explain=heatmaps is not None)
        for j, ((label, im), p) in enumerate(zip(chunk, preds)):
            row = _row(label, p, image=im, file=files[i + j] if files is not None else None)
            if heatmaps is not None:
                row["heatmap"], row["mask"] = _save_maps(p, im, Path(heatmaps), start_index + i + j, label)
                row["mask_seg"] = _save_seg(p, im, Path(row["mask"]).with_suffix(".dcm"), detector)
            rows.append(row)
    return rows


def detect_paths(paths: Iterable[str | Path], *, detector: Detector | str = "default", models_dir=None,
                 reference: str | Path | None = None, batch_size: int = 64, heatmaps: str | Path | None = None,
                 progress: bool = False, copy_move: bool | None = None, device: str | None = None,
                 nifti_slices: str = "middle", left_out: list | None = None,
                 mask_views: int | None = None) -> list[dict]:
    """Files and folders (recursive) → one row per image/frame (see module doc). The model loads once; images are
    decoded and scored in batches of `batch_size`. `copy_move`: the copy-move cue on (True), off (False) or, by
    default, on when the card has it calibrated (`ShippedDetector.with_copy_move_if`). `device` (for a detector
    given by name): auto (a CUDA GPU when there is one; the default, from settings), cpu, cuda, cuda:N.
    `nifti_slices`: a NIfTI volume's middle axial slice ("middle") or every axial slice ("all", rows `path#k`).
    `mask_views` (1, 2 or 8; default from settings, else the localizer card's): test-time views of the `heatmaps`
    masks, for a detector given by name.
    Masks and heat maps that medfake wrote into a searched folder are not scored; `left_out` (a list) receives them.
    With `heatmaps`, the folder's `index.json` lists what was written there (so a later run leaves it out)."""
    from ..settings import get_settings, torch_device
    from ._progress import progress_bar
    from .detector import load_detector, use_copy_move

    if batch_size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
    if nifti_slices not in ("middle", "all"):
        raise ValueError(f"NIfTI slices must be 'middle' or 'all', not {nifti_slices!r}")
    if isinstance(detector, str):
        settings = get_settings()
        dev = torch_device(device if device is not None else settings.device)
        det = load_detector(detector, models_dir, device=str(dev),
                            mask_views=mask_views if mask_views is not None else settings.mask_views)
    else:
        det = detector
    det = use_copy_move(det, copy_move)
    if reference is not None:
        det = add_references(det, reference)
    files = list(iter_image_files(paths, left_out))
    rows: list[dict | None] = []
    pending: list[tuple[int, str, Image, str]] = []

    def flush():
        if not pending:
            return
        out = detect_images(det, [(lab, im) for _, lab, im, _ in pending], heatmaps=heatmaps, batch_size=batch_size,
                            start_index=pending[0][0], files=[f for _, _, _, f in pending])
        for (k, _, _, _), r in zip(pending, out):
            rows[k] = r
        pending.clear()

    with progress_bar(len(files), "detect", enabled=progress) as advance:
        for f in files:
            shown = str(f)
            try:
                images = read_images(f, slice_index=nifti_slices)
            except ImageReadError as e:
                row = _row(shown, message=e.reason, file=shown) | _header_uids(f)
                if isinstance(e, NotAnImageError):
                    row["not_image"] = True  # an error row, but no member of its series' verdict (summary)
                rows.append(row)
                advance()
                continue
            for n, im in enumerate(images):
                frame = im.meta.frame if im.meta.frame is not None else n
                label = f"{shown}#{frame}" if len(images) > 1 else shown
                rows.append(None)
                pending.append((len(rows) - 1, label, im, shown))
                if len(pending) >= batch_size:
                    flush()
            advance()
        flush()
    rows = [r for r in rows if r is not None]
    if heatmaps is not None:
        _index_maps(Path(heatmaps), rows)
    return rows


def _index_maps(out_dir: Path, rows: list[dict]) -> None:
    """`index.json` in the heat-map folder: the files this run (and earlier runs into it) wrote, kind
    "detector-maps", so that `io.readers.iter_image_files` never scores them as images."""
    import json

    path = out_dir / "index.json"
    files: dict[str, set] = {"heatmap": set(), "mask": set(), "mask_seg": set()}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and old.get("kind") == "detector-maps" and isinstance(old.get("files"), dict):
            for k in files:
                files[k].update(n for n in old["files"].get(k) or [] if isinstance(n, str))
    except (OSError, ValueError):
        pass
    for r in rows:
        for k in files:
            if r.get(k):
                files[k].add(Path(r[k]).name)
    if any(files.values()):
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "detector-maps", "written_by": "medfake detect --heatmaps",
                                    "files": {k: sorted(v) for k, v in files.items()}}, indent=1) + "\n")


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}" if np.isfinite(v) else ""
    return str(v)


def write_csv(rows: Sequence[dict], path: str | Path, columns: Sequence[str] = COLUMNS) -> Path:
    """Rows → CSV with the fixed header (COLUMNS; `detection.summary` passes its own)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([_fmt(r.get(c)) for c in columns])
    return path
