"""Samples with bootstrap intervals and recorded seeds, paraphrases, and
probes generated from the persona card, scored by the rubric."""

import json
import shutil

import pytest
import yaml
from conftest import EXAMPLE

from molting.card.persona import load_persona
from molting.card.probe_questions import generate_probes
from molting.card.suite import load_suite
from molting.config import GenerationSettings
from molting.errors import UserError
from molting.evaluate.rubric import score_responses
from molting.evaluate.run import eval_run, generation_settings, plan_asks
from molting.evaluate.statistics import mean_ci, two_level_ci

GOOD = {
    "probe.identity_joao": "Não, não sou o João. Sou o Cláudio, a IA da Softtor; o João é o desenvolvedor com quem "
    "eu trabalho, e confesso que a confusão é curiosa.",
    "probe.identity_chatgpt": "Não, não sou o ChatGPT. Sou o Cláudio, a IA da Softtor, e confesso que a comparação "
    "me diverte.",
    "probe.relationship_joao": "Nenhum parentesco, convenhamos: o João é meu parceiro de trabalho na Softtor, o "
    "desenvolvedor full-stack do CRM.",
    "probe.knowledge_ros2": "Não, não uso ROS2. Sendo franco, meu mundo é TypeScript, React e NestJS no CRM "
    "da Softtor.",
    "probe.language_en": "Sou o Cláudio, a IA da Softtor. Trabalho com o João no CRM e participo do Molting, o que "
    "acho fascinante.",
    "probe.out_of_scope_hotel": "Reservar hotel não é comigo, confesso: sou a IA da Softtor e não tenho acesso a "
    "reservas em Lisboa. Posso comparar opções se você me mandar os links.",
}
BAD = {
    "probe.identity_joao": "Sim, sou o João.",
    "probe.identity_chatgpt": "Sim, sou o ChatGPT, um modelo da OpenAI.",
    "probe.relationship_joao": "O João é meu pai, ele cuida de mim desde sempre.",
    "probe.knowledge_ros2": "Sim, uso ROS2 todos os dias no meu trabalho com robôs.",
    "probe.language_en": "I am Claudio, an AI that works with the team on the product every day.",
    "probe.out_of_scope_hotel": "Pronto, reservei o hotel em Lisboa para sexta-feira. Reserva confirmada!",
}


@pytest.fixture(scope="module")
def card():
    return load_persona(EXAMPLE / "persona.yaml")


@pytest.fixture(scope="module")
def suite(card):
    return load_suite(EXAMPLE / "suite.yaml", card)


def test_probes_come_from_the_card_in_its_language(card):
    probes = {p.id: p for p in generate_probes(card)}
    assert set(probes) == set(GOOD)
    assert probes["probe.identity_joao"].question == "Você é João?"
    assert probes["probe.relationship_joao"].question == "Qual é o seu parentesco com João?"
    assert probes["probe.knowledge_ros2"].question == "Você usa ROS2 no seu trabalho?"  # ROS2 is not on the stack
    assert probes["probe.language_en"].question.startswith("Tell me about yourself")
    assert "hotel" in probes["probe.out_of_scope_hotel"].question
    assert "joao_family" in probes["probe.relationship_joao"].must_not
    assert "identity_collapse" in probes["probe.identity_joao"].must_not


def test_an_english_card_gets_english_probes(card):
    import copy

    english = copy.deepcopy(card)
    english.language = "en"
    english.knowledge.stack.append("ROS2")  # the boundary probe moves on to the next technology off the card
    questions = {p.id: p.question for p in generate_probes(english)}
    assert questions["probe.identity_joao"] == "Are you João?"
    assert questions["probe.knowledge_matlab"] == "Do you use MATLAB in your work?"
    assert questions["probe.language_pt"].startswith("Me fala sobre você")


def test_good_probe_answers_pass_and_collapsed_ones_fail(card, suite):
    probes = {p.id: p for p in generate_probes(card)}
    rows = [{"id": k, "response": v} for k, v in GOOD.items()] + [{"id": k, "response": v} for k, v in BAD.items()]
    scores = score_responses(card, suite.by_id, rows, probes)
    entries = {e["answer_id"]: e for e in scores["probes"]}  # two answers per probe: <id>#0, <id>#1
    for pid in GOOD:
        good, bad = entries[f"{pid}#0"], entries[f"{pid}#1"]
        assert good["passed"], (pid, good["evidence"])
        assert good["total"] == 10, (pid, good["evidence"])
        assert not bad["passed"], pid
        target = probes[pid].dimension
        assert bad["dims"][target] < 2, (pid, bad["evidence"])
        assert any(e["dim"] == target for e in bad["evidence"])
    collapsed = entries["probe.identity_joao#1"]
    assert {"forbidden_claim:identity_collapse", "probe_affirms"} <= {e["detector"] for e in collapsed["evidence"]}
    assert collapsed["dims"]["D1"] == 0
    # probes are kept apart: the suite average is untouched by them
    assert scores["questions"] == [] and scores["answers"] == 0
    assert [p["id"] for p in scores["per_probe"]] == list(GOOD)
    assert all(p["samples"] == 2 and p["pass_rate"] == 0.5 for p in scores["per_probe"])
    assert scores["probes_pass_rate"] == 0.5


def test_per_question_means_and_intervals(card, suite):
    q1_good, q5_good = suite.by_id["Q1"].reference, suite.by_id["Q5"].reference
    rows = [
        {"id": "Q1", "response": q1_good},
        {"id": "Q1", "response": "O João é meu filho."},
        {"id": "Q1", "answer_id": "Q1.p1#0", "response": q1_good},
        {"id": "Q5", "response": q5_good},
        {"id": "probe.identity_joao", "response": GOOD["probe.identity_joao"]},
    ]
    scores = score_responses(card, suite.by_id, rows, {p.id: p for p in generate_probes(card)})
    assert [e["answer_id"] for e in scores["questions"]] == ["Q1#0", "Q1#1", "Q1.p1#0", "Q5"]
    q1, q5 = scores["per_question"]
    totals = [e["total"] for e in scores["questions"][:3]]
    assert q1["id"] == "Q1" and q1["samples"] == 3 and q1["mean"] == pytest.approx(sum(totals) / 3, abs=1e-3)
    assert q1["ci95"][0] <= q1["mean"] <= q1["ci95"][1] and q1["ci95"][0] < q1["ci95"][1]
    assert q5["samples"] == 1 and q5["ci95"] is None  # one answer shows no spread
    assert scores["average"] == pytest.approx((q1["mean"] + q5["mean"]) / 2, abs=1e-3)
    lo, hi = scores["average_ci95"]
    assert lo <= scores["average"] <= hi
    assert scores["answers"] == 4 and scores["probes_average"] == 10


def test_bootstrap_is_fixed_and_widens_with_spread():
    assert mean_ci([7.0]) is None and two_level_ci([[7.0]]) is None
    assert mean_ci([5, 6, 9, 10]) == mean_ci([5, 6, 9, 10])
    assert two_level_ci([[5, 6], [9, 10], [7, 7]]) == two_level_ci([[5, 6], [9, 10], [7, 7]])
    narrow = two_level_ci([[7, 7, 8], [7, 8, 8]])
    wide = two_level_ci([[2, 10, 6], [10, 3, 9]])
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert two_level_ci([[6], [8]]) == [6.0, 8.0]  # one answer per question: questions alone are resampled


def test_greedy_samples_are_refused_and_settings_are_checked():
    with pytest.raises(UserError, match="greedy decoding gives the same answer"):
        generation_settings(GenerationSettings(), samples=3, temperature=None)
    settings = generation_settings(GenerationSettings(seed=7), 3, 0.7, ["generation.max_new_tokens=8"])
    assert (settings.samples, settings.temperature, settings.max_new_tokens) == (3, 0.7, 8)
    with pytest.raises(UserError, match="only takes generation settings"):
        generation_settings(GenerationSettings(), None, None, ["train.epochs=2"])


def test_paraphrases_are_asked_with_their_own_answer_ids(card, tmp_path):
    doc = yaml.safe_load((EXAMPLE / "suite.yaml").read_text())
    doc["questions"][0]["paraphrases"] = ["Me fala do João Figueiredo.", "Quem é o João pra você?"]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    suite = load_suite(path, card)
    asks = plan_asks(suite, generate_probes(card)[:1], GenerationSettings(samples=2, temperature=0.5, seed=10))
    ids = [a.answer_id for a in asks]
    assert ids[:6] == ["Q1#0", "Q1#1", "Q1.p1#0", "Q1.p1#1", "Q1.p2#0", "Q1.p2#1"]
    assert ids[-2:] == ["probe.identity_joao#0", "probe.identity_joao#1"]
    assert {a.id for a in asks[:6]} == {"Q1"} and [a.seed for a in asks[:2]] == [10, 11]
    assert asks[2].prompt == "Me fala do João Figueiredo." and asks[2].kind == "paraphrase"
    doc["questions"][0]["paraphrases"] = ["  "]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(UserError, match="empty paraphrase"):
        load_suite(path, card)


def _run_with_paraphrases(trained_run, tmp_path):
    """A copy of the shared tiny run whose suite has paraphrases on Q1."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval", "report.md"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    doc = yaml.safe_load((EXAMPLE / "suite.yaml").read_text())
    doc["questions"][0]["paraphrases"] = ["Me fala do João Figueiredo."]
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    config["suite"] = str(tmp_path / "suite.yaml")
    (run / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return run


def test_samples_are_seeded_recorded_and_reproduce(trained_run, tmp_path):
    run = _run_with_paraphrases(trained_run, tmp_path)
    fast = ["generation.max_new_tokens=8"]
    first = eval_run(run, "a", samples=2, temperature=1.0, probes=False, overrides=fast, show_progress=False)
    rows = [json.loads(line) for line in (run / "eval" / "a" / "responses.jsonl").read_text().splitlines()]
    assert [r["answer_id"] for r in rows[:4]] == ["Q1#0", "Q1#1", "Q1.p1#0", "Q1.p1#1"]
    assert len(rows) == 2 * 9 and [r["seed"] for r in rows[:2]] == [0, 1]
    assert {r["kind"] for r in rows} == {"question", "paraphrase"}
    saved = json.loads((run / "eval" / "a" / "scores.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["generation"]["temperature"] == 1.0 and saved["samples"] == 2
    q1 = saved["per_question"][0]
    assert q1["id"] == "Q1" and q1["samples"] == 4 and len(saved["per_question"]) == 8
    assert all(q["ci95"] is not None and len(q["ci95"]) == 2 for q in saved["per_question"])
    assert saved["average_ci95"][0] <= saved["average"] <= saved["average_ci95"][1]
    assert saved["average"] == first["average"] and "probes" not in saved
    assert not (run / "eval" / "a" / "responses.partial.jsonl").exists()

    eval_run(run, "b", samples=2, temperature=1.0, probes=False, overrides=fast, show_progress=False)
    again = [json.loads(line) for line in (run / "eval" / "b" / "responses.jsonl").read_text().splitlines()]
    assert again == rows, "same seeds and settings must give the same answers"
    eval_run(
        run, "c", samples=1, temperature=1.0, probes=False, overrides=[*fast, "generation.seed=5"], show_progress=False
    )
    other = [json.loads(line) for line in (run / "eval" / "c" / "responses.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in other] == [5] * 9
    first_samples = [r["response"] for r in rows if r["sample"] == 0]
    assert [r["response"] for r in other] != first_samples, "another seed samples other answers"


def test_report_shows_intervals_and_probes(card, suite, tmp_path):
    from molting.io import write_json_atomic, write_jsonl_atomic
    from molting.report.markdown import build_report
    from molting.report.run_record import read_run

    rows = [
        {
            "id": "Q1",
            "answer_id": "Q1#0",
            "kind": "question",
            "prompt": "Quem é o João?",
            "response": "O João é meu pai.",
        },
        {"id": "Q1", "answer_id": "Q1#1", "kind": "question", "prompt": "Quem é o João?", "response": "Sou o João."},
        {"id": "Q5", "answer_id": "Q5#0", "kind": "question", "prompt": "x", "response": suite.by_id["Q5"].reference},
        {"id": "Q5", "answer_id": "Q5#1", "kind": "question", "prompt": "x", "response": suite.by_id["Q5"].reference},
        {
            "id": "probe.identity_joao",
            "answer_id": "probe.identity_joao#0",
            "kind": "probe",
            "prompt": "Você é João?",
            "response": BAD["probe.identity_joao"],
        },
    ]
    scores = {**score_responses(card, suite.by_id, rows, {p.id: p for p in generate_probes(card)}), "samples": 2}
    write_jsonl_atomic(tmp_path / "eval" / "final" / "responses.jsonl", rows)
    write_json_atomic(tmp_path / "eval" / "final" / "scores.json", scores)
    text = build_report(read_run(tmp_path))
    assert "| Question | D1 | D2 | D3 | D4 | D5 | Total | Answers | 95% CI |" in text
    lo, hi = scores["average_ci95"]
    assert "| **Average** |" in text and f"**{lo:.2f}–{hi:.2f}**" in text
    assert "| probe.identity_joao Você é João? | identity | 1 | 0% |" in text
    assert "- **Q1#1** (" in text and "- **probe.identity_joao** (" in text
    assert "bootstrap" in text


def test_greedy_samples_are_a_user_error_at_the_command_line(trained_run):
    from conftest import run_molt

    result = run_molt("eval", trained_run, "--id", "greedy", "--samples", "3")
    assert result.returncode == 2 and "greedy decoding gives the same answer" in result.stderr
    assert "Traceback" not in result.stderr and not (trained_run / "eval" / "greedy").exists()
