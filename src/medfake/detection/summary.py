"""Per-series and per-study verdicts over `detect_paths` rows: the question a PACS or security team asks is whether
a *study* is authentic, not only each frame. `medfake detect --summary FILE [--group-by series|study|file]`.

Rows are grouped by their DICOM Series (or Study) Instance UID; an image without one (PNG, NIfTI, a DICOM whose
header could not be read) is its own file's group.

Why not simply the most serious of its images' verdicts: each image's thresholds let up to `fpr` (the detector's
calibrated false-alarm rate, 1 %) of real images be called fake and up to `uncertain_fpr` (1.5 %) be called anything
but real, so a real 300-slice CT series would almost always hold an alarm (1 - 0.99^300 = 95 %). A group's verdict
therefore asks whether it holds *more* alarms than a real group of its size would by chance. With n readable
images, k of them called synthetic or manipulated and j called anything but real (k plus the uncertain ones),
P(X ≥ k) for X ~ Binomial(n, fpr) is the chance of so many false fake calls in a real group (`p_chance`; where
k = 0, the same for j at `uncertain_fpr`). Each verdict is given when the count is at least as rare for a real group
as that verdict is for one real image, so a group of one image gets exactly its image's verdict:

- `manipulated` or `synthetic` (the more serious of its images' verdicts) if k ≥ 1 and P(X ≥ k) ≤ fpr: a real
  group is called fake at most `fpr` of the time if its images' errors are independent (slices of one scan are
  not: a noisy real scan can raise several at once);
- else `uncertain` if k ≥ 1 (an image called fake is always worth a look: `flagged` names it, `message` says how
  many a real group shows by chance), or if j ≥ 1 and P(Y ≥ j) ≤ uncertain_fpr for Y ~ Binomial(n, uncertain_fpr),
  or if some but not all of its files could not be read (an incomplete series cannot be called authentic),
- else `error` if none could be read, else `real` (with a `message` when it holds uncertain images that chance
  explains).
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


def detector_rates(name: str = "default", models_dir: str | Path | None = None) -> tuple[float, float]:
    """(fpr, uncertain_fpr): the per-image rates a detector's thresholds were calibrated to — real images called
    fake (its card's `target_fpr`) and called anything but real (`uncertain_factor` × that)."""
    from .detector import resolve_card

    card = json.loads(resolve_card(name, models_dir).read_text())
    return rates_of(card)


def rates_of(card: dict) -> tuple[float, float]:
    """`detector_rates` of a loaded card."""
    from .calibrate import UNCERTAIN_FACTOR

    t = card.get("thresholds") or {}
    fpr = float(t.get("target_fpr") or DEFAULT_FPR)
    return fpr, min(1.0, float(t.get("uncertain_factor") or UNCERTAIN_FACTOR) * fpr)


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


def group_verdict(counts: dict, files: int, unreadable_files: int, fpr: float = DEFAULT_FPR,
                  uncertain_fpr: float | None = None) -> tuple[str, str, float | None]:
    """(verdict, message, p_chance) of a group from its per-image verdict counts and its file counts (module doc).
    p_chance is None when every image is real."""
    from .calibrate import UNCERTAIN_FACTOR

    uncertain_fpr = min(1.0, UNCERTAIN_FACTOR * fpr) if uncertain_fpr is None else uncertain_fpr
    if not 0.0 < fpr <= uncertain_fpr < 1.0:
        raise ValueError(f"the per-image false-alarm rates must be 0 < fpr ≤ uncertain_fpr < 1, not {fpr}, "
                         f"{uncertain_fpr}")
    n = sum(counts.get(v, 0) for v in ("real", *ALARMS))
    if n == 0:
        return "error", f"none of its {files} file(s) could be read", None
    k = counts.get("manipulated", 0) + counts.get("synthetic", 0)
    j = k + counts.get("uncertain", 0)
    unread = [f"{unreadable_files} of {files} file(s) could not be read"] if unreadable_files else []
    tol = 1 + 1e-9
    if k:
        p = chance(k, n, fpr)
        if p <= fpr * tol:
            return ("manipulated" if counts.get("manipulated") else "synthetic"), "; ".join(unread), p
        why = (f"{k} of {n} image(s) called synthetic or manipulated, {n * fpr:.2g} expected by chance in a real "
               f"group of {n} (P {p:.2g})")
        return "uncertain", "; ".join([why, *unread]), p
    p = chance(j, n, uncertain_fpr) if j else None
    why = [f"{j} of {n} image(s) uncertain, {n * uncertain_fpr:.2g} expected by chance in a real group of {n} "
           f"(P {p:.2g})"] if j and n > 1 else []  # a one-image group: its image's own verdict, nothing to weigh
    if (j and p <= uncertain_fpr * tol) or unread:
        return "uncertain", "; ".join(why + unread), p
    return "real", "; ".join(why), p


def summarize(rows: Sequence[dict], by: str = "series", fpr: float = DEFAULT_FPR,
              uncertain_fpr: float | None = None) -> list[dict]:
    """One summary row per group (in order of first appearance) of `detect_paths` rows. `fpr`, `uncertain_fpr`: the
    detector's per-image rates (`detector_rates`; default 1 % and 1.5 × that), what a group's alarms are weighed
    against."""
    if by not in GROUP_BY:
        raise ValueError(f"group by one of {', '.join(GROUP_BY)}, not {by!r}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if not r.get("not_image"):  # a DICOM SEG or RT Dose beside the images: no image of any group
            groups.setdefault(_key(r, by), []).append(r)
    out = []
    for (gid, kind), rs in groups.items():
        counts = {v: sum(r["verdict"] == v for r in rs) for v in ("real", *ALARMS, "error")}
        files = list(dict.fromkeys(_file_of(r) for r in rs))
        unreadable = len({_file_of(r) for r in rs if r["verdict"] == "error"})
        verdict, message, p = group_verdict(counts, len(files), unreadable, fpr, uncertain_fpr)
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

    # p_chance spans many decades (a 300-slice series with 30 alarms: ~1e-15): 3 significant digits, not 6 places
    shown = [{**g, "p_chance": "" if g.get("p_chance") is None else f"{g['p_chance']:.3g}"} for g in groups]
    return write_csv(shown, path, SUMMARY_COLUMNS)


__all__ = ["DEFAULT_FPR", "GROUP_BY", "SUMMARY_COLUMNS", "chance", "detector_rates", "dicom_uids", "group_verdict",
           "rates_of", "summarize", "write_summary_csv"]
