"""benchmarks/synthesis_speed.py with tiny generators: it runs against the current synthesis API and reports a rate
for DDIM, ancestral DDPM and the DCGAN (the GPU rates are measured where one is lent, benchmarks/gpu/session.sh)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "synthesis_speed.py"


def test_synthesis_speed_script_reports_each_sampler(tiny_models):
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("synthesis_speed", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    res = mod.main(["--models-dir", str(tiny_models), "--device", "cpu", "--n-ddim", "2", "--n-ddpm", "1",
                    "--n-dcgan", "4", "--chunk", "2", "--no-append"])
    assert [(r["model"], r["sampler"], r["n"]) for r in res["rows"]] == [
        ("ddpm", "ddim-50", 2), ("ddpm", "ddpm-1000", 1), ("dcgan", "gan", 4)]
    assert all(r["samples_per_s"] > 0 for r in res["rows"])
