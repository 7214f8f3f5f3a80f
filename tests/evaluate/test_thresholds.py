"""`molt eval --min-average X --min DIM=SCORE`: exit 1 below a minimum, for CI jobs, on a real evaluation."""

import json
import math
import re

from conftest import run_molt


def test_eval_exits_1_below_the_minimums_and_0_at_or_above_them(trained_run):
    fast = ["--no-probes", "--set", "generation.max_new_tokens=8"]
    result = run_molt("eval", trained_run, "--id", "gate", *fast, "--min-average", "10", "--min", "d2=2")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    scores = json.loads((trained_run / "eval" / "gate" / "scores.json").read_text())  # written anyway
    average, d2 = scores["average"], scores["dimensions"]["D2"]
    assert average < 10 and d2 < 2, "the tiny run should not be perfect; pick other minimums"
    # stderr also carries the progress of the load, the answers and the probes (molting.progress): the verdict is
    # the one line that is not progress, and it comes last
    progress = re.compile(r"^(loading .*|answering .*|log-prob probes: .*|fluency under .*)$")
    lines = [line for line in result.stderr.splitlines() if line.strip() and not progress.match(line)]
    assert result.stderr.rstrip().splitlines()[-1] == lines[-1]
    assert lines == [
        f"below the minimum: average {average:.2f}/10 < --min-average 10; D2 (factual accuracy) {d2:.2f} < --min D2=2"
    ], result.stderr

    # at the averages the evaluation got (rounded down): not below, so it passes
    at = ["--min-average", f"{math.floor(average * 100) / 100:.2f}", "--min", f"D2={math.floor(d2 * 100) / 100:.2f}"]
    result = run_molt("eval", trained_run, "--id", "gate", *fast, *at)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "below the minimum" not in result.stderr


def test_a_malformed_minimum_is_refused_before_evaluating(trained_run):
    for bad in ("D9=1", "D2", "D2=3", "D2=high"):
        result = run_molt("eval", trained_run, "--id", "never", "--min", bad)
        assert result.returncode == 2, (bad, result.stderr)
        assert f"--min '{bad}': expected DIMENSION=SCORE" in result.stderr and "Traceback" not in result.stderr
    result = run_molt("eval", trained_run, "--id", "never", "--min-average", "11")
    assert result.returncode == 2 and "--min-average" in result.stderr
    assert not (trained_run / "eval" / "never").exists()
