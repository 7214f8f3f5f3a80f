"""Where preference pairs come from: a pair saved in the dashboard records its run, eval, answer and time, and
one whose right answer makes (or denies) a forbidden claim of the card is refused; `load_pairs` reads the
`origin` and files without it; `molt augment --from-eval` lists its pairs by source; `molt check` counts the
pairs people wrote against the generated ones, and flags a forbidden claim on the chosen side."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import EXAMPLE, FAST, run_molt, set_args

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.data.augment import augment
from molting.data.preference_pairs import load_pairs
from molting.errors import UserError
from molting.evaluate.human_scores import save_preference_pair
from molting.evaluate.rubric import score_responses

DENIAL = "Não, o João não é meu filho: é meu parceiro de trabalho."


@pytest.fixture(scope="module")
def persona():
    return load_persona(EXAMPLE / "persona.yaml")


def evaluated_run(root, persona):
    """RUN/eval/final with one failed answer (a forbidden claim) and one good one, scored by rubric v1."""
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    ev = root / "demo" / "eval" / "final"
    ev.mkdir(parents=True)
    rows = [
        {"id": "Q1", "answer_id": "Q1#0", "prompt": "Quem é o João?", "response": "O João é meu filho."},
        {"id": "Q2", "answer_id": "Q2#0", "prompt": "O que é o Molting?", "response": suite.by_id["Q2"].reference},
    ]
    (ev / "responses.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (ev / "scores.json").write_text(json.dumps(score_responses(persona, suite.by_id, rows)))
    return root / "demo", ev


def test_a_saved_pair_records_its_origin_and_a_forbidden_claim_is_refused(persona, tmp_path):
    _, ev = evaluated_run(tmp_path, persona)
    for chosen, says in (("Sim, o João é meu filho.", "makes"), (DENIAL, "denies")):
        with pytest.raises(UserError) as refused:
            save_preference_pair(ev, "Q1#0", persona, "Quem é o João?", "O João é meu filho.", chosen)
        assert f"{says} forbidden claim 'joao_family'" in str(refused.value), str(refused.value)
        assert not (ev / "preference_pairs.jsonl").exists(), "a refused pair was written"

    pair = save_preference_pair(
        ev, "Q1#0", persona, "Quem é o João?", "O João é meu filho.", "O João é meu parceiro de trabalho."
    )
    saved = json.loads((ev / "preference_pairs.jsonl").read_text())
    assert saved == pair and saved["source"] == "dashboard" and saved["id"] == "demo/final/Q1#0"
    origin = saved["origin"]
    assert {k: origin[k] for k in ("run", "eval", "answer_id")} == {"run": "demo", "eval": "final", "answer_id": "Q1#0"}
    when = datetime.strptime(origin["saved"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(when - datetime.now(UTC)) < timedelta(minutes=5)
    assert saved["prompt"][0] == {"role": "system", "content": persona.system_prompts.inference.strip()}


def test_load_pairs_reads_the_origin_and_files_without_it(tmp_path):
    good = {
        "prompt": [{"role": "user", "content": "Quem é o João?"}],
        "chosen": [{"role": "assistant", "content": "Meu colega."}],
        "rejected": [{"role": "assistant", "content": "Meu filho."}],
    }
    origin = {"run": "demo", "eval": "final", "answer_id": "Q1#0", "saved": "2026-11-22T00:20:05Z"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "source": "dashboard", "origin": origin}) + "\n")
    older, newer = load_pairs(path, "Sou o Cláudio.")
    assert older.origin is None and older.source == "" and newer.origin == origin and newer.source == "dashboard"

    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "origin": "the dashboard"}) + "\n")
    with pytest.raises(UserError, match=r"pairs.jsonl:2: origin: expected an object"):
        load_pairs(path, "Sou o Cláudio.")


def test_molt_augment_lists_the_pairs_it_takes_from_each_source(project, persona, tmp_path):
    run, ev = evaluated_run(tmp_path, persona)
    save_preference_pair(ev, "Q2#0", persona, "Você é o João?", "Sim, sou o João.", "Sou o Cláudio, colega do João.")
    result = run_molt("augment", project / "molt.yaml", "--from-eval", run, "--out", tmp_path / "out", check=True)
    card = augment(persona, tmp_path / "card-only")["pair_count"]
    lines = result.stdout.splitlines()
    assert f"wrote {tmp_path / 'out' / 'pairs.jsonl'} ({card + 2} pairs)" in lines
    assert any(line.split()[:2] == [str(card), "card"] and "generated from the card" in line for line in lines)
    assert any(line.split()[:2] == ["1", "eval"] and "generated from failed answers" in line for line in lines)
    assert any(line.split()[:2] == ["1", "dashboard"] and "written by a person" in line for line in lines)
    assert "final: 1 pair a person saved in the dashboard" in result.stdout
    pairs = [json.loads(line) for line in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    assert [p["origin"]["run"] for p in pairs if p["source"] != "card"] == ["demo", "demo"]


def test_molt_check_counts_pairs_from_people_and_flags_a_claim_on_the_chosen_side(project, persona, tmp_path):
    augment(persona, project, seed=0)  # project/pairs.jsonl: the card's pairs
    pairs = project / "pairs.jsonl"
    generated = len(pairs.read_text().splitlines())
    # a pair a person saved before the dashboard refused such answers: its right answer denies a claim
    older = {
        "prompt": [{"role": "user", "content": "O João é seu filho?"}],
        "chosen": [{"role": "assistant", "content": DENIAL}],
        "rejected": [{"role": "assistant", "content": "Sim, é meu filho."}],
        "source": "dashboard",
        "id": "demo/final/Q1#0",
    }
    pairs.write_text(pairs.read_text() + json.dumps(older, ensure_ascii=False) + "\n")
    overrides = FAST + ["train.method=sft+dpo", "preference_data=pairs.jsonl"]
    result = run_molt("check", project / "molt.yaml", *set_args(overrides), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    row = next(line for line in result.stdout.splitlines() if "preference pairs" in line)
    assert f"{generated + 1}: 1 from people, {generated} generated" in row, row
    (written,) = (tmp_path / "runs").glob("*/preflight.json")
    report = json.loads(written.read_text())
    assert report["preference"]["from_people"] == 1 and report["preference"]["generated"] == generated
    errors = [f["message"] for f in report["findings"] if f["level"] == "error"]
    assert len(errors) == 1, errors
    assert f"pairs.jsonl:{generated + 1}: the chosen answer denies forbidden claim 'joao_family'" in errors[0]
