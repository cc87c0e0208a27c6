"""Browser end-to-end: the page served by the live server, driven by Playwright on Debian chromium.
Screenshots go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest

from .service_helpers import png_bytes_of, smooth_image

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at /usr/bin/chromium "
                                                           "(run `make browser` or apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url + "/")
        pg.wait_for_function("document.querySelector('#synth-modality').options.length > 0")
        yield pg
        browser.close()
        assert not errors, errors


def shot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def test_synthesis_job_in_browser(page):
    page.click("#tab-synthesis")
    page.select_option("#synth-modality", "brain_mri")
    page.select_option("#synth-label", "glioma")
    page.fill("#synth-steps", "3")
    page.fill("#synth-n", "2")
    page.click("#synth-run")
    page.wait_for_selector("#synth-zip:not(.hidden)", timeout=60_000)
    assert page.locator("#synth-gallery img").count() == 2
    assert page.get_attribute("#synth-gallery img >> nth=0", "alt").startswith("Synthetic brain_mri")
    assert page.eval_on_selector("#synth-progress", "e => e.value") == 1
    assert page.get_attribute("#synth-zip", "href").startswith("blob:")
    shot(page, "web-synthesis.png")


def test_detection_in_browser(page, tmp_path):
    real = tmp_path / "scan.png"
    real.write_bytes(png_bytes_of(smooth_image(11)))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    small = tmp_path / "thumb.png"
    small.write_bytes(png_bytes_of(smooth_image(13, 40)))
    page.click("#tab-detection")
    page.set_input_files("#detect-files", [str(real), str(bad), str(small)])
    page.wait_for_selector("#detect-csv:not([disabled])", timeout=30_000)
    rows = page.locator("#detect-table tbody tr")
    assert rows.count() == 3
    verdict = rows.nth(0).locator("td").nth(4).inner_text()
    assert verdict in ("real", "synthetic", "manipulated", "uncertain")
    assert rows.nth(1).locator("td").nth(4).inner_text() == "error"
    assert "40x40 px, upsampled" in rows.nth(2).get_attribute("title")  # the small input's note is shown
    assert not rows.nth(0).get_attribute("title")
    rows.nth(0).click()
    page.wait_for_function("document.querySelector('#detect-detail').textContent.startsWith('scan.png')")
    assert page.eval_on_selector("#detect-canvas", "c => [c.width, c.height]") == [128, 128]
    shot(page, "web-detection.png")


def test_series_verdicts_in_browser(page, tmp_path, group_rule):
    """Three DICOM files of one series and a PNG: the page adds one row per series, with the server's verdict for
    it (detection.summary's rule, asked of /v1/summary after the batch)."""
    import pydicom
    from pydicom.uid import generate_uid

    from medfake.io import Image, Provenance, dicom_bytes

    series = generate_uid()
    paths = []
    for i in range(3):
        ds = pydicom.dcmread(io.BytesIO(dicom_bytes(Image(smooth_image(20 + i)), Provenance("synthetic", "test"))))
        ds.SeriesInstanceUID = series
        paths.append(tmp_path / f"im{i}.dcm")
        ds.save_as(paths[-1])
    png = tmp_path / "other.png"
    png.write_bytes(png_bytes_of(smooth_image(24)))
    page.click("#tab-detection")
    page.set_input_files("#detect-files", [str(p) for p in paths] + [str(png)])
    page.wait_for_selector("#detect-csv:not([disabled])", timeout=30_000)
    verdicts = [page.locator("#detect-table tbody tr").nth(i).locator("td").nth(4).inner_text() for i in range(3)]
    assert page.locator("#series-block").is_visible()
    rows = page.locator("#series-table tbody tr")
    assert rows.count() == 1  # the PNG has no series
    assert page.inner_text("#detect-detail") == "Click a row to inspect it."  # the last batch's selection is gone
    cells = [rows.nth(0).locator("td").nth(k).inner_text() for k in range(5)]
    flagged = sum(v != "real" for v in verdicts)
    assert cells[1:] == ["3", str(3 - flagged), str(flagged), group_rule[1](verdicts)]
    assert series.endswith(cells[0].lstrip("…")) and rows.nth(0).locator("td").nth(0).get_attribute("title") == series
    shot(page, "web-series.png")
    page.set_input_files("#detect-files", [str(png)])  # a new batch without DICOM: the block goes away
    page.wait_for_selector("#detect-csv:not([disabled])", timeout=30_000)
    assert not page.locator("#series-block").is_visible()


def test_draw_mask_and_manipulate(page, tmp_path):
    from PIL import Image as PILImage

    src = tmp_path / "knee.png"
    src.write_bytes(png_bytes_of(smooth_image(12, 100)))
    page.click("#tab-manipulation")
    page.set_input_files("#manip-file", str(src))
    page.wait_for_function("document.querySelector('#manip-canvas').width === 100")
    box = page.locator("#manip-overlay").bounding_box()
    assert box["width"] > 150  # displayed larger than its 100 px: coordinates must be scaled

    def css(x, y):
        return box["x"] + x * box["width"] / 100, box["y"] + y * box["height"] / 100

    page.mouse.move(*css(20, 30))
    page.mouse.down()
    page.mouse.move(*css(40, 50), steps=4)
    page.mouse.move(*css(60, 70), steps=4)
    page.mouse.up()
    page.select_option("#manip-method", "retouch")
    page.click("#manip-run")
    page.wait_for_selector("#manip-png:not(.hidden)", timeout=30_000)
    mask_url = page.get_attribute("#manip-mask-out", "src")
    mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(mask_url.split(",", 1)[1])))) > 0
    assert mask.shape == (100, 100)
    ys, xs = np.nonzero(mask)
    # the rectangle drawn from image pixel (20, 30) to (60, 70) lands on those pixels (±1 px of rounding)
    assert abs(xs.min() - 20) <= 1 and abs(xs.max() - 59) <= 1 and abs(ys.min() - 30) <= 1 and abs(ys.max() - 69) <= 1
    assert page.get_attribute("#manip-dcm", "href").startswith("data:application/dicom;base64,")
    assert page.get_attribute("#manip-seg", "href").startswith("data:application/dicom;base64,")
    assert page.get_attribute("#manip-result", "src").startswith("data:image/png;base64,")
    shot(page, "web-manipulation.png")


def test_manipulate_a_frame_of_a_multiframe_dicom_back_whole(page, tmp_path):
    """A multi-frame DICOM shows its frame picker and the whole-object option; the frame chosen is the one shown,
    drawn on and edited, and the DICOM downloaded is the whole object with only that frame changed. A PNG hides both
    again."""
    import pydicom
    from pydicom.data import get_testdata_file

    src_path = get_testdata_file("emri_small.dcm")  # 10 frames of 64×64
    src = pydicom.dcmread(src_path)
    page.click("#tab-manipulation")
    page.set_input_files("#manip-file", src_path)
    page.wait_for_selector("#manip-frame-wrap:not(.hidden)", timeout=30_000)
    assert page.locator("#manip-whole-wrap").is_visible()
    assert page.input_value("#manip-frame") == "0" and page.get_attribute("#manip-frame", "max") == "9"
    page.fill("#manip-frame", "6")
    page.dispatch_event("#manip-frame", "change")
    page.wait_for_function("document.querySelector('#manip-canvas').getAttribute('aria-label').includes('frame 6')")
    shown = page.evaluate("""() => { const c = document.querySelector('#manip-canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 === 0));
    }""")
    frame6 = src.pixel_array[6].astype(np.float64)
    want = np.round((frame6 - frame6.min()) / (frame6.max() - frame6.min()) * 255)
    assert np.abs(np.asarray(shown, np.float64).reshape(64, 64) - want).max() <= 1  # frame 6 is what is drawn on
    box = page.locator("#manip-overlay").bounding_box()
    page.mouse.move(box["x"] + 16 * box["width"] / 64, box["y"] + 16 * box["height"] / 64)
    page.mouse.down()
    page.mouse.move(box["x"] + 40 * box["width"] / 64, box["y"] + 40 * box["height"] / 64, steps=4)
    page.mouse.up()
    page.select_option("#manip-method", "retouch")
    assert not page.locator("#manip-depth-wrap").is_visible()  # a slab goes only into the whole object
    page.check("#manip-whole")
    assert page.locator("#manip-depth-wrap").is_visible() and page.input_value("#manip-depth") == "0"
    page.click("#manip-run")
    page.wait_for_selector("#manip-dcm:not(.hidden)", timeout=30_000)
    url = page.get_attribute("#manip-dcm", "href")
    out = pydicom.dcmread(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert out.NumberOfFrames == 10 and "frame_number=7 of 10" in out.DerivationDescription
    assert all(np.array_equal(out.pixel_array[i], src.pixel_array[i]) for i in range(10) if i != 6)
    assert not np.array_equal(out.pixel_array[6], src.pixel_array[6])
    shot(page, "web-manipulation-frames.png")
    page.fill("#manip-depth", "1")  # the same mask as a lesion over frames 5–7
    page.click("#manip-run")
    page.wait_for_function("old => document.querySelector('#manip-dcm').href !== old", arg=url, timeout=30_000)
    url = page.get_attribute("#manip-dcm", "href")
    out = pydicom.dcmread(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert "frame_number=6,7,8 of 10" in out.DerivationDescription
    assert [i for i in range(10) if not np.array_equal(out.pixel_array[i], src.pixel_array[i])] == [5, 6, 7]
    page.uncheck("#manip-whole")
    page.dispatch_event("#manip-whole", "change")
    assert not page.locator("#manip-depth-wrap").is_visible() and page.input_value("#manip-depth") == "0"
    png = tmp_path / "one.png"
    png.write_bytes(png_bytes_of(smooth_image(5, 80)))
    page.set_input_files("#manip-file", str(png))
    page.wait_for_function("document.querySelector('#manip-canvas').width === 80")
    assert not page.locator("#manip-frame-wrap").is_visible() and not page.locator("#manip-whole-wrap").is_visible()
    assert not page.is_checked("#manip-whole")
