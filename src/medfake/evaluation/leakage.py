"""The no-leakage rule for forensic data sets built from real images."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

from ..io.errors import MedfakeError


class LeakageError(MedfakeError, ValueError):
    """A source image (or its pixels) reaches more than one split."""


def _get(row, key):
    if isinstance(row, Mapping):
        return row.get(key)
    return row.get(key) if hasattr(row, "get") else getattr(row, key, None)


def check_leakage(manifest_rows: Iterable) -> None:
    """Raise LeakageError when

    * a source image appears in two splits (real rows are their own source; manipulated rows and
      reconstructions name theirs in `source`; splice donors in `donor`),
    * a manipulated image's split differs from its source's split, or a splice donor's split from its
      image's,
    * the same pixels (`sha256_pixels`, when present) are in two splits.

    Rows are dicts (or data.Record) with at least split, kind and source; rows without a split are ignored
    (there is nothing to leak between)."""
    splits_of: dict[str, set] = defaultdict(set)
    where: dict[str, list] = defaultdict(list)
    pixels: dict[str, set] = defaultdict(set)
    problems: list[str] = []
    rows = list(manifest_rows)
    for row in rows:
        split = _get(row, "split")
        if not split:
            continue
        kind = _get(row, "kind") or "real"
        path = str(_get(row, "path") or "")
        source = _get(row, "source") or (path if kind == "real" else None)
        if source:
            splits_of[str(source)].add(split)
            where[str(source)].append(f"{path} ({split})")
        donor = _get(row, "donor")
        if donor:
            splits_of[str(donor)].add(split)
            where[str(donor)].append(f"{path} (donor, {split})")
        sha = _get(row, "sha256_pixels")
        if sha and kind == "real":
            pixels[str(sha)].add(split)
    for src, s in splits_of.items():
        if len(s) > 1:
            problems.append(f"source {src} is used in splits {sorted(s)}: {', '.join(where[src][:4])}")
    for sha, s in pixels.items():
        if len(s) > 1:
            problems.append(f"identical pixels (sha256 {sha[:12]}…) in splits {sorted(s)}")
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise LeakageError(f"split leakage in {len(problems)} place(s): " + "; ".join(problems[:5]) + more)
