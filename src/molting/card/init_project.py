"""`molt init DIR`: a new persona project with every field commented, for a user bringing their own persona.

Writes persona.yaml, data.jsonl, suite.yaml and molt.yaml from `project_template/`. Each value to fill in
holds a TODO marker; `molt check` names every one left until all are filled. Never overwrites a file.
"""

import shutil
from pathlib import Path

from molting.errors import UserError

TEMPLATE = Path(__file__).parent / "project_template"
FILES = ("molt.yaml", "persona.yaml", "data.jsonl", "suite.yaml")


def init_project(target: str | Path) -> list[Path]:
    target = Path(target)
    existing = [str(target / name) for name in FILES if (target / name).exists()]
    if existing:
        raise UserError(f"{', '.join(existing)} already exist; molt init never overwrites. Pick an empty folder.")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        shutil.copyfile(TEMPLATE / name, target / name)
        written.append(target / name)
    return written
