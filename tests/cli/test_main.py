"""`python -m medfake` is the `medfake` command (used where the console script is not installed, such as the GPU
session of benchmarks/gpu/session.sh with PYTHONPATH=src)."""

import subprocess
import sys


def test_python_dash_m_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "medfake", "detect", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--device" in r.stdout and "--copy-move" in r.stdout
    r = subprocess.run([sys.executable, "-m", "medfake", "no-such-command"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no-such-command" in r.stderr
