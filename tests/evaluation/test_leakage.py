import pytest

from medfake.evaluation import LeakageError, check_leakage


def _clean():
    return [
        {"path": "images/real/real/chest_xray/a.png", "kind": "real", "split": "train", "source": "chest_xray/a.png"},
        {"path": "images/real/real/chest_xray/b.png", "kind": "real", "split": "test", "source": "chest_xray/b.png"},
        {"path": "images/synthetic/ddpm/chest_xray/s.png", "kind": "synthetic", "split": "test", "source": ""},
        {"path": "images/manipulated/copy-move/chest_xray/m.png", "kind": "manipulated", "split": "train",
         "source": "chest_xray/a.png"},
        {"path": "images/manipulated/splice/chest_xray/n.png", "kind": "manipulated", "split": "test",
         "source": "chest_xray/b.png", "donor": ""},
    ]


def test_clean_manifest_passes():
    check_leakage(_clean())


def test_manipulated_split_differs_from_source():
    rows = _clean()
    rows[3]["split"] = "test"  # a manipulated copy of a train image in test
    with pytest.raises(LeakageError, match="chest_xray/a.png"):
        check_leakage(rows)


def test_source_in_two_splits():
    rows = _clean() + [{"path": "images/real/real/chest_xray/a2.png", "kind": "real", "split": "val",
                        "source": "chest_xray/a.png"}]
    with pytest.raises(LeakageError, match="splits"):
        check_leakage(rows)


def test_splice_donor_from_another_split():
    rows = _clean()
    rows[4]["donor"] = "chest_xray/a.png"  # train image spliced into a test image
    with pytest.raises(LeakageError, match="donor"):
        check_leakage(rows)


def test_identical_pixels_in_two_splits():
    rows = _clean()
    rows[0]["sha256_pixels"] = rows[1]["sha256_pixels"] = "ab" * 32
    with pytest.raises(LeakageError, match="identical pixels"):
        check_leakage(rows)


def test_rows_without_split_are_ignored():
    check_leakage([{"path": "x.png", "kind": "real", "split": None, "source": "x"},
                   {"path": "y.png", "kind": "manipulated", "split": "", "source": "x"}])


def test_reconstruction_in_another_split_than_its_source():
    rows = _clean() + [{"path": "images/synthetic/vae/chest_xray/r.png", "kind": "synthetic", "split": "train",
                        "source": "chest_xray/b.png"}]  # a VAE reconstruction of a test image in train
    with pytest.raises(LeakageError, match="chest_xray/b.png"):
        check_leakage(rows)
    rows[-1]["split"] = "test"
    check_leakage(rows)
