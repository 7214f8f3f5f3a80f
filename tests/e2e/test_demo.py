"""The demo, run exactly as `make demo` runs it: builtin:small, the shipped example config.

Slow (several minutes on 2 cores): `make test-slow`. Its duration is printed, not asserted; the
measured figure is recorded in the README.
"""

import json
import time

import pytest
from conftest import EXAMPLE, run_molt


@pytest.mark.slow
def test_demo_trained_beats_untrained_base(tmp_path):
    started = time.monotonic()
    result = run_molt("run", EXAMPLE / "molt.yaml", "--name", "demo", "--runs-dir", tmp_path / "runs")
    print(f"demo took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "demo"
    base = json.loads((run / "eval" / "base" / "scores.json").read_text())
    final = json.loads((run / "eval" / "final" / "scores.json").read_text())
    assert final["average"] > base["average"], (base["average"], final["average"])
    report = (run / "report.md").read_text()
    assert "Trained vs untrained base" in report and "builtin:small" in report
    assert f"Report: {run / 'report.md'}" in result.stdout.replace("\n", "")
