"""Per-series and per-study verdicts over `detect_paths` rows: the question a PACS or security team asks is whether
a *study* is authentic, not only each frame. `medfake detect --summary FILE [--group-by series|study|file]`.

Rows are grouped by their DICOM Series (or Study) Instance UID; an image without one (PNG, NIfTI, a DICOM whose
header could not be read) is its own file's group. A group's verdict is the most serious of its images':

- `manipulated` if any image is manipulated, else `synthetic` if any is synthetic (a study with one fake series is
  not authentic; `flagged` names the images),
- else `uncertain` if any image is uncertain, or if some but not all of its files could not be read (an
  incomplete series cannot be called authentic; `message` says how many),
- else `error` if none could be read, else `real`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

GROUP_BY = ("series", "study", "file")
SUMMARY_COLUMNS = ("group", "group_by", "study_uid", "series_uid", "files", "images", "real", "synthetic",
                   "manipulated", "uncertain", "error", "max_p_synthetic", "max_p_manipulated", "verdict", "flagged",
                   "message")
ALARMS = ("manipulated", "synthetic", "uncertain")
MAX_FLAGGED = 10  # image paths listed per group in `flagged`


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


def group_verdict(counts: dict, files: int, unreadable_files: int) -> tuple[str, str]:
    """(verdict, message) of a group from its per-image verdict counts and its file counts."""
    for v in ("manipulated", "synthetic"):
        if counts.get(v):
            return v, ""
    readable = sum(counts.get(v, 0) for v in ("real", *ALARMS))
    if readable == 0:
        return "error", f"none of its {files} file(s) could be read"
    message = f"{unreadable_files} of {files} file(s) could not be read" if unreadable_files else ""
    if counts.get("uncertain") or unreadable_files:
        return "uncertain", message
    return "real", ""


def summarize(rows: Sequence[dict], by: str = "series") -> list[dict]:
    """One summary row per group (in order of first appearance) of `detect_paths` rows."""
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
        verdict, message = group_verdict(counts, len(files), unreadable)
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
                    "verdict": verdict, "flagged": shown, "message": message})
    return out


def write_summary_csv(groups: Sequence[dict], path: str | Path) -> Path:
    from .run import write_csv

    return write_csv(groups, path, SUMMARY_COLUMNS)


__all__ = ["GROUP_BY", "SUMMARY_COLUMNS", "dicom_uids", "group_verdict", "summarize", "write_summary_csv"]
