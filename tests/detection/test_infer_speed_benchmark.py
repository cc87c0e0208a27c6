"""benchmarks/infer_speed.py end to end with a tiny detector: the script must run against the current detector API
and report a rate for every batch size and stage (the GPU target, ≥ 5,000 img/s, is measured where one is lent)."""

import pytest


def test_infer_speed_script_reports_each_batch_size(load_benchmark, tiny_models_dir, capsys):
    res = load_benchmark("infer_speed").main(["--models-dir", str(tiny_models_dir), "--device", "cpu",
                                              "--batch-sizes", "3,8", "--seconds", "0.01", "--no-append"])
    assert res["device"] == "cpu" and [r["batch"] for r in res["rows"]] == [3, 8]
    for r in res["rows"]:
        assert r["tensor_img_s"] > 0 and r["predict_img_s"] > 0
    assert "| 8 |" in capsys.readouterr().out


def test_infer_speed_script_refuses_a_missing_device(load_benchmark, tiny_models_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit) as e:
        load_benchmark("infer_speed").main(["--models-dir", str(tiny_models_dir), "--device", "cuda", "--no-append"])
    assert e.value.code == 2
