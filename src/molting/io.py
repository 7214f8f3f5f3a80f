"""Reading and writing molting's files: atomic writes, JSONL with line numbers, sha256 of a file.

Every stage writes through `write_*_atomic` (a temp file in the same folder, fsync, then rename), so a
crash or Ctrl-C never leaves a half-written file that a later stage would trust. `read_jsonl` keeps each
object's line number, so every error about a user's file names its line.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from molting.errors import UserError


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_set_atomic(files: dict[Path, str], marker: Path) -> None:
    """Write several files that belong together so that no old one is ever left beside a new one: every
    file is written in full to a temporary name first; then `marker` (the file whose presence says the
    set is complete) is removed, the others are moved into place, and `marker` comes last. A crash leaves
    the old set whole, or no `marker`: never the old marker beside new data."""
    staged: dict[Path, str] = {}
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged[path] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        marker.unlink(missing_ok=True)
        for path in sorted(staged, key=lambda p: p == marker):
            os.replace(staged[path], path)
            del staged[path]
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)


def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, jsonl_text(rows))


def replace_dir_atomic(staging: Path, final: Path) -> None:
    """Move a fully written staging folder into place, replacing any older one at `final`."""
    final = Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (adapters and base weights are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(data: str | bytes) -> str:
    """Hex sha256 of `data` (text is hashed as UTF-8): the key of a cache entry or of a partial answer."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


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


def read_json(path: Path) -> Any:
    """A JSON file molting wrote, or None if it is absent. One that is not JSON is reported with its line."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}). Re-run the stage that writes it.") from None


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split on "\n" only (a trailing "\r" dropped). Never `str.splitlines()`:
    it also splits on U+2028, U+2029, U+0085 and other separators, which JSON strings may hold unescaped
    (json.dumps(..., ensure_ascii=False) writes them as they are), and cuts such a row in two."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_jsonl_rows(path: Path) -> list[dict]:
    """Every row of a JSONL file molting wrote ([] if it is absent); a bad line is reported as file:line."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(jsonl_lines(path.read_text(encoding="utf-8")), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg}).") from None
    return rows


def build_dir_once(final: Path, build: Callable[[Path], None]) -> Path:
    """A cache folder made once: `build` writes into a staging folder beside `final`, which is renamed into
    place only when complete, so a failed or interrupted build leaves nothing a later run would trust. A
    folder already complete (it has config.json) is returned as it is."""
    final = Path(final)
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        build(staging)
        try:
            os.replace(staging, final)
        except OSError:  # another process finished the same build first; its files are identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
