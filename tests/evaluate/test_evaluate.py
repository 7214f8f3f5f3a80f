"""`molt eval`: batched generation with the inference prompt, responses.jsonl and scores.json."""

import json
import re

from conftest import run_molt
from typed_results import assert_shape

from molting.card.persona import load_persona
from molting.evaluate.generate import generate_answers
from molting.evaluate.rubric import DIMENSIONS, Scores
from molting.evaluate.run import eval_run, load_for_eval
from molting.models.base_model import eos_token_ids


def test_eval_writes_responses_and_scores(trained_run):
    scores = eval_run(trained_run, show_progress=False)
    out = trained_run / "eval" / "final"
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    suite_rows = [r for r in rows if r["kind"] == "question"]
    assert [r["id"] for r in suite_rows] == [f"Q{i}" for i in range(1, 9)]
    assert [r["answer_id"] for r in suite_rows] == [f"Q{i}#0" for i in range(1, 9)]
    assert rows[: len(suite_rows)] == suite_rows, "suite answers first, probes after"
    assert {r["kind"] for r in rows[len(suite_rows) :]} == {"probe"}
    for r in rows:
        assert set(r) == {
            "id",
            "answer_id",
            "kind",
            "prompt",
            "response",
            "new_tokens",
            "finish_reason",
            "sample",
            "seed",
        }
        assert r["finish_reason"] in ("stop", "length") and 0 < r["new_tokens"] <= 24
    saved = json.loads((out / "scores.json").read_text())
    assert_shape(saved, Scores)  # every key molt eval writes is declared, with its type
    assert saved["average"] == scores["average"]
    assert saved["rubric"] == "v2" and set(saved["dimensions"]) == set(DIMENSIONS)
    assert [q["answer_id"] for q in saved["questions"]] == [r["answer_id"] for r in suite_rows]
    assert [q["answer_id"] for q in saved["probes"]] == [r["answer_id"] for r in rows if r["kind"] == "probe"]
    assert saved["samples"] == 1 and all(q["samples"] == 1 and q["ci95"] is None for q in saved["per_question"])
    assert -1 <= saved["similarity"]["persona_centroid_mean"] <= 1 and saved["similarity"]["reference_mean"] is not None
    for q in saved["questions"]:
        assert set(q["similarity"]) == {"reference", "persona_centroid"}
        assert q["total"] == sum(q["dims"].values())
        assert sum(2 - v for v in q["dims"].values()) == 0 or q["evidence"], "every lost point names evidence"


def test_untrained_base_is_evaluated_separately(trained_run):
    scores = eval_run(trained_run, use_adapter=False, show_progress=False)
    assert scores["eval_id"] == "base" and scores["model"] == "untrained base"
    assert (trained_run / "eval" / "base" / "responses.jsonl").is_file()


def test_batched_generation_matches_one_at_a_time(trained_run):
    """Left-padded batches must not change greedy answers (fp32)."""
    config, model, tokenizer, _ = load_for_eval(trained_run, use_adapter=True)
    persona = load_persona(config.persona)
    prompts = [
        [{"role": "system", "content": persona.system_prompts.inference}, {"role": "user", "content": q}]
        for q in ("Oi?", "Quem é o João?", "Me fala sobre você e o Molting.")
    ]
    eos = eos_token_ids(tokenizer, model)
    config.generation.batch_size = 3
    batched = generate_answers(model, tokenizer, prompts, config.generation, eos)
    config.generation.batch_size = 1
    single = generate_answers(model, tokenizer, prompts, config.generation, eos)
    assert batched == single


def test_eval_cli_prints_the_rubric_table(trained_run):
    result = run_molt("eval", trained_run, "--id", "cli")
    assert result.returncode == 0, result.stderr
    assert "Average" in result.stdout and (trained_run / "eval" / "cli" / "scores.json").is_file()
    # stderr is a pipe here, as in a CI log: the load and the answers still show progress, as plain lines
    assert "loading builtin:tiny (float32, cpu) …" in result.stderr
    assert re.search(r"^answering \(cli\): (\d+)/\1 answers \(100%\), .* elapsed$", result.stderr, re.M), result.stderr


def test_eval_of_a_missing_run_is_a_user_error(tmp_path):
    result = run_molt("eval", tmp_path / "nope")
    assert result.returncode == 2 and "no such run directory" in result.stderr
