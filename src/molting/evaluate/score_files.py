"""Read the answers `molt score` scores: JSONL lines `{"id": "Q1", "response": "..."}` (optional `answer_id`).

Every bad line is reported as file:line; ids must be questions of the suite. An optional
`finish_reason` ("stop" or "length") lets the scorer tell a truncated answer for certain.
"""

from pathlib import Path

from molting.errors import UserError
from molting.io import read_jsonl
from molting.card.suite import Suite


def load_responses(path: str | Path, suite: Suite, probes: dict | None = None) -> list[dict]:
    """Rows to score; ids must be suite questions or, when given, probe ids (molting.card.probe_questions)."""
    probes = probes or {}
    path = Path(path)
    parsed, problems = read_jsonl(path)
    rows, seen_answer_ids = [], set()
    for n, obj in parsed:
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            problems.append(f'{where}: expected an object like {{"id": "Q1", "response": "..."}}.')
            continue
        if obj.get("id") not in suite.by_id and obj.get("id") not in probes:
            problems.append(
                f"{where}: id: {obj.get('id')!r} is not a question of the suite (known: {', '.join(suite.by_id)})."
            )
        if "answer_id" in obj:
            if not isinstance(obj["answer_id"], str):
                problems.append(f"{where}: answer_id: expected text like Q1#0.")
            elif obj["answer_id"] in seen_answer_ids:
                problems.append(f"{where}: answer_id: {obj['answer_id']!r} appears twice; answer ids must be unique.")
            else:
                seen_answer_ids.add(obj["answer_id"])
        if not isinstance(obj.get("response"), str):
            problems.append(f"{where}: response: expected text, got {type(obj.get('response')).__name__}.")
        if obj.get("finish_reason") not in (None, "stop", "length"):
            problems.append(f'{where}: finish_reason: expected "stop" or "length".')
        rows.append(obj)
    if problems:
        raise UserError(problems)
    if not rows:
        raise UserError(f"{path}: no answers in the file.")
    return rows
