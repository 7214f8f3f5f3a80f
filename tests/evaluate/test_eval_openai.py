"""`molt eval --backend openai` with an LLM judge, end to end through the
real `molt` command: the answers come from one loopback server playing the persona, the verdicts from a
second one playing the judge. No local model is loaded, so this needs no trained run: the run directory
is made from the config. The whole command is a slow test: `molt eval` also computes the embedding
similarity, which encodes every training answer and takes a minute of CPU on a busy 2-core
machine. The default test drives the same code below it (answers from the server, rubric, judge) against
the same real servers."""

import json

import pytest
from click.testing import CliRunner
from conftest import EXAMPLE, run_molt
from openai_server import completion, serve

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.cli import cli
from molting.config import GenerationSettings, JudgeSettings
from molting.evaluate.judge import apply_judge
from molting.evaluate.rubric import score_responses
from molting.evaluate.server_answers import answer_with_endpoint
from molting.openai_client import Endpoint

CARD = load_persona(EXAMPLE / "persona.yaml")
SUITE = load_suite(EXAMPLE / "suite.yaml", CARD)
BY_QUESTION = {q.question: q for q in SUITE.questions}


def persona_server(body, n):
    question = BY_QUESTION[body["messages"][-1]["content"]]
    if question.id == "Q3":
        return (400, {"error": {"message": "context length exceeded"}})  # this question fails, not the eval
    if question.id == "Q2":  # cut off by the server's max_tokens
        return (200, completion(question.reference[:60], finish_reason="length"))
    return question.reference


def test_answers_from_a_server_then_rubric_and_judge(tmp_path):
    prompts = [
        [{"role": "system", "content": CARD.system_prompts.inference.strip()}, {"role": "user", "content": q.question}]
        for q in SUITE.questions
    ]
    settings = GenerationSettings(max_new_tokens=64, temperature=0.7, seed=11)
    with serve(persona_server) as model, serve(lambda body, n: '{"score": 1, "reason": "so-so"}') as judge:
        answers = answer_with_endpoint(Endpoint(model.url, "claudio-source", timeout_s=5), prompts, settings)
        rows = [{"id": q.id, "prompt": q.question, **a} for q, a in zip(SUITE.questions, answers, strict=True)]
        answered = [r for r in rows if r["response"] is not None]
        scores = score_responses(CARD, SUITE.by_id, answered)
        judged = JudgeSettings(url=judge.url, model="judge-7b", dims=["D3", "D5"], timeout=5)
        apply_judge(scores, answered, CARD, SUITE.by_id, judged, tmp_path / "judge_cache", show_progress=False)
    body = model.requests[0]["body"]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.7 and body["seed"] == 11 and body["top_p"] == 1.0
    assert len(model.requests) == 8  # the failing question is a client error: not retried
    by_id = {r["id"]: r for r in rows}
    assert by_id["Q1"] == {
        "id": "Q1", "prompt": "Quem é o João?", "response": SUITE.by_id["Q1"].reference,
        "new_tokens": None, "finish_reason": "stop",
    }  # fmt: skip
    assert by_id["Q2"]["finish_reason"] == "length"
    assert by_id["Q3"]["response"] is None and "HTTP 400" in by_id["Q3"]["error"]
    q2 = next(q for q in scores["questions"] if q["id"] == "Q2")
    assert q2["rubric_dims"]["D5"] == 1  # truncated, as the server said
    assert q2["judge"]["D3"] == {"score": 1, "reason": "so-so"} and q2["dims"]["D3"] == 1
    assert len(judge.requests) == 7 * 2


@pytest.mark.slow
def test_eval_a_config_with_answers_and_judge_from_servers(tmp_path):
    with serve(persona_server) as model, serve(lambda body, n: '{"score": 2, "reason": "ok"}') as judge:
        result = CliRunner().invoke(
            cli,
            [
                "eval", str(EXAMPLE / "molt.yaml"),
                "--backend", "openai", "--url", model.url, "--model", "claudio-source",
                "--judge-url", judge.url, "--judge-model", "judge-7b",
                "--runs-dir", str(tmp_path / "runs"), "--name", "ported",
                "--no-probes",  # this server answers the suite's questions only
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = tmp_path / "runs" / "ported" / "eval" / "openai-claudio-source"
    assert (tmp_path / "runs" / "ported" / "config.yaml").is_file()

    # the server got the card's inference prompt and the run's generation settings
    first = model.requests[0]["body"]
    assert first["model"] == "claudio-source"
    assert first["messages"][0] == {"role": "system", "content": CARD.system_prompts.inference.strip()}
    assert first["max_tokens"] == 256 and first["temperature"] == 0.0

    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in SUITE.questions]
    by_id = {r["id"]: r for r in rows}
    assert by_id["Q1"]["response"] == SUITE.by_id["Q1"].reference and by_id["Q1"]["finish_reason"] == "stop"
    assert by_id["Q2"]["finish_reason"] == "length"
    assert by_id["Q3"]["response"] is None and "HTTP 400" in by_id["Q3"]["error"]
    assert "no answer for Q3: HTTP 400" in " ".join(result.stderr.split())
    assert "judge judge-7b: 35 calls, 0 dimension(s) left unscored" in result.stdout

    scores = json.loads((out / "scores.json").read_text())
    assert scores["backend"] == "openai" and scores["no_answer"][0]["id"] == "Q3"
    assert [q["id"] for q in scores["questions"]] == [q.id for q in SUITE.questions if q.id != "Q3"]
    q2 = next(q for q in scores["questions"] if q["id"] == "Q2")
    assert q2["rubric_dims"]["D5"] == 1 and q2["judge"]["D5"] == {"score": 2, "reason": "ok"} and q2["dims"]["D5"] == 1
    assert scores["judge"]["calls"] == 7 * 5 and len(judge.requests) == 35
    assert scores["judge"]["unscored"] == 0

    # the human-scoring sheet shows the unanswered question for what it is
    assert run_molt("scores", "sheet", tmp_path / "runs" / "ported", "--id", "openai-claudio-source").returncode == 0
    assert "(no answer: HTTP 400" in (out / "scoring_sheet.csv").read_text(encoding="utf-8")


def test_backend_openai_needs_url_and_model(tmp_path):
    result = run_molt("eval", EXAMPLE / "molt.yaml", "--backend", "openai", "--runs-dir", tmp_path)
    assert result.returncode == 2 and "--backend openai needs --url" in result.stderr
    result = run_molt("eval", EXAMPLE / "molt.yaml", "--runs-dir", tmp_path)
    assert result.returncode == 2 and "no such run directory" in result.stderr


def test_no_answer_at_all_is_no_score_and_exits_non_zero(tmp_path):
    """Every request fails: scores.json has null averages (not 0/10), report.md says no answer was scored,
    and `molt eval` exits non-zero. The server answers one request at a time, as a CPU llama.cpp server does:
    --concurrency 1 keeps one in flight, and --timeout is the time each gets."""
    import threading
    import time

    busy, overlaps, lock = [0], [0], threading.Lock()
    first = SUITE.questions[0].question

    def respond(body, n):
        if body["messages"][-1]["content"] == first:
            return ("stall", 0.6)  # past --timeout: the client gives up (its retries overlap this handler)
        with lock:
            busy[0] += 1
            overlaps[0] = max(overlaps[0], busy[0])
        time.sleep(0.05)
        with lock:
            busy[0] -= 1
        return (400, {"error": {"message": "model not loaded"}})

    with serve(respond) as model:
        result = run_molt(
            "eval", EXAMPLE / "molt.yaml", "--backend", "openai", "--url", model.url, "--model", "gone",
            "--runs-dir", tmp_path / "runs", "--name", "dead", "--no-probes", "--concurrency", "1", "--timeout", "0.3",
        )  # fmt: skip
    assert result.returncode != 0
    assert "no answer was scored" in " ".join(result.stderr.split())
    assert overlaps[0] == 1
    scores = json.loads((tmp_path / "runs" / "dead" / "eval" / "openai-gone" / "scores.json").read_text())
    assert scores["answers"] == 0 and scores["average"] is None
    assert scores["dimensions"] == {d: None for d in ("D1", "D2", "D3", "D4", "D5")}
    reasons = {m["id"]: m["reason"] for m in scores["no_answer"]}
    assert len(reasons) == len(SUITE.questions) and "within 0.3 s" in reasons[SUITE.questions[0].id]
    assert "model not loaded" in reasons[SUITE.questions[1].id]

    assert run_molt("report", tmp_path / "runs" / "dead").returncode == 0
    report = (tmp_path / "runs" / "dead" / "report.md").read_text()
    assert "No answer was scored" in report and "0.00/10" not in report
