"""The LLM judge against a real OpenAI-compatible HTTP server on 127.0.0.1: a good
judge, a judge capped by a deterministic detector, a judge that is down, stalled or returns garbage (the
dimension is left unscored with the reason, the evaluation goes on), the cache on a re-run, and the
response_format each call asks for: json_schema, and json_object then none from servers that refuse it."""

import json
import re
import socket

import jsonschema
import pytest
from conftest import EXAMPLE
from openai_server import serve

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.config import JudgeSettings
from molting.evaluate.judge import (
    VERDICT_SCHEMA,
    apply_judge,
    judge_messages,
    level_examples,
    parse_verdict,
    response_format_note,
)
from molting.evaluate.rubric import DIMENSIONS, score_responses


@pytest.fixture(scope="module")
def card():
    return load_persona(EXAMPLE / "persona.yaml")


@pytest.fixture(scope="module")
def suite(card):
    return load_suite(EXAMPLE / "suite.yaml", card)


def _rows(suite):
    clean = suite.by_id["Q1"].reference
    leaky = suite.by_id["Q2"].reference + "</s>\n<|user|>\nE você?"  # template tokens: rubric D4 = 0
    return [
        {"id": "Q1", "prompt": suite.by_id["Q1"].question, "response": clean, "finish_reason": "stop"},
        {"id": "Q2", "prompt": suite.by_id["Q2"].question, "response": leaky, "finish_reason": "stop"},
    ]


def _dim(body) -> str:
    return re.search(r"dimension (D\d)", body["messages"][1]["content"]).group(1)


def _judge(card, suite, url, tmp_path, rows=None, **settings):
    rows = rows or _rows(suite)
    scores = score_responses(card, suite.by_id, rows)
    settings = JudgeSettings(**{"url": url, "model": "judge-7b", "timeout": 5.0, "retries": 0, **settings})
    return apply_judge(scores, rows, card, suite.by_id, settings, tmp_path / "judge_cache", show_progress=False)


def test_a_good_judge_scores_every_dimension(card, suite, tmp_path):
    verdicts = {"D1": 2, "D2": 1, "D3": 2, "D4": 2, "D5": 2}

    def respond(body, n):
        dim = _dim(body)
        return json.dumps({"score": verdicts[dim], "reason": f"{dim} looks like this"})

    with serve(respond) as server:
        scores = _judge(card, suite, server.url, tmp_path)
    assert len(server.requests) == 2 * 5  # one call per answer and dimension
    assert all(r["body"]["temperature"] == 0.0 and r["body"]["model"] == "judge-7b" for r in server.requests)
    q1 = scores["questions"][0]
    assert q1["judge"]["D2"] == {"score": 1, "reason": "D2 looks like this"}
    assert q1["rubric_dims"] == {d: 2 for d in DIMENSIONS}  # the reference answer passes every detector
    assert q1["dims"] == verdicts and q1["total"] == 9
    assert scores["average"] == pytest.approx((q1["total"] + scores["questions"][1]["total"]) / 2)
    assert scores["rubric_only"]["average"] > scores["average"]
    assert scores["judge"]["model"] == "judge-7b" and scores["judge"]["unscored"] == 0


def test_a_detector_caps_the_judge(card, suite, tmp_path):
    with serve(lambda body, n: '{"score": 2, "reason": "fine"}') as server:
        scores = _judge(card, suite, server.url, tmp_path)
    q2 = scores["questions"][1]
    assert q2["judge"]["D4"] == {"score": 2, "reason": "fine"}  # what the judge said is kept …
    assert q2["rubric_dims"]["D4"] == 0 and q2["dims"]["D4"] == 0  # … but the template-token detector wins
    assert any(e["detector"] == "template_tokens" for e in q2["evidence"])


def test_judge_down_leaves_dimensions_unscored(card, suite, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free a moment ago: nothing listens there
    scores = _judge(card, suite, f"http://127.0.0.1:{port}/v1", tmp_path)
    for q in scores["questions"]:
        assert set(q["judge"]) == set(DIMENSIONS)
        assert all("cannot reach" in v["unscored"] for v in q["judge"].values())
        assert q["dims"] == q["rubric_dims"]  # nothing invented: rubric v1's scores stand
    assert scores["judge"]["unscored"] == 10


def test_stalled_judge_times_out_into_unscored(card, suite, tmp_path):
    with serve(lambda body, n: ("stall", 3)) as server:
        scores = _judge(card, suite, server.url, tmp_path, timeout=0.5, dims=["D1"])
    assert len(server.requests) == 2
    for q in scores["questions"]:
        assert set(q["judge"]) == {"D1"} and "within 0.5 s" in q["judge"]["D1"]["unscored"]
        assert q["dims"] == q["rubric_dims"]


def test_garbage_is_unscored_and_not_cached(card, suite, tmp_path):
    garbage = ["Score: 2. Looks good.", '{"score": 3, "reason": "great"}', '{"score": "2", "reason": "x"}']

    with serve(lambda body, n: garbage[n % 3]) as server:
        scores = _judge(card, suite, server.url, tmp_path, dims=["D3"])
        asked = len(server.requests)
        _judge(card, suite, server.url, tmp_path, dims=["D3"])
    reasons = [q["judge"]["D3"]["unscored"] for q in scores["questions"]]
    assert all(r.startswith("judge returned garbage") for r in reasons), reasons
    assert asked == 2 and len(server.requests) == 4  # garbage is asked again on the next run


def test_cache_answers_a_rerun_without_a_request(card, suite, tmp_path):
    with serve(lambda body, n: '{"score": 1, "reason": "meh"}') as server:
        first = _judge(card, suite, server.url, tmp_path, dims=["D1", "D5"])
        count = len(server.requests)
        again = _judge(card, suite, server.url, tmp_path, dims=["D1", "D5"])
        assert len(server.requests) == count == 4
        # another judge model is another cache entry
        _judge(card, suite, server.url, tmp_path, dims=["D1", "D5"], model="judge-70b")
        assert len(server.requests) == 8
    assert [q["judge"] for q in again["questions"]] == [q["judge"] for q in first["questions"]]


def test_prompt_has_the_card_and_an_example_per_level(card, suite):
    for dim in DIMENSIONS:
        examples = level_examples(card, dim, suite.by_id["Q1"])
        assert set(examples) == {0, 1, 2} and len(set(examples.values())) == 3
        content = judge_messages(card, dim, "Quem é o João?", suite.by_id["Q1"], "uma resposta")[1]["content"]
        for level in (0, 1, 2):
            assert f"{level} — " in content and json.dumps(examples[level], ensure_ascii=False) in content
        assert "Cláudio" in content and "<<<ANSWER\numa resposta\nANSWER>>>" in content
    assert "João é meu pai/filho/deus/criador" in level_examples(card, "D2")[0]  # the card's forbidden claim


def test_parse_verdict_is_strict():
    assert parse_verdict(' {"score": 0, "reason": "collapsed"}\n') == (0, "collapsed")
    for bad in [
        '```json\n{"score": 1, "reason": "x"}\n```',
        '{"score": 1}',
        '{"score": true, "reason": "x"}',
        '{"score": 1, "reason": "x", "extra": 1}',
        '{"score": 1, "reason": " "}',
        "[1]",
    ]:
        with pytest.raises(ValueError):
            parse_verdict(bad)


def test_report_shows_the_judge_and_unanswered_questions(card, suite, tmp_path):
    from molting.io import write_json_atomic, write_jsonl_atomic
    from molting.report.markdown import build_report
    from molting.report.run_record import read_run

    with serve(lambda body, n: '{"score": 1, "reason": "voz genérica"}') as server:
        scores = _judge(card, suite, server.url, tmp_path, dims=["D3"])
    scores.update({"eval_id": "openai-x", "model": "x", "no_answer": [{"id": "Q3", "reason": "HTTP 400 from server"}]})
    rows = _rows(suite)
    rows.insert(1, {"id": "Q3", "prompt": suite.by_id["Q3"].question, "response": None, "error": "HTTP 400"})
    out = tmp_path / "run" / "eval" / "openai-x"
    write_jsonl_atomic(out / "responses.jsonl", rows)
    write_json_atomic(out / "scores.json", scores)
    report = build_report(read_run(tmp_path / "run"))
    assert "LLM judge `judge-7b` (judge-v1) on D3: 2 calls, 0 left unscored" in report
    assert "No answer from the server for Q3: HTTP 400 from server" in report
    assert "  - judge D3=1: voz genérica" in report
    q2_line = next(line for line in report.splitlines() if line.startswith("- **Q2**"))
    assert "&lt;/s&gt;" in q2_line  # Q2's own answer, not shifted by the unanswered Q3


def test_judge_section_of_the_config_is_checked(project):
    from molting.config import load_run_config
    from molting.errors import UserError

    config = load_run_config(
        project / "molt.yaml", ["judge.url=http://127.0.0.1:9/v1", "judge.model=j", "judge.dims=[D2]"]
    )
    assert config.judge.enabled and config.judge.dims == ["D2"] and config.judge.api_key_env == "OPENAI_API_KEY"
    assert not load_run_config(project / "molt.yaml").judge.enabled  # off unless a url is set
    assert load_run_config(project / "molt.yaml").judge.response_format == "auto"
    # a config (or a trained run's config.yaml) written with the older switch still loads, and means the same
    assert load_run_config(project / "molt.yaml", ["judge.json_mode=true"]).judge.response_format == "json_object"
    assert load_run_config(project / "molt.yaml", ["judge.json_mode=false"]).judge.response_format == "auto"
    for bad, message in [
        (["judge.url=http://127.0.0.1:9/v1"], "judge.model is not"),
        (["judge.url=127.0.0.1:9", "judge.model=j"], "must start with http"),
        (["judge.dims=[D9]"], "unknown dimension"),
        (["judge.response_format=json"], "expected one of 'auto', 'json_schema', 'json_object', 'none'"),
        (["judge.json_mode=true", "judge.response_format=json_schema"], "keep response_format alone"),
    ]:
        with pytest.raises(UserError, match=message) as e:
            load_run_config(project / "molt.yaml", bad)
        assert f"{project / 'molt.yaml'}" in str(e.value) and "judge." in str(e.value)


def test_molt_score_with_a_judge(suite, tmp_path):
    from conftest import run_molt

    responses = tmp_path / "answers.jsonl"
    rows = [{"id": r["id"], "response": r["response"]} for r in _rows(suite)]
    responses.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "scores.json"
    with serve(lambda body, n: '{"score": 1, "reason": "meh"}') as server:
        result = run_molt(
            "score", "--no-fluency", "--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml",
            "--responses", responses, "--out", out, "--judge-url", server.url, "--judge-model", "judge-7b",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert len(server.requests) == 10 and scores["judge"]["model"] == "judge-7b"
    assert scores["questions"][0]["dims"] == {d: 1 for d in DIMENSIONS}
    assert (tmp_path / "judge_cache").is_dir()


def test_a_verdict_copying_the_prompt_is_unscored(card, suite, tmp_path):
    # What a small judge in JSON mode really answered (Gemma 3 270M on llama-cpp-python): the prompt's own
    # example reply, or its placeholder, for most answers. Copies score nothing; the rubric's score stands.
    copies = {
        "D1": '{"score": 0, "reason": "one short sentence"}',
        "D2": '{"score": 0, "reason": "..."}',
        "D3": '{"score": 1, "reason": "One short sentence."}',
        "D4": json.dumps({"score": 0, "reason": level_examples(card, "D4", suite.by_id["Q1"])[0]}),
    }

    def respond(body, n):
        dim = _dim(body)
        return copies.get(dim, '{"score": 1, "reason": "the answer stops short of the card\'s facts"}')

    with serve(respond) as server:
        scores = _judge(card, suite, server.url, tmp_path, rows=_rows(suite)[:1], json_mode=True)
        asked = len(server.requests)
        _judge(card, suite, server.url, tmp_path, rows=_rows(suite)[:1], json_mode=True)
    assert server.requests[0]["body"]["response_format"] == {"type": "json_object"}
    q1 = scores["questions"][0]
    for dim in copies:
        assert "copies the prompt's example" in q1["judge"][dim]["unscored"], q1["judge"][dim]
    assert q1["judge"]["D5"] == {"score": 1, "reason": "the answer stops short of the card's facts"}
    assert q1["dims"] == {**q1["rubric_dims"], "D5": 1}  # no copied 0 pulls the average down
    assert scores["judge"]["unscored"] == 4
    assert asked == 5 and len(server.requests) == 5 + 4  # copies are not cached: asked again next time


def test_judge_timeout_and_concurrency_reach_a_one_at_a_time_server(suite, tmp_path):
    """A CPU server answers one call at a time: `--judge-concurrency 1` keeps one call in flight, and
    `--judge-timeout` is the time each call gets."""
    import threading
    import time

    from molting.evaluate.score_files import score_file

    busy, overlaps, lock = [0], [0], threading.Lock()

    def respond(body, n):
        with lock:
            busy[0] += 1
            overlaps[0] = max(overlaps[0], busy[0])
        time.sleep(0.4)
        with lock:
            busy[0] -= 1
        return '{"score": 2, "reason": "clean"}'

    responses = tmp_path / "answers.jsonl"
    responses.write_text(json.dumps({"id": "Q1", "response": suite.by_id["Q1"].reference}, ensure_ascii=False) + "\n")
    files = (EXAMPLE / "persona.yaml", EXAMPLE / "suite.yaml", responses)
    with serve(respond) as server:
        scores = score_file(*files, tmp_path / "a.json", server.url, "judge-7b", judge_concurrency=1)
        assert overlaps[0] == 1 and len(server.requests) == 5 and scores["judge"]["unscored"] == 0
        scores = score_file(*files, tmp_path / "b" / "b.json", server.url, "judge-7b", judge_timeout=0.1)
    assert all("within 0.1 s" in v["unscored"] for v in scores["questions"][0]["judge"].values())


def test_judge_limits_from_the_command_line_override_the_config(project):
    from molting.config import load_run_config
    from molting.errors import UserError
    from molting.evaluate.judge import judge_for_run
    from molting.train.sft import save_resolved_config

    run = project / "runs" / "r"
    save_resolved_config(
        load_run_config(project / "molt.yaml", ["judge.url=http://127.0.0.1:9/v1", "judge.model=j"]), run
    )
    settings = judge_for_run(run, timeout=300.0, concurrency=1)
    assert (settings.timeout, settings.concurrency, settings.url) == (300.0, 1, "http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="concurrency must be at least 1"):
        judge_for_run(run, concurrency=0)


def _verdict_unless_refused(refuse: set[str]):
    """A server that answers 400, naming the response_format, to the forms in `refuse`; a verdict otherwise."""

    def respond(body, n):
        form = body.get("response_format", {}).get("type", "none")
        if form in refuse:
            return (400, {"error": {"message": f"response_format type {form} is not supported", "type": "invalid"}})
        return json.dumps({"score": 2, "reason": f"{_dim(body)} is as the card says"})

    return respond


def _forms(server) -> list[str]:
    return [r["body"].get("response_format", {}).get("type", "none") for r in server.requests]


def test_the_judge_asks_for_the_verdicts_json_schema(card, suite, tmp_path):
    with serve(_verdict_unless_refused(set())) as server:
        scores = _judge(card, suite, server.url, tmp_path)
    assert len(server.requests) == 10 and _forms(server) == ["json_schema"] * 10
    sent = server.requests[0]["body"]["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "judge_verdict", "schema": VERDICT_SCHEMA, "strict": True},
    }
    assert scores["judge"]["response_format"] == "json_schema" and scores["judge"]["response_format_refused"] == []
    assert scores["judge"]["unscored"] == 0
    # the schema admits exactly what parse_verdict accepts
    jsonschema.validate({"score": 1, "reason": "x"}, VERDICT_SCHEMA)
    for wrong in ({"score": 3, "reason": "x"}, {"score": 1}, {"score": 1, "reason": "x", "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, VERDICT_SCHEMA)


def test_a_server_refusing_json_schema_gets_json_object_for_the_rest_of_the_run(card, suite, tmp_path):
    with serve(_verdict_unless_refused({"json_schema"})) as server:
        scores = _judge(card, suite, server.url, tmp_path)
    # one refused call settles it: json_schema is not asked again on every call
    assert _forms(server) == ["json_schema"] + ["json_object"] * 10
    assert scores["judge"]["unscored"] == 0 and scores["judge"]["response_format"] == "json_object"
    (refused,) = scores["judge"]["response_format_refused"]
    assert refused["response_format"] == "json_schema"
    assert refused["reason"].startswith("HTTP 400") and "json_schema is not supported" in refused["reason"]
    note = response_format_note(scores["judge"])
    assert note.startswith("response_format json_object (the server refused json_schema: HTTP 400")


def test_a_server_refusing_both_forms_is_asked_with_none(card, suite, tmp_path):
    with serve(_verdict_unless_refused({"json_schema", "json_object"})) as server:
        scores = _judge(card, suite, server.url, tmp_path, dims=["D1", "D2"])
        first = len(server.requests)
        again = _judge(card, suite, server.url, tmp_path, dims=["D1", "D2"])
    assert _forms(server)[:first] == ["json_schema", "json_object"] + ["none"] * 4
    assert "response_format" not in server.requests[-1]["body"]
    assert scores["judge"]["response_format"] == "none" and scores["judge"]["unscored"] == 0
    assert [r["response_format"] for r in scores["judge"]["response_format_refused"]] == ["json_schema", "json_object"]
    # the verdicts were cached whatever form they came in: a rerun asks nothing, and says so
    assert len(server.requests) == first
    assert again["judge"]["response_format"] is None and response_format_note(again["judge"]).startswith("every")


def test_a_chosen_response_format_is_not_replaced(card, suite, tmp_path):
    with serve(_verdict_unless_refused({"json_schema"})) as server:
        scores = _judge(card, suite, server.url, tmp_path, dims=["D1"], response_format="json_schema")
    assert _forms(server) == ["json_schema", "json_schema"]
    assert all("HTTP 400" in q["judge"]["D1"]["unscored"] for q in scores["questions"])
    assert scores["judge"]["response_format_refused"] == []
