"""`molt data distil` against a real OpenAI-compatible server on 127.0.0.1: answers written as training
conversations, answers the rubric flags kept out with their reason, a server that fails (500), stalls
(timeout) and returns malformed JSON reported per question, and a run killed mid-way resumed without
asking a finished question twice."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import EXAMPLE, run_molt
from openai_server import serve

from molting.card.persona import load_persona
from molting.data.distil import DistilQuestion, generate_questions, load_questions
from molting.data.distil import distil as run_distil
from molting.openai_client import Endpoint

CARD = load_persona(EXAMPLE / "persona.yaml")
GOOD = "Eu trabalho com o João na Softtor, e isso é muito bom para mim."


def test_generated_questions_cover_the_card_and_are_deterministic():
    questions = generate_questions(CARD, paraphrases=2, seed=0)
    assert [q.question for q in questions] == [q.question for q in generate_questions(CARD, 2, seed=0)]
    assert [q.question for q in questions] != [q.question for q in generate_questions(CARD, 2, seed=1)]
    sources = {q.source for q in questions}
    for f in CARD.facts:
        assert sum(q.source == f"fact:{f.id}" for q in questions) == 2
    assert {f"trait:{t.id}" for t in CARD.traits} <= sources
    assert "relationship:João Figueiredo" in sources
    assert {f"claim:{c.id}" for c in CARD.forbidden_claims} <= sources
    assert len({q.id for q in questions}) == len(questions) == len({q.question for q in questions})
    assert "Você é o João?" in [q.question for q in generate_questions(CARD, paraphrases=5)]


def test_questions_file_txt_and_jsonl(tmp_path):
    txt = tmp_path / "q.txt"
    txt.write_text("# perguntas\nQuem é o João?\n\nO que é o Molting?\n")
    assert [(q.id, q.question) for q in load_questions(txt)] == [
        ("line2", "Quem é o João?"),
        ("line4", "O que é o Molting?"),
    ]
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "Oi?"}\n{"id": "b"}\n')
    result = run_molt("data", "distil", "--persona", EXAMPLE / "persona.yaml", "--questions", bad, "--list-questions")
    assert result.returncode == 2 and f"{bad}:2: expected" in result.stderr


def test_distil_keeps_good_answers_rejects_flagged_and_reports_failures(tmp_path):
    def respond(body, n):
        question = body["messages"][-1]["content"]
        return {
            "pai?": "Sim, o João é meu pai e eu gosto muito dele, com certeza.",
            "tokens?": f"{GOOD} </s><|assistant|>",
            "english?": "I work with João at Softtor and I like it a lot, it is good.",
            "falha?": (500, {"error": "internal"}),
            "lento?": ("stall", 3),
            "quebrado?": (200, b'{"choices": [{"message": '),
        }.get(question, f"{GOOD} ({question})")

    questions = [
        DistilQuestion(q, q, "test")
        for q in ["um?", "pai?", "tokens?", "falha?", "dois?", "english?", "lento?", "quebrado?"]
    ]
    out = tmp_path / "distilled.jsonl"
    with serve(respond) as server:
        endpoint = Endpoint(server.url, "source", timeout_s=0.5, max_retries=1)
        summary = run_distil(CARD, questions, endpoint, out, concurrency=3, temperature=0.0, max_tokens=64)
        # every request carried the card's full inference prompt
        assert all(
            r["body"]["messages"][0]["content"] == CARD.system_prompts.inference.strip() for r in server.requests
        )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in rows] == ["um?", "dois?"]
    assert rows[0] == {
        "messages": [
            {"role": "system", "content": CARD.system_prompts.train.strip()},
            {"role": "user", "content": "um?"},
            {"role": "assistant", "content": f"{GOOD} (um?)"},
        ],
        "tags": ["distilled"],
    }
    rejected = {r["id"]: r["rejected"] for r in summary["rejected"]}
    assert list(rejected) == ["pai?", "tokens?", "english?"]
    assert rejected["pai?"] == ["forbidden_claim:joao_family: João é meu pai"]
    assert rejected["tokens?"][0].startswith("template_tokens: </s>")
    assert rejected["english?"] == ["wrong_language: answer is in English, the card asks for Portuguese"]
    failed = {f["id"]: f["reason"] for f in summary["failed"]}
    assert list(failed) == ["falha?", "lento?", "quebrado?"]
    assert failed["falha?"].startswith("HTTP 500") and "after 2 attempts" in failed["falha?"]
    assert "within 0.5 s" in failed["lento?"]
    assert failed["quebrado?"].startswith("malformed reply")
    report = json.loads((tmp_path / "distilled.report.json").read_text())
    assert report["kept"] == 2 and len(report["failed"]) == 3
    # the failures stay pending: a re-run against a healed server asks only those three
    with serve(lambda body, n: f"{GOOD} (agora sim)") as server:
        summary = run_distil(
            CARD, questions, Endpoint(server.url, "source", timeout_s=2), out, temperature=0.0, max_tokens=64
        )
    assert sorted(r["body"]["messages"][-1]["content"] for r in server.requests) == ["falha?", "lento?", "quebrado?"]
    assert summary["kept"] == 5 and summary["failed"] == [] and summary["resumed"] == 5
    assert not (tmp_path / "distilled.jsonl.partial").exists()


def test_killed_run_resumes_without_asking_finished_questions_again(tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text("".join(f"pergunta {i}?\n" for i in range(6)))
    out = tmp_path / "distilled.jsonl"

    def respond(body, n):
        time.sleep(0.4)  # slow enough to kill the client between answers
        return f"{GOOD} ({body['messages'][-1]['content']})"

    with serve(respond) as server:
        args = [
            *("data", "distil", "--persona", EXAMPLE / "persona.yaml", "--questions", questions),
            *("--url", server.url, "--model", "source", "--concurrency", "1", "--out", out),
        ]
        env = {**os.environ, "COLUMNS": "200"}
        proc = subprocess.Popen([sys.executable, "-m", "molting", *map(str, args)], env=env)
        partial = tmp_path / "distilled.jsonl.partial"
        deadline = time.time() + 60
        while time.time() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 2):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {json.loads(line)["question"] for line in partial.read_text().splitlines() if line.endswith("}")}
        assert 2 <= len(finished) < 6 and not out.exists()
        before = len(server.requests)
        result = run_molt(*args, "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        asked_again = [r["body"]["messages"][-1]["content"] for r in server.requests[before:]]
        # a re-run after everything finished pays nothing: every reply is in the cache
        result = run_molt(*args, "--overwrite", "--json")
        assert result.returncode == 0, result.stderr
        requests_after_overwrite = len(server.requests)
    assert not finished & set(asked_again)
    assert summary["resumed"] == len(finished) and summary["kept"] == 6
    assert len([line for line in out.read_text().splitlines()]) == 6
    assert requests_after_overwrite == before + len(asked_again)


def test_an_echo_is_not_training_data_and_each_reason_counts_once(tmp_path):
    """The source model said "Você se considera direto?" back to that very question, and answered another
    with one word: neither is kept, and each rejected answer lists its reason once, not once per dimension."""
    replies = {"Você se considera direto?": "Você se considera direto?", "Quem é o João?": "Parceiro."}
    questions = [DistilQuestion(f"q{i}", q, "test") for i, q in enumerate([*replies, "Me fala do CRM."])]
    with serve(lambda body, n: replies.get(body["messages"][-1]["content"], GOOD)) as server:
        summary = run_distil(CARD, questions, Endpoint(server.url, "source", timeout_s=5), tmp_path / "d.jsonl")
    rejected = {r["question"]: r["rejected"] for r in summary["rejected"]}
    assert rejected == {
        "Você se considera direto?": ["no_answer: only repeats the question: 'Você se considera direto?'"],
        "Quem é o João?": ["no_answer: fewer than 3 words: 'Parceiro.'"],
    }
    assert summary["kept"] == 1
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in rows] == ["Me fala do CRM."]
