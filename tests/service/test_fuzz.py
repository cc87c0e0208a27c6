"""Fuzz: ≥ 200 malformed uploads against the live server. Every one must be answered 4xx with a JSON detail —
never 5xx, never a stack trace — and the server must still be healthy afterwards."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from .service_helpers import png_bytes_of, smooth_image
from .test_api import assert_json_error, bomb_png, png_chunk

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")


def _png(ihdr: bytes, idat: bytes, iend: bool = True) -> bytes:
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
    return out + (png_chunk(b"IEND", b"") if iend else b"")


def _dicom(a: np.ndarray) -> bytes:
    from medfake.io import Image, Provenance, dicom_bytes

    return dicom_bytes(Image(a), Provenance("synthetic", "fuzz"), bits=16)


def _dicom_declaring(rows: int, cols: int) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_dicom(smooth_image(0, 16))))
    ds.Rows, ds.Columns = rows, cols
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def malformed_cases(cap: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(1234)
    cases: list[tuple[str, bytes]] = []
    # random bytes of many lengths, some with image magic numbers in front
    magics = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"\0" * 128 + b"DICM",
              struct.pack("<I", 348)]
    for i in range(80):
        m = magics[i % len(magics)]
        n = int(rng.integers(1, 4000))
        cases.append((f"rand{i}.png", m + rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
    # truncated valid PNGs: 8-bit, 16-bit and RGBA, cut inside the image data
    for mode in ("L", "I;16", "RGBA"):
        full = png_bytes_of(smooth_image(3, 48), mode)
        idat = full.index(b"IDAT")
        for cut in np.linspace(1, len(full) - 40, 20).astype(int):
            if cut > idat + 8 or cut < idat:  # either inside IDAT or before the image data starts
                cases.append((f"trunc_{mode.replace(';', '')}_{cut}.png", full[:cut]))
    # headers that lie: impossible bit depth / colour type, zero size, huge declared sizes, bad zlib data
    raw = zlib.compress(b"\0" * 100)
    for (w, h, depth, ctype) in [(16, 16, 7, 0), (16, 16, 8, 5), (16, 16, 16, 3), (0, 16, 8, 0), (16, 0, 8, 0),
                                 (100_000, 100_000, 8, 0), (70_000, 70_000, 16, 0), (30_000, 30_000, 8, 6),
                                 (1 << 31, 1, 8, 0), (5000, 5000, 16, 4)]:
        cases.append((f"ihdr_{w}x{h}_{depth}_{ctype}.png", _png(struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0), raw)))
    for i in range(8):  # 16-bit / RGBA headers with too little or corrupt pixel data
        ctype, depth = [(0, 16), (6, 8), (4, 16), (2, 16)][i % 4]
        data = zlib.compress(rng.integers(0, 256, 50, dtype=np.uint8).tobytes()) if i < 4 else b"\x78\x9c" + b"\xff" * 40
        cases.append((f"short16rgba{i}.png", _png(struct.pack(">IIBBBBB", 64, 64, depth, ctype, 0, 0, 0), data)))
    for mode in ("L", "I;16", "RGBA"):  # header CRC broken, 16-bit and RGBA variants
        full = bytearray(png_bytes_of(smooth_image(8, 32), mode))
        for k in range(4):
            b = bytearray(full)
            b[29 - k] ^= 0x5A  # inside the IHDR CRC
            cases.append((f"crc_{mode.replace(';', '')}_{k}.png", bytes(b)))
    cases.append(("bomb.png", bomb_png()))
    cases.append(("no_idat.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                  + png_chunk(b"IEND", b"")))
    # truncated / lying DICOM
    dcm = _dicom(smooth_image(4, 64))
    pix = dcm.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    for cut in list(np.linspace(10, pix, 10).astype(int)) + list(np.linspace(pix + 12, len(dcm) - 100, 10).astype(int)):
        cases.append((f"trunc{cut}.dcm", dcm[:cut]))
    cases.append(("huge.dcm", _dicom_declaring(60_000, 60_000)))
    cases.append(("rows0.dcm", _dicom_declaring(0, 64)))
    cases.append(("mismatch.dcm", _dicom_declaring(256, 256)))
    # NIfTI-looking junk, JPEG/TIFF/BMP truncations, text and other formats
    jpg = io.BytesIO()
    from PIL import Image as PILImage

    PILImage.fromarray((smooth_image(5, 64) * 255).astype(np.uint8)).save(jpg, format="JPEG")
    jb = jpg.getvalue()
    for cut in np.linspace(3, len(jb) // 3, 8).astype(int):
        cases.append((f"trunc{cut}.jpg", jb[:cut]))
    tif = io.BytesIO()
    PILImage.fromarray((smooth_image(6, 64) * 255).astype(np.uint8)).save(tif, format="TIFF")
    for cut in (8, 16, 100, 400):
        cases.append((f"trunc{cut}.tif", tif.getvalue()[:cut]))
    bmp = io.BytesIO()
    PILImage.fromarray((smooth_image(7, 64) * 255).astype(np.uint8)).save(bmp, format="BMP")
    bb = bytearray(bmp.getvalue())
    bb[18:26] = struct.pack("<ii", 200_000, 200_000)
    cases.append(("huge.bmp", bytes(bb)))
    cases.append(("trunc.bmp", bmp.getvalue()[:70]))
    for i in range(6):
        hdr = bytearray(348)
        hdr[0:4] = struct.pack("<i", 348)
        hdr[40:56] = struct.pack("<8h", 3, 30_000 + i, 30_000, 30_000, 1, 1, 1, 1) if i % 2 else struct.pack("<8h", 3, 4, 4, 4, 1, 1, 1, 1)
        cases.append((f"junk{i}.nii", bytes(hdr) + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()))
    cases.append(("gz.nii.gz", b"\x1f\x8b" + b"\0" * 30))
    # compressed volumes that inflate far past their declared size (bombs that fit an upload), NRRD junk
    import gzip

    nii = bytearray(352)
    nii[0:4] = struct.pack("<i", 348)
    nii[40:56] = struct.pack("<8h", 3, 8, 8, 1, 1, 1, 1, 1)
    nii[70:74] = struct.pack("<hh", 2, 8)  # uint8, 8 bits
    nii[108:112] = struct.pack("<f", 352.0)
    nii[344:348] = b"n+1\0"
    cases.append(("bomb.nii.gz", gzip.compress(bytes(nii) + bytes(cap * 20), 1)))
    cases.append(("bomb.nrrd", b"NRRD0004\ntype: uint8\ndimension: 2\nsizes: 8 8\nencoding: gzip\n\n"
                  + gzip.compress(bytes(cap * 20), 1)))
    cases.append(("huge.nrrd", b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 9000 9000 9000\nencoding: raw\n\n"))
    cases.append(("junk.nrrd", b"NRRD0004\nsizes: x\n\n" + bytes(64)))
    cases.append(("detached.nrrd", b"NRRD0004\ntype: uint8\ndimension: 2\nsizes: 8 8\nencoding: raw\n"
                  b"data file: /etc/passwd\n\n"))
    # MetaImage: a data file named by path (a server file) or beside it, a huge declared size, a truncation, junk
    mha = b"ObjectType = Image\nNDims = 2\nDimSize = 8 8\nElementType = MET_UCHAR\n"
    cases.append(("detached.mhd", mha + b"ElementDataFile = /etc/passwd\n"))
    cases.append(("sibling.mhd", mha + b"ElementDataFile = x.raw\n"))
    cases.append(("huge.mha", mha.replace(b"8 8", b"90000 90000") + b"ElementDataFile = LOCAL\n" + bytes(64)))
    cases.append(("cut.mha", mha + b"ElementDataFile = LOCAL\n" + bytes(40)))
    cases.append(("junk.mha", b"ObjectType = Image\nNDims = x\nElementDataFile = LOCAL\n" + bytes(64)))
    for name, data in [("empty.png", b""), ("text.png", b"hello world"), ("html.png", b"<html><body>hi</body></html>"),
                       ("json.dcm", b'{"a": 1}'), ("gif.png", b"GIF89a" + b"\0" * 40), ("svg.png", b"<svg xmlns='x'/>"),
                       ("tiny.png", png_bytes_of(smooth_image(1, 4))), ("pdf.png", b"%PDF-1.4\n%%EOF")]:
        cases.append((name, data))
    cases.append(("oversize.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (cap + 1)))
    return cases


@pytest.fixture(scope="module")
def cases(server):
    return malformed_cases(server.settings.max_upload_bytes)


def test_fuzz_detect_uploads_all_4xx(client, cases):
    assert len(cases) >= 200, len(cases)
    statuses = {}
    for name, data in cases:
        r = client.post("/v1/detect", files={"files": (name, data, "image/png")})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert_json_error(r, r.status_code)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert statuses.get(413, 0) >= 5 and statuses.get(422, 0) >= 150, statuses
    assert client.get("/healthz").json()["status"] == "ok"


def test_fuzz_other_endpoints_and_content_types(client, cases):
    subset = cases[::4]
    for name, data in subset:
        for path, field, form in (("/v1/preview", "file", {}), ("/detect/manipulated", "image", {}),
                                  ("/detect/synthesis8", "image", {}),
                                  ("/v1/manipulate", "image", {"method": "retouch", "rect": "1,1,5,5"}),
                                  ("/v1/manipulate", "image", {"method": "retouch", "rect": "1,1,5,5", "frame": "3",
                                                               "all_frames": "true"})):
            r = client.post(path, files={field: (name, data, "application/octet-stream")}, data=form)
            assert 400 <= r.status_code < 500, (path, name, r.status_code, r.text[:300])
    good = png_bytes_of(smooth_image(2, 32))
    weird = [
        ({"content": good, "headers": {"Content-Type": "image/png"}}),
        ({"content": b"files=abc", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ({"content": b'{"files": []}', "headers": {"Content-Type": "application/json"}}),
        ({"content": b"--zz\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}),
        ({"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}}),
        ({"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}),
        ({"content": b"x" * 10, "headers": {"Content-Type": "text/plain"}}),
    ]
    for kw in weird:
        r = client.post("/v1/detect", **kw)
        assert 400 <= r.status_code < 500, (kw["headers"], r.status_code, r.text[:300])
    r = client.post("/v1/detect", files={"other": ("a.png", good, "image/png")})
    assert_json_error(r, 422)
    r = client.post("/v1/synthesize", content=b"[1,2]", headers={"Content-Type": "application/json"})
    assert_json_error(r, 422)
    for bad in ("-1", "1e9", "x", "2.5", ""):  # frame: a whole number 0..1,000,000, else one 422
        r = client.post("/v1/manipulate", files={"image": ("a.png", good, "image/png")},
                        data={"method": "retouch", "rect": "1,1,5,5", "frame": bad, "all_frames": "maybe"})
        assert_json_error(r, 422)
    assert client.get("/healthz").json()["status"] == "ok"
