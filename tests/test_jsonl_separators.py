"""U+2028, U+2029 and U+0085 may sit unescaped inside a JSON string (json.dumps(..., ensure_ascii=False)
writes them as they are), and `str.splitlines()` splits on them: every JSONL reader splits on "\\n" only."""

import json

from fake_runs import make_run, references

from molting.data.chat_import import read_conversations
from molting.io import jsonl_lines, read_jsonl_rows, write_jsonl_atomic
from molting.report.markdown import build_report
from molting.report.run_record import read_run

SEPARATORS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"


def test_a_row_holding_line_separators_stays_one_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl_atomic(path, [{"text": SEPARATORS}, {"text": "two"}])
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, as valid JSON allows
    assert [r["text"] for r in read_jsonl_rows(path)] == [SEPARATORS, "two"]
    assert jsonl_lines('{"a": 1}\r\n{"b": 2}\n') == ['{"a": 1}', '{"b": 2}']


def test_the_report_reads_an_answer_holding_a_line_separator(tmp_path):
    refs = references()
    answers = {q: [refs[q] + " \u2028 " + SEPARATORS] for q in refs}
    run = make_run(tmp_path, "sep", answers, [3.0, 2.0])
    assert "\u2028" in (run / "eval" / "final" / "responses.jsonl").read_text(encoding="utf-8")
    record = read_run(run)
    assert all("\u2028" in r["response"] for r in record.evals["final"].responses)
    assert "## Rubric v2" in build_report(record)


def test_import_counts_lines_not_separators(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Oi{SEPARATORS}?"}, {"role": "assistant", "content": "Olá."}]},
        "not an object",
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    malformed: list[str] = []
    _, conversations = read_conversations(path, None, malformed)
    assert len(conversations) == 1
    assert all(f"{path}:2" in m for m in malformed) and malformed, malformed  # the bad row is line 2, not 8
