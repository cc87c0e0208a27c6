"""benchmarks/small_inputs.py runs the shipped default detector (an ensemble since stop 37: the script had failed on
it for six stops, unnoticed) on a few shrunk medimg128 test reals: every size gets a row, the floors never call more
images not real than the 128 px thresholds do."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_inputs_runs_the_shipped_ensemble(shared_manifest):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "small_inputs.py"), "--data", str(shared_manifest),
                          "--n", "4", "--no-append"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Detector `default` (version " in run.stdout and "detector-second" in run.stdout  # the ensemble
    body = run.stdout.split("'not real' is a false alarm")[-1]  # the table as it would be appended (rows print twice)
    rows = re.findall(r"^\| (\d+×\d+) \| real \| 4 \| ([\d.]+)% \| \*\*([\d.]+)%\*\* \| ([\d.]+)% \|$", body, re.M)
    assert [r[0] for r in rows] == ["128×128", "96×96", "64×64", "48×48", "40×40", "41×33"]
    for _, plain, floors, fake in rows:
        assert float(fake) <= float(floors) <= float(plain)
