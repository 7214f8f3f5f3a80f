"""Stage results that other code reads are TypedDicts serialised to the JSON on disk: each real result
(preflight, scores, compare, doctor, curate, import) is checked against its declared type, so a renamed
key fails here. The checker itself is shown to catch a renamed, a missing and a mistyped key."""

import json

from conftest import EXAMPLE
from fake_runs import make_run, preflight_report, references
from typed_results import shape_problems

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.data.chat_import import ImportOptions, ImportSummary, import_conversations
from molting.data.curate import CurateOptions, CurateSummary, curate
from molting.evaluate.rubric import Scores
from molting.evaluate.score_files import score_file
from molting.models.doctor import DoctorReport, diagnose
from molting.report.compare import CompareResult, compare_runs
from molting.train.preflight import PreflightReport, TokenBudget


def _round_trip(value):
    return json.loads(json.dumps(value))


def test_the_checker_catches_renamed_missing_and_mistyped_keys():
    budget = _round_trip(preflight_report()["token_budget"])
    assert shape_problems(budget, TokenBudget) == []
    renamed = {("max_token" if k == "max_tokens" else k): v for k, v in budget.items()}
    assert shape_problems(renamed, TokenBudget) == [
        "result: missing key 'max_tokens' (TokenBudget)",
        "result: key 'max_token' is not declared in TokenBudget",
    ]
    assert shape_problems({**budget, "examples": "12"}, TokenBudget) == ["result.examples: expected int, got '12'"]


def test_preflight_report():
    assert shape_problems(_round_trip(preflight_report()), PreflightReport) == []


def test_scores_with_probes(tmp_path):
    answers = tmp_path / "answers.jsonl"
    rows = [{"id": qid, "response": text} for qid, text in references().items()]
    rows.append({"id": "probe.identity_joao", "response": "Não, sou o Cláudio."})
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    score_file(EXAMPLE / "persona.yaml", EXAMPLE / "suite.yaml", answers, tmp_path / "scores.json")
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert saved["probes"], "the probe answer is scored apart"
    assert shape_problems(saved, Scores) == []


def test_compare_result(tmp_path):
    refs = references()
    a = make_run(tmp_path, "a", {qid: [text, text] for qid, text in refs.items()}, [3.0, 2.0, 1.5, 1.2])
    b = make_run(tmp_path, "b", {qid: [text] for qid, text in refs.items()}, [3.0, 2.5, 2.0, 1.8])
    assert shape_problems(_round_trip(compare_runs([a, b])), CompareResult) == []


def test_doctor_report():
    assert shape_problems(_round_trip(diagnose()), DoctorReport) == []


def test_curate_and_import_summaries(tmp_path):
    card = load_persona(EXAMPLE / "persona.yaml")
    summary = curate(
        EXAMPLE / "data.jsonl",
        card,
        load_suite(EXAMPLE / "suite.yaml", card),
        tmp_path / "curated",
        CurateOptions(near_duplicate=None),
    )
    assert shape_problems(_round_trip(summary), CurateSummary) == []
    on_disk = json.loads((tmp_path / "curated" / "curate.json").read_text())
    assert shape_problems(on_disk, CurateSummary) == []

    source = tmp_path / "export.jsonl"
    conversation = [{"role": "user", "content": "Oi, tudo bem?"}, {"role": "assistant", "content": "Tudo, e você?"}]
    source.write_text(json.dumps({"messages": conversation}) + "\n{not json\n", encoding="utf-8")
    result = import_conversations(source, tmp_path / "data.jsonl", ImportOptions(skip_malformed=True))
    assert result["malformed"], "the bad line is reported by position"
    assert shape_problems(_round_trip(result), ImportSummary) == []
