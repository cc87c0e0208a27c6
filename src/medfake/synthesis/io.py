"""Writing generated images: PNG through the canonical data-set path, or DICOM with provenance."""

from __future__ import annotations

from pathlib import Path

from ..data.canonical import to_canonical
from ..io.image import Image
from ..io.writers import Provenance, write_dicom, write_png


def save_images(images: list[Image], out: str | Path, prov: Provenance, *, fmt: str = "png", bits: int = 8,
                prefix: str = "img") -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        stem = f"{prefix}_{img.meta.label or 'x'}_{i:04d}"
        p = dict(prov.details)
        p.update({"label": img.meta.label, "modality": img.meta.modality})
        pv = Provenance(prov.kind, prov.generator, prov.model_version, p)
        canon = img.with_array(to_canonical(img)) if bits == 8 else img
        if fmt == "png":
            paths.append(write_png(canon, out / f"{stem}.png", bits=bits))
        else:
            paths.append(write_dicom(canon, out / f"{stem}.dcm", pv, bits=bits))
    return paths
