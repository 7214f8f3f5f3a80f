"""What a person records about an evaluation: scores (eval/<id>/manual_scores.json), and rejected answers
with the right one written beside them (eval/<id>/preference_pairs.jsonl, TRL's conversational
preference format).

manual_scores.json is the one format of human scores, however they were given:
`{"version": 1, "answers": {"<answer_id>": {"dims": {"D1": 0|1|2, …}, "notes": {"D1": "…"}, "note": "…",
"updated": "2026-11-22T00:20:05Z"}}}` (dims may be partial: a person scores as they go; `updated` is UTC,
ISO 8601 with a Z; files the dashboard wrote with `+00:00` instead still load).

Reached through:
- `set_human_score` and `save_preference_pair`, which the dashboard (`molt serve`) calls on every change (a
  pair records its `origin`: run, eval, answer id and when; one whose right answer makes a forbidden claim
  of the card is refused);
- `write_sheet` / `import_sheet` (`molt scores sheet|import RUN`): eval/<id>/scoring_sheet.csv, one row per
  answer (answer_id, question, answer, D1–D5, note) with what a person already scored filled in, and its
  validated import (unknown answer ids, scores that are not 0, 1 or 2, duplicate rows: every problem as
  file:line, nothing written if there is one);
- `load_manual_scores`, the one reader; `effective_scores(scores, manual)` is what every reader of
  scores.json should show: human scores replace the automatic ones dimension by dimension, and the
  averages are recomputed;
- `human_agreement` / `run_agreement` (`molt scores agreement RUN`): exact, within-one and Cohen's kappa (plain and
  quadratic-weighted) per dimension between the automatic and the human scores.

`_merge_manual_scores` is the one writer of manual_scores.json. Each write is a read-modify-write under an
exclusive lock (`filelock`'s: flock, or LockFileEx on Windows) on a sidecar `.lock` file, and the new content
replaces the old by an atomic rename: two browser tabs, two servers on the same runs, or a sheet imported
while someone scores in the dashboard never lose each other's changes or leave a half-written file. The lock
is on a sidecar because the rename replaces the data file's inode, and a lock on the old inode would not
exclude the next writer.
"""

import copy
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from molting.card.claims import claims_in_text
from molting.card.persona import Persona
from molting.errors import UserError
from molting.evaluate.rubric import DIMENSIONS, answer_ids
from molting.evaluate.statistics import agreement_by_dimension
from molting.io import jsonl_lines, read_jsonl_rows, write_json_atomic, write_text_atomic
from molting.paths import EvalPaths, RunPaths

MANUAL_VERSION = 1
UPDATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # `updated` of an answer: UTC, ISO 8601 with a Z
SHEET_COLUMNS = ["answer_id", "question", "answer", *DIMENSIONS, "note"]
DIM_NOTE_COLUMNS = [f"{d}_note" for d in DIMENSIONS]  # optional: a note per dimension


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for `path` (on `.<name>.lock` beside it) for the duration of the block."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):  # waits for the holder, however long its write takes
        yield


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
            elif not is_score_level(value):
                problems.append(f"{path}: answers.{aid}.dims.{dim}: {value!r} is not 0, 1 or 2.")
    if problems:
        raise UserError(problems)
    return data


def is_score_level(value) -> bool:
    """0, 1 or 2 as a whole number: not 1.0 (== 1 in Python) and not true (also == 1)."""
    return type(value) is int and value in (0, 1, 2)


def _merge_manual_scores(path: Path, changes: dict[str, dict]) -> dict:
    """The one writer of manual_scores.json. `changes` maps answer ids to what changed: `dims` ({dim: 0|1|2,
    or None to clear it}), `notes` ({dim: text}, merged) and `note` (None keeps the old one). Each changed
    answer is stamped `updated`. Read, change and replace happen under the lock. Returns the saved answers."""
    with locked(path):
        data = load_manual_scores(path)
        now = datetime.now(UTC).strftime(UPDATED_FORMAT)
        for aid, change in changes.items():
            entry = data["answers"].setdefault(aid, {"dims": {}, "notes": {}, "note": ""})
            dims = entry.setdefault("dims", {})
            for dim, value in change.get("dims", {}).items():
                if value is None:
                    dims.pop(dim, None)
                else:
                    dims[dim] = value
            if "notes" in change:
                entry["notes"] = {**entry.get("notes", {}), **change["notes"]}
            if change.get("note") is not None:
                entry["note"] = change["note"]
            entry["updated"] = now
        write_json_atomic(path, data)
    return data["answers"]


def set_human_score(
    eval_dir: str | Path,
    answer_id: str,
    dim: str | None = None,
    value: int | None = None,
    note: str | None = None,
) -> dict:
    """Record one change for one answer: a dimension's score (`value` None clears it) and/or the note.
    Returns the answer's entry as saved."""
    if dim is not None and dim not in DIMENSIONS:
        raise UserError(f"unknown dimension {dim!r}: expected one of {', '.join(DIMENSIONS)}.")
    if value is not None and not is_score_level(value):
        raise UserError(f"score {value!r} for {dim}: expected 0, 1 or 2.")
    change = {"dims": {dim: value} if dim is not None else {}, "note": note}
    return _merge_manual_scores(EvalPaths(Path(eval_dir)).manual_scores, {answer_id: change})[answer_id]


def _scored_eval(run_dir: str | Path, eval_id: str) -> EvalPaths:
    paths = RunPaths(run_dir).eval(eval_id)
    if not paths.responses.is_file():
        raise UserError(f"{paths.responses}: not found. Evaluate first: molt eval {run_dir} (--id {eval_id}).")
    return paths


def _read_responses(path: Path) -> list[dict]:
    return read_jsonl_rows(path, required=("id",))


def write_sheet(run_dir: str | Path, eval_id: str = "final", out: str | Path | None = None) -> Path:
    """The scoring sheet (CSV, UTF-8 with a byte-order mark so spreadsheet programs read the accents)."""
    paths = _scored_eval(run_dir, eval_id)
    manual = load_manual_scores(paths.manual_scores)["answers"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SHEET_COLUMNS)
    rows = _read_responses(paths.responses)
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
    path = Path(out) if out else paths.scoring_sheet
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
    paths = _scored_eval(run_dir, eval_id)
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: file not found.")
    known = set(answer_ids(_read_responses(paths.responses)))
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
            problems.append(f"{where}: answer_id: {aid!r} is not an answer of {paths.responses}.")
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
            imported[aid] = {"dims": dims, "notes": notes, "note": note or None}
    if problems:
        raise UserError(problems)
    _merge_manual_scores(paths.manual_scores, imported)
    return {
        "answers": len(imported),
        "scores": sum(len(v["dims"]) for v in imported.values()),
        "path": str(paths.manual_scores),
    }


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
    return agreement_by_dimension(auto, human, DIMENSIONS)


def run_agreement(run_dir: str | Path, eval_id: str = "final") -> dict:
    paths = _scored_eval(run_dir, eval_id)
    if not paths.scores.is_file():
        raise UserError(f"{paths.scores}: not found. Evaluate first: molt eval {run_dir}.")
    manual = load_manual_scores(paths.manual_scores)
    if not manual["answers"]:
        raise UserError(
            f"{paths.manual_scores}: no human scores yet. Write a sheet (molt scores sheet {run_dir}), "
            f"fill it in and import it (molt scores import {run_dir} --csv FILE)."
        )
    return human_agreement(json.loads(paths.scores.read_text(encoding="utf-8")), manual)


def read_preference_pairs(eval_dir: str | Path) -> list[dict]:
    path = EvalPaths(Path(eval_dir)).preference_pairs
    if not path.is_file():
        return []
    return [json.loads(line) for line in jsonl_lines(path.read_text(encoding="utf-8")) if line.strip()]


def save_preference_pair(
    eval_dir: str | Path, answer_id: str, persona: Persona, question: str, rejected: str, chosen: str
) -> dict:
    """Save the pair (prompt with the card's inference system prompt, chosen, rejected) for one answer of
    RUN/eval/ID, with its `origin` (run, eval, answer id, when: UTC). A second correction of the same answer
    replaces the first, so the file holds one pair per rejected answer. A chosen answer that makes one of the
    card's forbidden claims, plainly or denied, is refused (UserError): preference training would teach it."""
    if not chosen.strip():
        raise UserError("the right answer is empty: write the answer the model should have given.")
    found = claims_in_text(persona, chosen)
    if found:
        raise UserError(
            [
                f"the right answer {'denies' if f.negated else 'makes'} forbidden claim {f.claim!r} of the card "
                f"({f.text!r}); preference training on it would teach the claim"
                + (" (a denial teaches it too)" if f.negated else "")
                + ". Say what is true without it."
                for f in found
            ]
        )
    eval_dir = Path(eval_dir)
    run = eval_dir.parent.parent.name  # RUN/eval/ID
    system = persona.system_prompts.inference.strip()
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    pair_id = f"{run}/{eval_dir.name}/{answer_id}"
    pair = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "source": "dashboard",
        "id": pair_id,
        "origin": {
            "run": run,
            "eval": eval_dir.name,
            "answer_id": answer_id,
            "saved": datetime.now(UTC).strftime(UPDATED_FORMAT),
        },
    }
    path = EvalPaths(eval_dir).preference_pairs
    with locked(path):
        pairs = [p for p in read_preference_pairs(eval_dir) if p.get("id") != pair_id] + [pair]
        write_text_atomic(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    return pair
