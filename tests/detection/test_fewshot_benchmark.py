"""benchmarks/detect_fewshot.py end to end on its --demo set (a tiny dual-srm trained here without the 'stripes'
generator): the script must run against the current detector API (it once read attributes that no longer exist)."""


def test_fewshot_script_runs_and_references_raise_the_knn_score(load_benchmark, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the --demo set goes to a mkdtemp() folder
    res = load_benchmark("detect_fewshot").main(["--demo", "--no-record"])
    assert res["holdout"] == "stripes" and res["shots"] == 10 and res["kind"] == "synthetic"
    for k in ("auc_before", "auc_after", "knn_auc_before", "knn_auc_after", "tpr_before", "tpr_after"):
        assert 0 <= res[k] <= 1, k
    assert 0 < res["retrieval_weight"] < 1
    # ten references of the unseen generator in the bank: its kNN score separates it better than before
    assert res["knn_auc_after"] > res["knn_auc_before"]
