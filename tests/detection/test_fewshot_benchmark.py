"""benchmarks/detect_fewshot.py end to end on its --demo set (a tiny dual-srm trained here without the 'stripes'
generator): the script must run against the current detector API (it once read attributes that no longer exist)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "detect_fewshot.py"


def test_fewshot_script_runs_and_references_raise_the_knn_score(tmp_path, monkeypatch):
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the --demo set goes to a mkdtemp() folder

    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("detect_fewshot", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        res = mod.main(["--demo", "--no-record"])
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert res["holdout"] == "stripes" and res["shots"] == 10 and res["kind"] == "synthetic"
    for k in ("auc_before", "auc_after", "knn_auc_before", "knn_auc_after", "tpr_before", "tpr_after"):
        assert 0 <= res[k] <= 1, k
    assert 0 < res["retrieval_weight"] < 1
    # ten references of the unseen generator in the bank: its kNN score separates it better than before
    assert res["knn_auc_after"] > res["knn_auc_before"]
