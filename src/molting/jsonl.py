"""Read a JSONL file a user wrote, keeping each object's line number for error messages."""

import json
from pathlib import Path
from typing import Any

from molting.errors import UserError


def read_jsonl(path: Path, missing_hint: str = "") -> tuple[list[tuple[int, Any]], list[str]]:
    """(line number, object) for every non-blank line that parses, and `file:line` problems for those
    that do not. A missing file is a UserError at once."""
    if not path.is_file():
        raise UserError(f"{path}: file not found.{' ' + missing_hint if missing_hint else ''}")
    rows, problems = [], []
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rows.append((n, json.loads(raw)))
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}).")
    return rows, problems
