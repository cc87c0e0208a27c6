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
    from .run import predict_batched

    skipped: list[str] = []

    def note(message: str) -> None:
        skipped.append(message)
        log(message)

    items = external_reals(note)
    if not items:
        return {"n": 0, "skipped": skipped}
    preds = predict_batched(detector, [im for _, _, im in items], batch=batch)
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
