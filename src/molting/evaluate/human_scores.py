"""What a person records about an evaluation: scores (eval/<id>/manual_scores.json) and rejected answers
with the right one written beside them (eval/<id>/preference_pairs.jsonl, TRL's conversational
preference format).

Reached through `set_human_score` and `save_preference_pair`, which the dashboard (`molt serve`) calls on
every change. Each is a read-modify-write under an exclusive `fcntl` lock on a sidecar `.lock` file, and
the new content replaces the old by an atomic rename: two browser tabs, or two servers on the same runs,
never lose each other's changes or leave a half-written file. The lock is on a sidecar because the
rename replaces the data file's inode, and a lock on the old inode would not exclude the next writer.
"""

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from molting.io import write_json_atomic, write_text_atomic
from molting.errors import UserError
from molting.evaluate.manual_scores import load_manual_scores
from molting.evaluate.rubric import DIMENSIONS

MANUAL_SCORES = "manual_scores.json"
PREFERENCE_PAIRS = "preference_pairs.jsonl"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for `path` (on `.<name>.lock` beside it) for the duration of the block."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def read_manual_scores(eval_dir: Path) -> dict:
    """manual_scores.json checked (molting.evaluate.manual_scores), or an empty record."""
    return load_manual_scores(Path(eval_dir) / MANUAL_SCORES)


def set_human_score(
    eval_dir: str | Path,
    answer_id: str,
    dim: str | None = None,
    value: int | None = None,
    note: str | None = None,
) -> dict:
    """Record one change for one answer: a dimension's score (`value` None clears it) and/or the note.
    Returns the answer's entry as saved."""
    eval_dir = Path(eval_dir)
    if dim is not None and dim not in DIMENSIONS:
        raise UserError(f"unknown dimension {dim!r}: expected one of {', '.join(DIMENSIONS)}.")
    if value is not None and (isinstance(value, bool) or value not in (0, 1, 2)):  # JSON true == 1 in Python
        raise UserError(f"score {value!r} for {dim}: expected 0, 1 or 2.")
    path = eval_dir / MANUAL_SCORES
    with locked(path):
        data = read_manual_scores(eval_dir)
        entry = data["answers"].setdefault(answer_id, {"dims": {}, "notes": {}, "note": ""})
        entry.setdefault("dims", {})
        if dim is not None:
            if value is None:
                entry["dims"].pop(dim, None)
            else:
                entry["dims"][dim] = value
        if note is not None:
            entry["note"] = note
        entry["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(path, data)
    return entry


def read_preference_pairs(eval_dir: str | Path) -> list[dict]:
    path = Path(eval_dir) / PREFERENCE_PAIRS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_preference_pair(
    eval_dir: str | Path, pair_id: str, system: str | None, question: str, rejected: str, chosen: str
) -> dict:
    """Append the pair (prompt, chosen, rejected) for one answer; a second correction of the same answer
    replaces the first, so the file holds one pair per rejected answer."""
    if not chosen.strip():
        raise UserError("the right answer is empty: write the answer the model should have given.")
    eval_dir = Path(eval_dir)
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    pair = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "source": "dashboard",
        "id": pair_id,
    }
    path = eval_dir / PREFERENCE_PAIRS
    with locked(path):
        pairs = [p for p in read_preference_pairs(eval_dir) if p.get("id") != pair_id] + [pair]
        write_text_atomic(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    return pair
