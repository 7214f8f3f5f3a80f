"""The benchmark scripts run (on builtin:tiny, with small sizes). Their figures are not asserted here:
speed targets live in bench/RESULTS.md, measured by `make bench` on builtin:small."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


def _bench(script, *args) -> dict:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("JSON "))
    return json.loads(line[5:])


def test_bench_score_runs():
    out = _bench("score.py", "--answers", "300")
    assert out["rows"][0]["answers"] == 300 and out["rows"][0]["answers_per_s"] > 0


def test_bench_check_runs():
    out = _bench("check.py", "--conversations", "300", "--base", "builtin:tiny")
    assert out["rows"][0]["conversations"] == 300


def test_bench_generate_runs_and_batching_changes_nothing():
    out = _bench("generate.py", "--base", "builtin:tiny", "--max-new-tokens", "8")
    assert [r["prompts"] for r in out["rows"]] == [16, 16]
    assert out["identical_outputs"] is True


@pytest.mark.parametrize("examples", ["8"])
def test_bench_train_runs_every_recipe(examples):
    out = _bench("train.py", "--base", "builtin:tiny", "--examples", examples)
    # `lora.trainable_tokens: auto` trains builtin:tiny's </s> row, so (d) runs: the same without it
    assert out["token_rows_trained_by_c"] == ["</s>"]
    assert [r["recipe"][:3] for r in out["rows"]] == ["(a)", "(b)", "(c)", "(d)"]
    assert all(r["non_pad_tok_per_s"] > 0 and r["held_out_loss"] > 0 for r in out["rows"])
    assert set(out["targets"]) == {
        "c/a >= 5",
        "c/b >= 1.3 (builtin bases)",
        "c/b >= 1.5 (a real vocabulary)",
        "peak c <= a",
        "peak c <= 60% of b",
        "held-out c <= b",
        "held-out c within 1% of b",
    }
