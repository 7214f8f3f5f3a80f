"""Read the answers `molt score` scores: JSONL lines `{"id": "Q1", "response": "..."}`.

Every bad line is reported as file:line; ids must be questions of the suite. An optional
`finish_reason` ("stop" or "length") lets the scorer tell a truncated answer for certain.
"""

from pathlib import Path

from molting.errors import UserError
from molting.jsonl import read_jsonl
from molting.suite import Suite


def load_responses(path: str | Path, suite: Suite) -> list[dict]:
    path = Path(path)
    parsed, problems = read_jsonl(path)
    rows = []
    for n, obj in parsed:
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            problems.append(f'{where}: expected an object like {{"id": "Q1", "response": "..."}}.')
            continue
        if obj.get("id") not in suite.by_id:
            problems.append(
                f"{where}: id: {obj.get('id')!r} is not a question of the suite (known: {', '.join(suite.by_id)})."
            )
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
