"""The shortcut audit fails on planted file-format shortcuts and passes on canonical files."""

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from medfake.data import write_canonical
from medfake.evaluation import ShortcutAuditError, file_features, shortcut_audit
from medfake.evaluation.audit import png_chunks

from .conftest import smooth_image


def _pixels(n, seed, noisy=False):
    rng = np.random.default_rng(seed)
    return [rng.random((128, 128)).astype(np.float32) if noisy else smooth_image(rng) for _ in range(n)]


def _write_set(tmp_path, fake_writer):
    paths, fake = [], []
    for i, a in enumerate(_pixels(10, 1)):
        paths.append(write_canonical(a, tmp_path / "real" / f"{i}.png"))
        fake.append(False)
    for i, a in enumerate(_pixels(10, 2, noisy=True)):
        p = tmp_path / "fake" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        fake_writer(a, p)
        paths.append(p)
        fake.append(True)
    return paths, fake


def test_clean_canonical_files_pass_even_when_pixels_differ(tmp_path):
    # the fakes are noise (huge PNGs) but written by the same canonical writer: no format shortcut
    paths, fake = _write_set(tmp_path, lambda a, p: write_canonical(a, p))
    res = shortcut_audit(paths, fake, out=tmp_path / "audit.json")
    assert res["passed"] and res["auc"] < 0.6
    assert res["varying_features"] == []
    assert res["info_file_size_auc"] > 0.9  # reported, not gated
    assert json.loads((tmp_path / "audit.json").read_text())["passed"] is True


def test_extra_png_text_chunk_is_caught(tmp_path):
    def text_chunk(a, p):
        info = PngInfo()
        info.add_text("Software", "generator")
        PILImage.fromarray(np.round(a * 255).astype(np.uint8), mode="L").save(p, pnginfo=info)

    paths, fake = _write_set(tmp_path, text_chunk)
    assert "tEXt" in png_chunks(paths[-1].read_bytes())
    with pytest.raises(ShortcutAuditError, match=r"AUC 1\.000") as e:
        shortcut_audit(paths, fake, out=tmp_path / "audit.json")
    assert "chunk_tEXt" in str(e.value)
    res = json.loads((tmp_path / "audit.json").read_text())  # written before failing
    assert res["passed"] is False and res["auc"] >= 0.6


def test_jpeg_in_png_clothing_is_caught(tmp_path):
    def jpeg(a, p):
        buf = io.BytesIO()
        PILImage.fromarray(np.round(a * 255).astype(np.uint8), mode="L").save(buf, format="JPEG", quality=90)
        p.write_bytes(buf.getvalue())  # a .png name over JPEG bytes

    paths, fake = _write_set(tmp_path, jpeg)
    f = file_features(paths[-1])
    assert f["is_png"] == 0.0 and f["n_chunks"] == 0
    res = shortcut_audit(paths, fake, raise_on_fail=False)
    assert not res["passed"] and res["auc"] >= 0.6
    with pytest.raises(ShortcutAuditError):
        shortcut_audit(paths, fake)


def test_16_bit_fakes_are_caught(tmp_path):
    from medfake.io import write_png

    paths, fake = _write_set(tmp_path, lambda a, p: write_png(a, p, bits=16))
    with pytest.raises(ShortcutAuditError, match="bit_depth"):
        shortcut_audit(paths, fake)


def test_audit_needs_both_classes(tmp_path):
    paths, fake = _write_set(tmp_path, lambda a, p: write_canonical(a, p))
    with pytest.raises(ValueError, match="at least 2 real and 2 fake"):
        shortcut_audit(paths[:11], fake[:11])
