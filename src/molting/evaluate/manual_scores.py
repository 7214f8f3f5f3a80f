"""Human scores (issue 3, section 7): a scoring sheet for people, its import, and human over automatic.

Reached through `molt scores sheet|import|agreement RUN`:
- `write_sheet` writes eval/<id>/scoring_sheet.csv: one row per answer (answer_id, question, answer, D1–D5,
  note), cells already scored by a person filled in, so scoring can go on across sessions;
- `import_sheet` validates a filled sheet (unknown answer ids, scores that are not 0, 1 or 2, duplicate
  rows: every problem as file:line, nothing written if there is one) and merges it into
  eval/<id>/manual_scores.json, the shared format the dashboard also writes:
  `{"version": 1, "answers": {"<answer_id>": {"dims": {"D1": 0|1|2, …}, "notes": {"D1": "…"}, "note": "…",
  "updated": "ISO-8601 UTC"}}}` (dims may be partial: a person scores as they go);
- `effective_scores(scores, manual)` is what every reader of scores.json should show: human scores replace
  the automatic ones dimension by dimension, and the averages are recomputed;
- `human_agreement` compares them: exact, within-one and Cohen's kappa per dimension.
"""

import copy
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from molting.evaluate.agreement import agreement_by_dimension
from molting.io import write_json_atomic, write_text_atomic
from molting.errors import UserError
from molting.evaluate.rubric import DIMENSIONS, answer_ids

MANUAL_VERSION = 1
SHEET_COLUMNS = ["answer_id", "question", "answer", *DIMENSIONS, "note"]
DIM_NOTE_COLUMNS = [f"{d}_note" for d in DIMENSIONS]  # optional: a note per dimension


def eval_dir(run_dir: str | Path, eval_id: str) -> Path:
    path = Path(run_dir) / "eval" / eval_id
    if not (path / "responses.jsonl").is_file():
        raise UserError(f"{path / 'responses.jsonl'}: not found. Evaluate first: molt eval {run_dir} (--id {eval_id}).")
    return path


def read_responses(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_manual_scores(path: str | Path) -> dict:
    """manual_scores.json, checked; an empty record when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return {"version": MANUAL_VERSION, "answers": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}). Fix or delete the file.") from None
    problems = []
    if not isinstance(data, dict) or data.get("version") != MANUAL_VERSION or not isinstance(data.get("answers"), dict):
        raise UserError(f'{path}: expected {{"version": 1, "answers": {{...}}}}.')
    for aid, entry in data["answers"].items():
        dims = entry.get("dims", {}) if isinstance(entry, dict) else None
        if not isinstance(dims, dict):
            problems.append(f"{path}: answers.{aid}: expected an object with dims.")
            continue
        for dim, value in dims.items():
            if dim not in DIMENSIONS:
                problems.append(f"{path}: answers.{aid}.dims.{dim}: unknown dimension (use {', '.join(DIMENSIONS)}).")
            elif value not in (0, 1, 2) or isinstance(value, bool):
                problems.append(f"{path}: answers.{aid}.dims.{dim}: {value!r} is not 0, 1 or 2.")
    if problems:
        raise UserError(problems)
    return data


def write_sheet(run_dir: str | Path, eval_id: str = "final", out: str | Path | None = None) -> Path:
    """The scoring sheet (CSV, UTF-8 with a byte-order mark so spreadsheet programs read the accents)."""
    directory = eval_dir(run_dir, eval_id)
    manual = load_manual_scores(directory / "manual_scores.json")["answers"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SHEET_COLUMNS)
    rows = read_responses(directory / "responses.jsonl")
    for row, aid in zip(rows, answer_ids(rows), strict=True):
        done = manual.get(aid, {})
        answer = row.get("response")
        if answer is None:  # the backend gave no answer for this question
            answer = f"(no answer: {row.get('error', 'unknown reason')})"
        writer.writerow(
            [
                aid,
                row.get("prompt", ""),
                answer,
                *(done.get("dims", {}).get(d, "") for d in DIMENSIONS),
                done.get("note", ""),
            ]
        )
    path = Path(out) if out else directory / "scoring_sheet.csv"
    write_text_atomic(path, "\ufeff" + buffer.getvalue())
    return path


def _parse_score(value: str, where: str, dim: str, problems: list[str]) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        score = int(value)
    except ValueError:
        problems.append(f"{where}: {dim}: {value!r} is not a whole number; write 0, 1 or 2, or leave it blank.")
        return None
    if score not in (0, 1, 2):
        problems.append(f"{where}: {dim}: {score} is out of range; scores are 0, 1 or 2.")
        return None
    return score


def import_sheet(run_dir: str | Path, csv_path: str | Path, eval_id: str = "final") -> dict:
    """Validate a filled sheet and merge it into manual_scores.json. Non-blank cells replace earlier human
    scores; blank cells leave them as they are. Returns {"answers": n, "scores": m, "path": ...}."""
    directory = eval_dir(run_dir, eval_id)
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: file not found.")
    known = set(answer_ids(read_responses(directory / "responses.jsonl")))
    text = csv_path.read_text(encoding="utf-8-sig")
    # Spreadsheets in locales with a decimal comma (pt-BR among them) save CSV with ";" (or tabs).
    first = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t"], key=first.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in ("answer_id", *DIMENSIONS) if c not in header]
    if missing:
        raise UserError(
            f"{csv_path}:1: missing column(s) {', '.join(missing)}; the header must have {', '.join(SHEET_COLUMNS)}."
        )
    problems: list[str] = []
    imported: dict[str, dict] = {}
    first_line = {}
    line = 1  # the header
    for record in reader:
        start, line = line + 1, reader.line_num  # a quoted answer may span several lines
        where = f"{csv_path}:{start}"
        aid = (record.get("answer_id") or "").strip()
        if not aid:
            if any((v or "").strip() for v in record.values()):
                problems.append(f"{where}: answer_id: empty; every row needs the answer_id it scores.")
            continue
        if aid not in known:
            problems.append(f"{where}: answer_id: {aid!r} is not an answer of {directory / 'responses.jsonl'}.")
            continue
        if aid in first_line:
            problems.append(f"{where}: answer_id: {aid!r} appears twice (first at line {first_line[aid]}).")
            continue
        first_line[aid] = start
        dims = {}
        for dim in DIMENSIONS:
            score = _parse_score(record.get(dim) or "", where, dim, problems)
            if score is not None:
                dims[dim] = score
        notes = {d: record[f"{d}_note"].strip() for d in DIMENSIONS if (record.get(f"{d}_note") or "").strip()}
        note = (record.get("note") or "").strip()
        if dims or notes or note:
            imported[aid] = {"dims": dims, "notes": notes, "note": note}
    if problems:
        raise UserError(problems)
    path = directory / "manual_scores.json"
    from molting.evaluate.human_scores import locked  # the dashboard's lock: a person may be scoring there meanwhile

    with locked(path):
        manual = load_manual_scores(path)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for aid, new in imported.items():
            entry = manual["answers"].setdefault(aid, {"dims": {}, "notes": {}, "note": ""})
            entry["dims"] = {d: v for d, v in {**entry.get("dims", {}), **new["dims"]}.items()}
            entry["notes"] = {**entry.get("notes", {}), **new["notes"]}
            if new["note"]:
                entry["note"] = new["note"]
            entry["updated"] = now
        write_json_atomic(path, manual)
    return {"answers": len(imported), "scores": sum(len(v["dims"]) for v in imported.values()), "path": str(path)}


def effective_scores(scores: dict, manual: dict | None) -> dict:
    """scores.json as it should be read: each answer's human scores (manual_scores.json) replace its
    automatic ones, dimension by dimension; `dims_source` says which is which and `automatic` keeps the
    replaced scores. Averages are recomputed over the scored answers. Returns a new dict."""
    out = copy.deepcopy(scores)
    human = (manual or {}).get("answers", {})
    answers = dims_replaced = 0
    for q in out.get("questions", []):
        given = human.get(q.get("answer_id", q["id"]), {}).get("dims", {})
        if not given or "dims" not in q:
            continue
        answers += 1
        dims_replaced += len(given)
        q["automatic"] = {"dims": dict(q["dims"]), "total": q.get("total")}
        q["dims"] = {d: given.get(d, q["dims"].get(d)) for d in DIMENSIONS}
        q["dims_source"] = {d: "human" if d in given else "automatic" for d in DIMENSIONS}
        q["total"] = sum(v for v in q["dims"].values() if v is not None)
    scored = [
        q for q in out.get("questions", []) if "dims" in q and all(q["dims"].get(d) is not None for d in DIMENSIONS)
    ]
    if answers and scored:
        n = len(scored)
        out["dimensions"] = {d: round(sum(q["dims"][d] for q in scored) / n, 3) for d in DIMENSIONS}
        out["average"] = round(sum(q["total"] for q in scored) / n, 3)
    out["human"] = {"answers": answers, "dims": dims_replaced}
    return out


def human_agreement(scores: dict, manual: dict) -> dict:
    """Per dimension: how the automatic scores (rubric, judge) agree with the human ones where both exist."""
    auto = {q.get("answer_id", q["id"]): q["dims"] for q in scores.get("questions", []) if "dims" in q}
    human = {aid: entry.get("dims", {}) for aid, entry in manual.get("answers", {}).items()}
    return agreement_by_dimension(auto, human)


def run_agreement(run_dir: str | Path, eval_id: str = "final") -> dict:
    directory = eval_dir(run_dir, eval_id)
    scores_path = directory / "scores.json"
    if not scores_path.is_file():
        raise UserError(f"{scores_path}: not found. Evaluate first: molt eval {run_dir}.")
    manual = load_manual_scores(directory / "manual_scores.json")
    if not manual["answers"]:
        raise UserError(
            f"{directory / 'manual_scores.json'}: no human scores yet. Write a sheet (molt scores sheet {run_dir}), "
            f"fill it in and import it (molt scores import {run_dir} --csv FILE)."
        )
    return human_agreement(json.loads(scores_path.read_text(encoding="utf-8")), manual)
