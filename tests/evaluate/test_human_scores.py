"""Human scores: the scoring sheet, its validated import into manual_scores.json,
human scores overriding automatic ones (effective_scores, report.md) and their agreement, through the real
`molt` command on a run directory holding real responses scored by rubric v1."""

import csv
import io
import json
import re

import pytest
from conftest import EXAMPLE, run_molt

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.evaluate.human_scores import (
    effective_scores,
    human_agreement,
    import_sheet,
    load_manual_scores,
    set_human_score,
    write_sheet,
)
from molting.evaluate.rubric import score_responses
from molting.io import write_json_atomic, write_jsonl_atomic
from molting.report.markdown import build_report
from molting.report.run_record import read_run

ANSWERS = {
    "Q1": "O João Figueiredo é o desenvolvedor full-stack com quem eu trabalho.\nConfesso: ele manda no CRM.",
    "Q2": "O Molting é um framework web.",  # a forbidden claim: D2 0
    "Q3": "O CRM é o produto da Softtor, feito em TypeScript com Next.js, e eu ajudo a construir. Curioso, né?",
}


@pytest.fixture
def run_dir(tmp_path):
    card = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", card)
    rows = [
        {"id": q, "prompt": suite.by_id[q].question, "response": a, "finish_reason": "stop"} for q, a in ANSWERS.items()
    ]
    directory = tmp_path / "run" / "eval" / "final"
    write_jsonl_atomic(directory / "responses.jsonl", rows)
    write_json_atomic(directory / "scores.json", {**score_responses(card, suite.by_id, rows), "eval_id": "final"})
    return tmp_path / "run"


def _read_sheet(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("\ufeff")  # spreadsheet programs then read the accents right
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def _write_sheet(path, rows):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def test_sheet_import_and_report(run_dir, tmp_path):
    result = run_molt("scores", "sheet", run_dir)
    assert result.returncode == 0, result.stderr
    sheet = run_dir / "eval" / "final" / "scoring_sheet.csv"
    rows = _read_sheet(sheet)
    assert rows[0] == ["answer_id", "question", "answer", "D1", "D2", "D3", "D4", "D5", "note"]
    assert [r[0] for r in rows[1:]] == ["Q1", "Q2", "Q3"]
    assert rows[1][1] == "Quem é o João?" and rows[1][2] == ANSWERS["Q1"] and rows[1][3:] == [""] * 6

    rows[1][3:9] = ["2", "2", "2", "2", "2", "perfeito"]
    rows[2][4] = "1"  # a person is more lenient than the detector on Q2's D2, and scores only that
    filled = tmp_path / "filled.csv"
    _write_sheet(filled, rows)
    result = run_molt("scores", "import", run_dir, "--csv", filled)
    assert result.returncode == 0, result.stderr
    assert "imported 6 scores for 2 answers" in result.stdout
    manual = json.loads((run_dir / "eval" / "final" / "manual_scores.json").read_text())
    assert manual["version"] == 1 and set(manual["answers"]) == {"Q1", "Q2"}
    q1, q2 = manual["answers"]["Q1"], manual["answers"]["Q2"]
    assert q1["dims"] == {"D1": 2, "D2": 2, "D3": 2, "D4": 2, "D5": 2} and q1["note"] == "perfeito"
    assert q2["dims"] == {"D2": 1} and q2["notes"] == {} and q2["note"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", q2["updated"])

    # the next sheet comes with what a person already scored
    write_sheet(run_dir, "final", tmp_path / "again.csv")
    assert _read_sheet(tmp_path / "again.csv")[2][3:9] == ["", "1", "", "", "", ""]

    report = build_report(read_run(run_dir))
    assert "Human scores (manual_scores.json) replace the automatic ones for 6 scores on 2 answers" in report
    q2_row = next(line for line in report.splitlines() if line.startswith("| Q2"))
    assert "| 1ʰ |" in q2_row
    assert "| Cohen's κ | Quadratic-weighted κ |" in report

    result = run_molt("scores", "agreement", run_dir, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["D2"]["n"] == 2 and figures["D1"]["n"] == 1
    assert set(figures["D2"]) == {"n", "exact", "within_one", "kappa", "kappa_quadratic"}
    result = run_molt("scores", "agreement", run_dir)
    assert result.returncode == 0, result.stderr
    assert "Quadratic-weighted kappa" in result.stdout


def test_import_rejects_bad_rows_with_file_and_line(run_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    _write_sheet(
        bad,
        [
            ["answer_id", "question", "answer", "D1", "D2", "D3", "D4", "D5", "note"],
            ["Q1", "Quem é o João?", "uma resposta\nem duas linhas", "2", "", "", "", "", ""],  # lines 2-3
            ["Q99", "", "", "2", "", "", "", "", ""],  # line 4
            ["Q2", "", "", "3", "x", "1.5", "", "", ""],  # line 5
            ["Q1", "", "", "1", "", "", "", "", ""],  # line 6
        ],
    )
    result = run_molt("scores", "import", run_dir, "--csv", bad)
    assert result.returncode == 2
    err = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"{bad}:4: answer_id: 'Q99' is not an answer of" in err
    assert f"{bad}:5: D1: 3 is out of range" in err
    assert f"{bad}:5: D2: 'x' is not a whole number" in err
    assert f"{bad}:5: D3: '1.5' is not a whole number" in err
    assert f"{bad}:6: answer_id: 'Q1' appears twice (first at line 2)" in err
    assert "Traceback" not in result.stderr
    assert not (run_dir / "eval" / "final" / "manual_scores.json").exists()

    headless = tmp_path / "headless.csv"
    _write_sheet(headless, [["answer_id", "D1"], ["Q1", "2"]])
    result = run_molt("scores", "import", run_dir, "--csv", headless)
    assert result.returncode == 2 and "missing column(s) D2, D3, D4, D5" in result.stderr


def test_import_reads_a_semicolon_sheet(run_dir, tmp_path):
    """What a spreadsheet in a pt-BR locale saves."""
    sheet = tmp_path / "ptbr.csv"
    sheet.write_text("\ufeffanswer_id;question;answer;D1;D2;D3;D4;D5;note\nQ3;x;y;2;;1;;;voz ok, mas fria\n", "utf-8")
    result = run_molt("scores", "import", run_dir, "--csv", sheet)
    assert result.returncode == 0, result.stderr
    entry = json.loads((run_dir / "eval" / "final" / "manual_scores.json").read_text())["answers"]["Q3"]
    assert entry["dims"] == {"D1": 2, "D3": 1} and entry["note"] == "voz ok, mas fria"


def test_effective_scores_override_dimension_by_dimension(run_dir):
    scores = json.loads((run_dir / "eval" / "final" / "scores.json").read_text())
    manual = {"version": 1, "answers": {"Q2": {"dims": {"D2": 2, "D5": 0}}}}
    auto_q2 = next(q for q in scores["questions"] if q["id"] == "Q2")
    out = effective_scores(scores, manual)
    q2 = next(q for q in out["questions"] if q["id"] == "Q2")
    assert q2["dims"] == {**auto_q2["dims"], "D2": 2, "D5": 0}
    assert q2["dims_source"]["D2"] == "human" and q2["dims_source"]["D1"] == "automatic"
    assert q2["automatic"]["dims"] == auto_q2["dims"] and q2["total"] == sum(q2["dims"].values())
    assert out["average"] == pytest.approx(sum(q["total"] for q in out["questions"]) / 3, abs=1e-3)
    assert out["dimensions"]["D2"] == pytest.approx(sum(q["dims"]["D2"] for q in out["questions"]) / 3, abs=1e-3)
    assert out["human"] == {"answers": 1, "dims": 2}
    assert scores["questions"][1]["dims"] == auto_q2["dims"]  # the input is left as it was
    assert effective_scores(scores, None)["average"] == scores["average"]
    figures = human_agreement(scores, manual)
    assert figures["D2"]["n"] == 1 and figures["D2"]["exact"] == (1.0 if auto_q2["dims"]["D2"] == 2 else 0.0)


def test_dashboard_and_sheet_write_one_format_and_older_files_still_load(run_dir, tmp_path):
    """The dashboard and an imported sheet go through the same writer: one entry shape, one timestamp
    format (UTC with a Z). A file written with the dashboard's older `+00:00` stamps still loads and merges."""
    manual_path = run_dir / "eval" / "final" / "manual_scores.json"
    older = {"dims": {"D1": 1}, "notes": {}, "note": "", "updated": "2026-11-22T00:20:05+00:00"}
    write_json_atomic(manual_path, {"version": 1, "answers": {"Q3": older}})
    assert load_manual_scores(manual_path)["answers"]["Q3"]["updated"] == "2026-11-22T00:20:05+00:00"

    entry = set_human_score(run_dir / "eval" / "final", "Q1", "D2", 0)
    assert entry["dims"] == {"D2": 0} and set(entry) == {"dims", "notes", "note", "updated"}
    sheet = tmp_path / "sheet.csv"
    _write_sheet(sheet, [["answer_id", "D1", "D2", "D3", "D4", "D5", "note"], ["Q2", "2", "", "", "", "", "ok"]])
    assert import_sheet(run_dir, sheet)["scores"] == 1
    answers = load_manual_scores(manual_path)["answers"]
    assert answers["Q3"] == older  # untouched
    assert set(answers["Q2"]) == {"dims", "notes", "note", "updated"} and answers["Q2"]["note"] == "ok"
    for aid in ("Q1", "Q2"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answers[aid]["updated"])
    assert set_human_score(run_dir / "eval" / "final", "Q3", "D1", None)["dims"] == {}  # None clears


def test_sheet_without_an_evaluation_is_a_user_error(tmp_path):
    result = run_molt("scores", "sheet", tmp_path / "nothing")
    assert result.returncode == 2 and "Evaluate first" in result.stderr


def test_scores_commands_have_help():
    assert "molt scores" in run_molt("--help").stdout
    for command in ([], ["sheet"], ["import"], ["agreement"]):
        result = run_molt("scores", *command, "--help")
        assert result.returncode == 0 and "Usage: " in result.stdout, command


def test_one_answer_id_rule_for_scores_sheet_and_compare():
    """Rows without their own answer_id (a `molt score` file) are named the same way by the scorer, the
    scoring sheet and the compare/dashboard reader, so a human score lands on the answer it was given for."""
    from molting.evaluate.rubric import answer_ids
    from molting.report.run_record import _answer_rows

    rows = [
        {"id": "Q1", "response": "a"},
        {"id": "Q2", "response": "b"},
        {"id": "Q2", "response": "c"},
        {"id": "Q3", "answer_id": "Q3.p1#0", "response": "d"},
    ]
    assert answer_ids(rows) == ["Q1", "Q2#0", "Q2#1", "Q3.p1#0"]
    entries = [{"id": r["id"], "answer_id": a} for r, a in zip(rows, answer_ids(rows), strict=True)]
    paired = _answer_rows({"questions": list(reversed(entries))}, rows)  # paired by answer id, not position
    assert [(e["answer_id"], row["response"]) for e, row in paired] == [
        ("Q3.p1#0", "d"),
        ("Q2#1", "c"),
        ("Q2#0", "b"),
        ("Q1", "a"),
    ]


@pytest.mark.parametrize("value", [1.0, True, 2.5, "1"])
def test_a_score_is_a_whole_number_0_1_or_2(run_dir, value):
    # 1.0 == 1 and True == 1 in Python: neither may pass for a score
    from molting.errors import UserError

    eval_dir = run_dir / "eval" / "final"
    with pytest.raises(UserError, match="expected 0, 1 or 2"):
        set_human_score(eval_dir, "Q1", "D1", value)
    path = eval_dir / "manual_scores.json"
    path.write_text(json.dumps({"version": 1, "answers": {"Q1": {"dims": {"D1": value}}}}))
    with pytest.raises(UserError, match=r"answers\.Q1\.dims\.D1: .* is not 0, 1 or 2"):
        load_manual_scores(path)
