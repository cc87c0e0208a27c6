"""benchmarks/synthesis_speed.py with tiny generators: it runs against the current synthesis API and reports a rate
for DDIM, ancestral DDPM and the DCGAN (the GPU rates are measured where one is lent, benchmarks/gpu/session.sh)."""


def test_synthesis_speed_script_reports_each_sampler(load_benchmark, tiny_models):
    res = load_benchmark("synthesis_speed").main(["--models-dir", str(tiny_models), "--device", "cpu", "--n-ddim", "2",
                                                  "--n-ddpm", "1", "--n-dcgan", "4", "--chunk", "2", "--no-append"])
    assert [(r["model"], r["sampler"], r["n"]) for r in res["rows"]] == [
        ("ddpm", "ddim-50", 2), ("ddpm", "ddpm-1000", 1), ("dcgan", "gan", 4)]
    assert all(r["samples_per_s"] > 0 for r in res["rows"])
