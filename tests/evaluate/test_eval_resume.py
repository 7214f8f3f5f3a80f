"""An evaluation killed at any point continues where it stopped, and ends equal to an
uninterrupted one. The test SIGKILLs a real `molt eval` process once answers are on disk."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import run_molt

from molting.evaluate.run import PARTIAL, read_partial

# 8 questions × 2 samples, one answer per batch: 16 batches, so the kill lands between two of them.
ARGS = ["--samples", "2", "--temperature", "0.9", "--no-probes"]
SETS = ["generation.batch_size=1", "generation.max_new_tokens=8"]
VOLATILE = {"generation_seconds", "generated_answers", "reused_answers", "memory", "eval_id"}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _whole_lines(path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut off by the kill
    return out


def test_killed_eval_resumes_without_regenerating(trained_run):
    from molting.evaluate.run import eval_run

    out = trained_run / "eval" / "resume"
    partial = out / PARTIAL
    args = ["eval", str(trained_run), "--id", "resume", *ARGS, *(x for s in SETS for x in ("--set", s))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "molting", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if partial.is_file() and partial.read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "molt eval finished before it could be killed"
    assert not (out / "responses.jsonl").exists() and not (out / "scores.json").exists()
    before = _whole_lines(partial)
    assert 3 <= len(before) < 16

    result = run_molt(*args)
    assert result.returncode == 0, result.stderr
    assert f"answers: {16 - len(before)} generated, {len(before)} reused" in result.stdout
    assert not partial.exists()
    resumed = _rows(out / "responses.jsonl")
    assert len(resumed) == 16 and len({r["answer_id"] for r in resumed}) == 16
    by_id = {r["answer_id"]: r for r in resumed}
    for row in before:  # the finished answers were kept as they were
        assert by_id[row["answer_id"]] == {k: v for k, v in row.items() if k != "key"}

    eval_run(trained_run, "whole", samples=2, temperature=0.9, probes=False, overrides=SETS, show_progress=False)
    assert resumed == _rows(trained_run / "eval" / "whole" / "responses.jsonl")
    scores = json.loads((out / "scores.json").read_text())
    whole = json.loads((trained_run / "eval" / "whole" / "scores.json").read_text())
    assert scores["reused_answers"] == len(before) and whole["reused_answers"] == 0
    assert {k: v for k, v in scores.items() if k not in VOLATILE} == {
        k: v for k, v in whole.items() if k not in VOLATILE
    }


def test_partial_rows_from_other_settings_or_cut_off_are_not_reused(tmp_path):
    path = tmp_path / PARTIAL
    good = {"id": "Q1", "answer_id": "Q1#0", "response": "ok", "key": "k0"}
    stale = {"id": "Q2", "answer_id": "Q2#0", "response": "old model", "key": "from-another-adapter"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(stale) + "\n" + '{"id": "Q3", "answer_id": "Q3#0", "resp')
    done = read_partial(path, {"Q1#0": "k0", "Q2#0": "k1", "Q3#0": "k2"})
    assert done == {"Q1#0": good}


def test_answers_from_a_server_are_seeded_per_sample_and_resumed(tmp_path):
    """The --backend openai path of the same loop: sample k goes out with seed + k, finished answers are kept,
    and a question the server failed is asked again on the next attempt (a real server on 127.0.0.1)."""
    from conftest import EXAMPLE
    from openai_server import serve

    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.config import GenerationSettings
    from molting.evaluate.run import answer_all, plan_asks
    from molting.openai_client import Endpoint

    card = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", card)
    by_question = {q.question: q for q in suite.questions}
    failing = {"Q3"}

    def persona_server(body, n):
        question = by_question[body["messages"][-1]["content"]]
        if question.id in failing:
            return (400, {"error": {"message": "context length exceeded"}})
        return question.reference

    settings = GenerationSettings(temperature=0.5, samples=2, seed=3, batch_size=4)
    asks = plan_asks(suite, [], settings)
    partial = tmp_path / PARTIAL
    with serve(persona_server) as server:
        endpoint = Endpoint(server.url, "claudio-source", timeout_s=5, max_retries=0)
        rows, reused = answer_all(None, None, "sys", asks, settings, set(), partial, "fp", endpoint=endpoint)
        assert reused == 0 and len(rows) == 16
        assert sorted({r["body"]["seed"] for r in server.requests}) == [3, 4]
        assert [r["seed"] for r in rows[:2]] == [3, 4] and rows[0]["response"] == suite.by_id["Q1"].reference
        assert [r["answer_id"] for r in rows if r["response"] is None] == ["Q3#0", "Q3#1"]
        assert len(_whole_lines(partial)) == 14  # the failed answers are not kept
        asked = len(server.requests)
        failing.clear()
        rows, reused = answer_all(None, None, "sys", asks, settings, set(), partial, "fp", endpoint=endpoint)
        assert reused == 14 and all(r["response"] for r in rows)
        # only the two failed answers went out again
        again = [r["body"]["messages"][-1]["content"] for r in server.requests[asked:]]
        assert again == [suite.by_id["Q3"].question] * 2


def test_an_evaluation_ending_with_missing_answers_keeps_the_given_ones_for_the_retry(tmp_path):
    """The server died mid-run: most answers are missing when the evaluation is written. The partial file
    stays beside responses.jsonl, so the same command asks the server again only for the missing answers."""
    from conftest import EXAMPLE
    from openai_server import serve

    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.config import GenerationSettings
    from molting.evaluate.rubric import score_responses
    from molting.evaluate.run import answer_all, plan_asks, write_evaluation
    from molting.openai_client import Endpoint

    card = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", card)
    by_question = {q.question: q for q in suite.questions}
    killed_after = [3]  # answers given before the server died; None once it is back

    def persona_server(body, n):
        if killed_after[0] is not None and n > killed_after[0]:
            return (503, {"error": {"message": "server is gone"}})
        return by_question[body["messages"][-1]["content"]].reference

    settings = GenerationSettings(batch_size=4)
    asks = plan_asks(suite, [], settings)
    out = tmp_path / "eval" / "openai-x"
    with serve(persona_server) as server:
        endpoint = Endpoint(server.url, "claudio-source", timeout_s=5, max_retries=0)
        rows, _ = answer_all(None, None, "sys", asks, settings, set(), out / PARTIAL, "fp", endpoint=endpoint)
        given = [r for r in rows if r["response"] is not None]
        assert len(given) == 3 and len(rows) == 8
        write_evaluation(out, rows, score_responses(card, suite.by_id, given))
        assert (out / "responses.jsonl").is_file() and len(_whole_lines(out / PARTIAL)) == 3

        asked, killed_after[0] = len(server.requests), None  # restarted: it answers everything
        rows, reused = answer_all(None, None, "sys", asks, settings, set(), out / PARTIAL, "fp", endpoint=endpoint)
        assert asked == 8 and reused == 3 and len(server.requests) == 8 + 5 and all(r["response"] for r in rows)
        write_evaluation(out, rows, score_responses(card, suite.by_id, rows))
    assert not (out / PARTIAL).exists()  # every answer given: nothing left to resume
