"""Per-series and per-study verdicts over `detect_paths` rows: the question a PACS or security team asks is whether
a *study* is authentic, not only each frame. `medfake detect --summary FILE [--group-by series|study|file]`.

Rows are grouped by their DICOM Series (or Study) Instance UID; an image without one (PNG, NIfTI, a DICOM whose
header could not be read) is its own file's group.

Why not simply the most serious of its images' verdicts: each image's thresholds let up to `fpr` (the detector's
calibrated false-alarm rate, 1 %) of real images through, so a real 300-slice CT series would almost always hold one
false alarm (1 - 0.99^300 = 95 %). A group's verdict therefore asks whether it holds *more* images called fake than
a real group of its size would by chance. With n readable images of which k are called synthetic or manipulated,
`p_chance` = P(X ≥ k) for X ~ Binomial(n, fpr), the chance of so many false alarms in a real group:

- `manipulated` or `synthetic` (the more serious of its images' verdicts) if k ≥ 1 and p_chance ≤ fpr — a group
  of one image is exactly its image's verdict, and a real group is called fake at most `fpr` of the time if its
  images' errors are independent (slices of one scan are not: a noisy real scan can raise several at once);
- else `uncertain` if k ≥ 1 (the flagged images are named, with how many a real group would show by chance), or if
  any image is uncertain, or if some but not all of its files could not be read (an incomplete series cannot be
  called authentic; `message` says how many),
- else `error` if none could be read, else `real`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

GROUP_BY = ("series", "study", "file")
SUMMARY_COLUMNS = ("group", "group_by", "study_uid", "series_uid", "files", "images", "real", "synthetic",
                   "manipulated", "uncertain", "error", "max_p_synthetic", "max_p_manipulated", "p_chance", "verdict",
                   "flagged", "message")
ALARMS = ("manipulated", "synthetic", "uncertain")
MAX_FLAGGED = 10  # image paths listed per group in `flagged`
DEFAULT_FPR = 0.01  # per-image false-alarm rate when a detector card does not say (the project's calibration target)


def detector_fpr(name: str = "default", models_dir: str | Path | None = None) -> float:
    """The per-image false-alarm rate a detector's thresholds were calibrated to (its card's `target_fpr`)."""
    from .detector import resolve_card

    card = json.loads(resolve_card(name, models_dir).read_text())
    return float((card.get("thresholds") or {}).get("target_fpr") or DEFAULT_FPR)


def chance(k: int, n: int, fpr: float) -> float:
    """P(X ≥ k), X ~ Binomial(n, fpr): the chance that a real group of n images holds k or more false alarms."""
    from scipy.stats import binom

    return 1.0 if k <= 0 else float(binom.sf(k - 1, n, fpr))


def dicom_uids(ds) -> dict:
    """{study_uid, series_uid} of a pydicom Dataset ("" where absent): what rows are grouped by."""
    return {"study_uid": str(getattr(ds, "StudyInstanceUID", "") or ""),
            "series_uid": str(getattr(ds, "SeriesInstanceUID", "") or "")}


def _file_of(row: dict) -> str:
    return str(row.get("file") or row["path"])


def _key(row: dict, by: str) -> tuple[str, str]:
    """(group id, what it is) of one row."""
    uid = row.get("series_uid") if by == "series" else row.get("study_uid") if by == "study" else None
    return (str(uid), by) if uid else (_file_of(row), "file")


def _max(values: Iterable) -> float | None:
    vals = [float(v) for v in values if v not in (None, "")]
    return max(vals) if vals else None


def group_verdict(counts: dict, files: int, unreadable_files: int,
                  fpr: float = DEFAULT_FPR) -> tuple[str, str, float | None]:
    """(verdict, message, p_chance) of a group from its per-image verdict counts and its file counts (module doc).
    p_chance is None when no image is called synthetic or manipulated."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"the per-image false-alarm rate must be in (0, 1), not {fpr}")
    n = sum(counts.get(v, 0) for v in ("real", *ALARMS))
    if n == 0:
        return "error", f"none of its {files} file(s) could be read", None
    k = counts.get("manipulated", 0) + counts.get("synthetic", 0)
    p = chance(k, n, fpr) if k else None
    notes = [f"{unreadable_files} of {files} file(s) could not be read"] if unreadable_files else []
    if k and p <= fpr * (1 + 1e-9):
        return ("manipulated" if counts.get("manipulated") else "synthetic"), "; ".join(notes), p
    if k:
        notes.insert(0, f"{k} of {n} image(s) called synthetic or manipulated, {n * fpr:.2g} expected by chance in a "
                        f"real group of {n} (P {p:.2g})")
    if k or counts.get("uncertain") or unreadable_files:
        return "uncertain", "; ".join(notes), p
    return "real", "", None


def summarize(rows: Sequence[dict], by: str = "series", fpr: float = DEFAULT_FPR) -> list[dict]:
    """One summary row per group (in order of first appearance) of `detect_paths` rows. `fpr`: the detector's
    per-image false-alarm rate (`detector_fpr`), what a group's count of alarms is weighed against."""
    if by not in GROUP_BY:
        raise ValueError(f"group by one of {', '.join(GROUP_BY)}, not {by!r}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r, by), []).append(r)
    out = []
    for (gid, kind), rs in groups.items():
        counts = {v: sum(r["verdict"] == v for r in rs) for v in ("real", *ALARMS, "error")}
        files = list(dict.fromkeys(_file_of(r) for r in rs))
        unreadable = len({_file_of(r) for r in rs if r["verdict"] == "error"})
        verdict, message, p = group_verdict(counts, len(files), unreadable, fpr)
        flagged = [r["path"] for r in rs if r["verdict"] in ALARMS]
        shown = "; ".join(flagged[:MAX_FLAGGED]) + (f"; … (+{len(flagged) - MAX_FLAGGED} more)"
                                                    if len(flagged) > MAX_FLAGGED else "")
        studies = {r.get("study_uid") for r in rs if r.get("study_uid")}
        series = {r.get("series_uid") for r in rs if r.get("series_uid")}
        out.append({"group": gid, "group_by": kind,
                    "study_uid": next(iter(studies)) if len(studies) == 1 else "",
                    "series_uid": next(iter(series)) if len(series) == 1 else "",
                    "files": len(files), "images": len(rs) - counts["error"], **counts,
                    "max_p_synthetic": _max(r.get("p_synthetic") for r in rs),
                    "max_p_manipulated": _max(r.get("p_manipulated") for r in rs),
                    "p_chance": p, "verdict": verdict, "flagged": shown, "message": message})
    return out


def write_summary_csv(groups: Sequence[dict], path: str | Path) -> Path:
    from .run import write_csv

    return write_csv(groups, path, SUMMARY_COLUMNS)


__all__ = ["DEFAULT_FPR", "GROUP_BY", "SUMMARY_COLUMNS", "chance", "detector_fpr", "dicom_uids", "group_verdict",
           "summarize", "write_summary_csv"]
