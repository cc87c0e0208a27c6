"""Manifests (CSV with path, modality, label, split, ...) and plain folder layouts root/<modality>/<label>/*."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..io.readers import RASTER_EXT
from .modalities import MODALITIES


@dataclass
class Record:
    path: Path  # absolute
    modality: str
    label: str
    split: str | None = None
    extra: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        if key in ("path", "modality", "label", "split"):
            return getattr(self, key)
        return self.extra.get(key, default)


def read_manifest(path: str | Path) -> list[Record]:
    """Rows of a manifest CSV; `path` entries are resolved relative to the manifest's folder."""
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.csv").exists():
            path = path / "manifest.csv"
        else:
            return read_folder(path)
    root = path.parent
    out = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "modality"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
        for row in reader:
            p = Path(row.pop("path"))
            out.append(
                Record(
                    path=p if p.is_absolute() else root / p,
                    modality=row.pop("modality"),
                    label=str(row.pop("label", "") or ""),
                    split=(row.pop("split", None) or None),
                    extra=row,
                )
            )
    return out


def read_folder(root: str | Path) -> list[Record]:
    """root/<modality>/<label>/* (label folder optional); split unknown."""
    root = Path(root)
    out = []
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in RASTER_EXT | {".dcm"}:
            continue
        parts = f.relative_to(root).parts
        if len(parts) >= 2 and parts[0] in MODALITIES:
            label = parts[1] if len(parts) >= 3 else ""
            out.append(Record(path=f, modality=parts[0], label=label, split=None))
    return out


def filter_records(records, split: str | None = None, modalities=None, limit_per_class: int | None = None):
    out = [r for r in records if (split is None or r.split == split) and (not modalities or r.modality in modalities)]
    if limit_per_class:
        counts: dict = {}
        kept = []
        for r in out:
            k = (r.modality, r.label)
            if counts.get(k, 0) < limit_per_class:
                counts[k] = counts.get(k, 0) + 1
                kept.append(r)
        out = kept
    return out


def write_manifest(path: str | Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fieldnames is None:
        fieldnames = []
        for r in rows:
            for k in r:
                if k not in fieldnames:
                    fieldnames.append(k)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return path
