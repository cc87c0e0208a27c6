"""Merge the rows of some generators/methods from another build into a built data set, under new names.

This is how one benchmark holds several versions of a model side by side (e.g. the ε-prediction DDPM's fakes as
`ddpm` and the v-prediction DDPM's as `ddpm-v`): build the new model's images in a separate folder with the same
real set (`medfake dataset build --models-dir NEW ...`), then merge them:

    medfake dataset merge SRC --into DST --rename ddpm=ddpm-v,ddim=ddim-v [--replace]

Rules:

* SRC and DST must be builds (manifest.csv + build.json) of the same real set (`build.json` "real"), so the
  splits are the same; the merged manifest must pass the leakage rule, and nothing is written when it does not.
* A merged name is never one the builder makes itself (ddpm, ddim, dcgan, vae, repaint, ...): DST's own build
  owns those, and a later `dataset build` on DST (resume or extend) keeps the merged rows, which live in
  DST/merged.csv and are appended to the manifest the builder writes.
* A name DST already holds from an earlier merge is refused unless `replace`: then the old rows' files are moved to
  DST/replaced/<UTC time>/ (same relative paths, with their manifest rows), never deleted.
* Images and masks are copied to DST/images/<kind>/<new name>/... and DST/masks/manipulated/<new name>/...;
  `model_version`, seeds and sources are kept, so each row still names the model that made it. DST/merges.json
  records every merge (source folder, renames, counts, replaced rows).
* The shortcut audit runs on the merged set (DST's files and SRC's new ones) before anything is written: new
  files whose format differs from DST's reals are refused, nothing merged.
* All or nothing: when a step fails half-way (a full disk, a source file that cannot be read), the files moved
  or copied so far are put back, the folders made for them removed and the manifests restored, and the error
  says so.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

from ..data.manifest import write_manifest
from .build import (MANIFEST_COLUMNS, MANIPULATIONS, MERGED_FILE, RECONSTRUCTION, SYNTHETIC, BuildError, merged_rows,
                    read_rows)
from .leakage import check_leakage

BUILDER_NAMES = frozenset(SYNTHETIC + RECONSTRUCTION + MANIPULATIONS + ("real",))
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _build_config(root: Path, what: str) -> dict:
    if not (root / "manifest.csv").is_file() or not (root / "build.json").is_file():
        raise BuildError(f"{what} {root} is not a built data set (manifest.csv and build.json expected)")
    try:
        cfg = json.loads((root / "build.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BuildError(f"{what} {root}/build.json cannot be read: {e}") from e
    if not isinstance(cfg, dict):
        raise BuildError(f"{what} {root}/build.json is not a build record (a JSON object expected)")
    return cfg


def _manifest_rows(root: Path, what: str) -> list[dict]:
    """read_rows with the columns a merge needs checked: one clear error for a hand-edited or foreign manifest."""
    try:
        rows = read_rows(root / "manifest.csv")
    except (OSError, UnicodeDecodeError) as e:
        raise BuildError(f"{what} {root}/manifest.csv cannot be read: {e}") from e
    lacking = [c for c in ("path", "kind", "generator", "split") if rows and c not in rows[0]]
    if lacking:
        raise BuildError(f"{what} {root}/manifest.csv lacks the column(s) {', '.join(lacking)}")
    return rows


def parse_renames(text: str) -> dict[str, str]:
    """'ddpm=ddpm-v,ddim=ddim-v' → {'ddpm': 'ddpm-v', 'ddim': 'ddim-v'}."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        old, sep, new = (s.strip() for s in part.partition("="))
        if not sep or not old or not new:
            raise BuildError(f"--rename expects OLD=NEW pairs, got {part.strip()!r}")
        if old in out:
            raise BuildError(f"--rename names {old} twice")
        out[old] = new
    if not out:
        raise BuildError("--rename names no generator")
    return out


def _renamed(rel: str, old: str, new: str, what: str) -> str:
    """images/<kind>/<old>/<modality>/<file> or masks/manipulated/<old>/<modality>/<file> with <old> → <new>."""
    parts = list(Path(rel).parts)
    if len(parts) != 5 or parts[0] not in ("images", "masks") or parts[2] != old:
        raise BuildError(f"{what} {rel!r} is not laid out as a built data set's "
                         f"{parts[0] if parts else 'images'}/<kind>/{old}/<modality>/<file>")
    parts[2] = new
    return Path(*parts).as_posix()


def _write_atomic(path: Path, write) -> None:
    """write(tmp) then rename over `path`: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _makedirs(path: Path, undo: list) -> None:
    """mkdir -p that records each folder it creates, so undoing removes them again (deepest first)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir()
        undo.append(d.rmdir)


def _apply(dst: Path, gone: list[dict], replaced_dir: Path | None, copies: list[tuple[Path, Path]],
           merged: list[dict], rows: list[dict], entry: dict, audit_result: dict | None) -> None:
    """Move the replaced rows' files aside, copy the new ones in, then write merged.csv, manifest.csv,
    merges.json and audit.json. When any step fails (a full disk, an unreadable source file), every step done so
    far is undone in reverse order, folders it created are removed, and a BuildError says what failed: DST is
    left as it was."""
    undo: list = []
    try:
        if gone:
            _makedirs(replaced_dir, undo)
            undo.append(lambda: (replaced_dir / "manifest.csv").unlink(missing_ok=True))
            write_manifest(replaced_dir / "manifest.csv", gone, MANIFEST_COLUMNS)
        for r in gone:
            for col in ("path", "mask"):
                if r.get(col) and (dst / r[col]).exists():
                    a, b = dst / r[col], replaced_dir / r[col]
                    _makedirs(b.parent, undo)
                    shutil.move(str(a), str(b))
                    undo.append(lambda a=a, b=b: shutil.move(str(b), str(a)))
        for a, b in copies:
            _makedirs(b.parent, undo)
            if b.exists():  # a stray file at the new path (e.g. an earlier merge killed mid-copy): keep it aside
                keep = b.with_name(f".{b.name}.before-merge")
                b.replace(keep)
                undo.append(lambda b=b, keep=keep: keep.replace(b))
            undo.append(lambda b=b: b.unlink(missing_ok=True))
            shutil.copy2(a, b)
        log = dst / "merges.json"
        history = json.loads(log.read_text()) if log.exists() else []
        saved = {f: (dst / f).read_bytes() if (dst / f).exists() else None
                 for f in (MERGED_FILE, "manifest.csv", "merges.json", "audit.json")}
        undo.append(lambda: [(dst / f).write_bytes(b) if b is not None else (dst / f).unlink(missing_ok=True)
                             for f, b in saved.items()])
        _write_atomic(dst / MERGED_FILE, lambda p: write_manifest(p, merged, MANIFEST_COLUMNS))
        _write_atomic(dst / "manifest.csv", lambda p: write_manifest(p, rows, MANIFEST_COLUMNS))
        _write_atomic(log, lambda p: p.write_text(json.dumps(history + [entry], indent=2) + "\n"))
        if audit_result is not None:
            _write_atomic(dst / "audit.json", lambda p: p.write_text(json.dumps(audit_result, indent=2) + "\n"))
    except BaseException as e:
        failed = []
        for step in reversed(undo):
            try:
                step()
            except OSError as u:  # keep undoing the rest; report what could not be put back
                failed.append(str(u))
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        note = "; could not undo: " + "; ".join(failed) if failed else "; nothing in the target was changed"
        raise BuildError(f"merge into {dst} failed ({type(e).__name__}: {e}){note}") from e
    for a, b in copies:  # the stray files set aside above are dropped only once the merge has succeeded
        keep = b.with_name(f".{b.name}.before-merge")
        keep.unlink(missing_ok=True)


def merge_build(src: str | Path, dst: str | Path, renames: dict[str, str], *, replace: bool = False,
                audit: bool = True) -> dict:
    """Merge SRC's rows of each generator/method in `renames` into DST under its new name; returns a summary.
    Raises BuildError (or LeakageError) before anything is written when the merge breaks a rule above."""
    src, dst = Path(src), Path(dst)
    cfg_s, cfg_d = _build_config(src, "source"), _build_config(dst, "target")
    if src.resolve() == dst.resolve():
        raise BuildError("source and target are the same folder")
    if cfg_s.get("real") != cfg_d.get("real"):
        raise BuildError(f"{src} was built from {cfg_s.get('real')} but {dst} from {cfg_d.get('real')}; "
                         "merged rows must come from the same real set (same splits)")
    src_rows = _manifest_rows(src, "source")
    have = sorted({r["generator"] for r in src_rows if r.get("kind") != "real"})
    missing = [g for g in renames if g not in have]
    if missing:
        raise BuildError(f"{src} has no rows of {', '.join(missing)}; it has {', '.join(have) or 'none'}")
    new_names = list(renames.values())
    bad = [n for n in new_names if not _NAME.match(n)]
    if bad:
        raise BuildError(f"bad new name(s) {', '.join(map(repr, bad))}: lower-case letters, digits, '.', '_', '-'")
    owned = [n for n in new_names if n in BUILDER_NAMES]
    if owned:
        raise BuildError(f"{', '.join(owned)}: the builder's own name(s); merge under another name (e.g. "
                         f"{owned[0]}-v2)")
    if len(set(new_names)) != len(new_names):
        raise BuildError("two generators renamed to the same name")

    old_merged = merged_rows(dst)
    merged_names = {r["generator"] for r in old_merged}
    clash = sorted(set(new_names) & merged_names)
    if clash and not replace:
        raise BuildError(f"{dst} already holds merged rows of {', '.join(clash)}; pass --replace to move them to "
                         f"{dst}/replaced/ and merge the new ones")
    dst_rows = _manifest_rows(dst, "target")
    taken = {r["generator"] for r in dst_rows} - merged_names
    if set(new_names) & taken:  # a hand-made manifest: rows the builder's log does not know and merged.csv neither
        raise BuildError(f"{dst}/manifest.csv has rows of {', '.join(sorted(set(new_names) & taken))} that no "
                         "earlier merge recorded; merge under another name")

    new_rows, new_files, copies = [], [], []
    for r in src_rows:
        g = r.get("generator")
        if r.get("kind") == "real" or g not in renames:
            continue
        out = {c: r.get(c, "") for c in MANIFEST_COLUMNS}
        out["generator"] = renames[g]
        for col in ("path", "mask"):
            if r.get(col):
                out[col] = _renamed(r[col], g, renames[g], col)
                if not (src / r[col]).is_file():
                    raise BuildError(f"{src}: {r[col]} is listed in its manifest but missing")
                copies.append((src / r[col], dst / out[col]))
        new_rows.append(out)
        new_files.append(src / r["path"])
    gone = [r for r in old_merged if r["generator"] in clash]
    kept_merged = [r for r in old_merged if r["generator"] not in clash]
    own = [r for r in dst_rows if r["generator"] not in merged_names]
    rows = own + kept_merged + new_rows
    check_leakage(rows)

    replaced_dir = None
    if gone:  # move, never delete: the replaced rows and their files stay readable
        replaced_dir = dst / "replaced" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for i in range(1, 1000):  # two replaces within a second: a folder each
            if not replaced_dir.exists():
                break
            replaced_dir = replaced_dir.with_name(f"{replaced_dir.name.split('-')[0]}-{i}")
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": str(src.resolve()),
             "source_build": cfg_s, "renames": renames,
             "counts": dict(Counter(f"{r['kind']}/{r['generator']}" for r in new_rows)),
             "model_versions": sorted({r["model_version"] for r in new_rows if r.get("model_version")}),
             "replaced": {"rows": len(gone), "moved_to": str(replaced_dir.relative_to(dst))} if gone else None}
    result = None
    if audit and {r["kind"] == "real" for r in rows} == {True, False}:  # the merged set, audited before writing
        from .audit import ShortcutAuditError, shortcut_audit

        try:  # rows = own + kept_merged + new_rows; the new rows' files are still in SRC
            result = shortcut_audit([dst / r["path"] for r in own + kept_merged] + new_files,
                                    [r["kind"] != "real" for r in rows], seed=int(cfg_d.get("seed", 0)))
        except ShortcutAuditError as e:
            raise ShortcutAuditError(f"{e}; nothing was merged into {dst}") from e
    _apply(dst, gone, replaced_dir, copies, kept_merged + new_rows, rows, entry, result)
    summary = {"added": len(new_rows), "replaced": len(gone), "n": len(rows), "counts": entry["counts"]}
    if result is not None:
        summary["audit"] = result
    return summary
