"""benchmarks/train_reals_fetch.py without the network: a folder member of a Debian package (an `ar` archive around
data.tar.xz) comes out whole and is read in InstanceNumber order, a MetaImage header brings its data file, members
sharing a file name get distinct names,
a volume gives its middle slices, the merged manifest points at both folders' files, and a download whose sha256 is
not the pinned one is refused and not kept."""

import csv
import io
import tarfile

import nibabel as nib
import numpy as np
import pytest


def _deb(path, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", buf.getvalue())]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)


def test_extract_a_series_folder_from_a_deb_and_order_it_by_instance(load_benchmark, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    fetch = load_benchmark("train_reals_fetch")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series = {}
    for name, number in (("571417", 3), ("60349", 1), ("6592115", 2)):  # names are not slice numbers
        ds.InstanceNumber = number
        buf = io.BytesIO()
        ds.save_as(buf)
        series[f"./usr/share/pkg/series/{name}"] = buf.getvalue()
    deb = tmp_path / "pkg_1.0_all.deb"
    _deb(deb, series | {"./usr/share/pkg/other.txt": b"no"})
    files = fetch.extract(deb, "./usr/share/pkg/series/", tmp_path / "out" / "series")
    assert sorted(f.name for f in files) == ["571417", "60349", "6592115"]
    assert [f.name for f in fetch.series_order(files)] == ["60349", "6592115", "571417"]
    assert len(fetch.slices(files, cap=40)) == 3
    one = fetch.extract(deb, "./usr/share/pkg/other.txt", tmp_path / "out" / "other.txt")
    assert one == [tmp_path / "out" / "other.txt"] and one[0].read_bytes() == b"no"
    with pytest.raises(SystemExit, match="no ./usr/share/pkg/missing"):
        fetch.extract(deb, "./usr/share/pkg/missing", tmp_path / "out" / "m")
    (tmp_path / "bad.deb").write_bytes(b"not an ar archive")
    with pytest.raises(SystemExit, match="not a Debian package"):
        fetch.extract(tmp_path / "bad.deb", "x", tmp_path / "out" / "x")


def test_a_metaimage_header_member_brings_its_data_file(load_benchmark, tmp_path):
    """camitk ships CT volumes as .mhd + .raw/.zraw: listing the header extracts the data file it names beside it,
    under that name, and the volume reads (SimpleITK writes the pair here)."""
    import SimpleITK as sitk

    fetch = load_benchmark("train_reals_fetch")
    vol = np.arange(6 * 16 * 16, dtype=np.int16).reshape(6, 16, 16)
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "ct.mhd"), useCompression=True)
    header, data = (tmp_path / "ct.mhd").read_bytes(), (tmp_path / "ct.zraw").read_bytes()
    deb = tmp_path / "pkg_1.0_all.deb"
    _deb(deb, {"./usr/share/pkg/ct/ct.mhd": header, "./usr/share/pkg/ct/ct.zraw": data,
               "./usr/share/pkg/ct/readme": b"AMOS"})
    files = fetch.extract(deb, "./usr/share/pkg/ct/ct.mhd", tmp_path / "out" / "ct.mhd")
    assert files == [tmp_path / "out" / "ct.mhd"] and (tmp_path / "out" / "ct.zraw").read_bytes() == data
    assert not (tmp_path / "out" / "readme").exists()
    assert [k for k, _ in fetch.slices(files, cap=40)] == [1, 2, 3, 4]  # the middle 60 % of 6 slices


def test_members_sharing_a_file_name_get_distinct_names(load_benchmark):
    fetch = load_benchmark("train_reals_fetch")
    names = fetch.local_names(["t/ref/example_ct.nii.gz", "t/ref/aorta/example_ct.nii.gz", "t/ref/dicom/"])
    assert names == ["ref__example_ct.nii.gz", "aorta__example_ct.nii.gz", "dicom"]
    for _, _, _, _, members in fetch.SOURCES:
        names = fetch.local_names([m for m, _, _ in members])
        assert len(names) == len(set(names))


def test_a_volume_gives_its_middle_slices_capped(load_benchmark, tmp_path):
    fetch = load_benchmark("train_reals_fetch")
    vol = np.zeros((64, 64, 20), np.int16)
    for k in range(20):
        vol[16:48, 16:48, k] = 100 + 10 * k  # each slice its own level
    p = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), p)
    picked = fetch.slices([p], cap=40)
    assert [k for k, _ in picked] == list(range(4, 16))  # the middle 60 % of 20
    assert [k for k, _ in fetch.slices([p], cap=3)] == [4, 10, 15]


def test_merge_rewrites_paths_relative_to_the_merged_manifest(load_benchmark, tmp_path):
    fetch = load_benchmark("train_reals_fetch")
    (tmp_path / "bench").mkdir()
    (tmp_path / "extra").mkdir()
    base = tmp_path / "bench" / "manifest.csv"
    base.write_text("path,modality,label,split,kind,generator,mask\n"
                    "images/a.png,brain_mri,glioma,train,real,real,\n"
                    "images/m.png,brain_mri,glioma,train,manipulated,splice,masks/m.png\n")
    extra = tmp_path / "extra" / "manifest.csv"
    extra.write_text("path,modality,label,split,kind,generator,source,mask,tier\n"
                     "images/real/extra/p/x_0001.png,other,,train,real,real,p/x#1,,A\n")
    out = tmp_path / "train.csv"
    fetch.merge(base, extra, out)
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == ["bench/images/a.png", "bench/images/m.png",
                                         "extra/images/real/extra/p/x_0001.png"]
    assert rows[1]["mask"] == "bench/masks/m.png" and rows[0]["mask"] == "" and rows[2]["modality"] == "other"
    assert list(rows[0]) == ["path", "modality", "label", "split", "kind", "generator", "mask"]


def test_download_refuses_a_wrong_sha256(load_benchmark, tmp_path):
    fetch = load_benchmark("train_reals_fetch")
    src = tmp_path / "a.tgz"
    src.write_bytes(b"payload")
    with pytest.raises(SystemExit, match="is not the pinned"):
        fetch.download(src.as_uri(), "0" * 64, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())
    got = fetch.download(src.as_uri(), fetch._sha256(src), tmp_path / "cache")
    assert got.read_bytes() == b"payload"
