"""Reading and writing molting's files: atomic writes, JSONL with line numbers, sha256 of a file.

Every stage writes through `write_*_atomic` (a temp file in the same folder, fsync, then rename), so a
crash or Ctrl-C never leaves a half-written file that a later stage would trust; a write the system refuses
(a full disk, a read-only folder) raises OSError naming the file, not its temporary name. `read_jsonl` keeps
each object's line number, so every error about a file names its line: JSON that does not parse, bytes that
are not UTF-8, nesting too deep for Python's parser, a lone surrogate escape.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from molting.errors import UserError

# mkstemp and mkdtemp make files 0600 and folders 0700, to keep them private while they are unnamed. What
# molting moves into place gets the permissions any other program would give it under the user's umask: a
# run folder shared with a colleague, or an export that a model server running as another user reads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def staging_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder in `parent` to build into before a rename puts it in place (with the umask's
    permissions, not mkdtemp's private 0700)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    path.chmod(DIR_MODE)
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _naming(e, path) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _naming(e: OSError, path: Path) -> OSError:
    """The same error about the file being written, not its temporary name (".scores.json.x1y2.tmp" means
    nothing to a user whose disk is full)."""
    return OSError(e.errno, e.strerror, str(path)) if e.errno is not None else e


def write_set_atomic(files: dict[Path, str], marker: Path) -> None:
    """Write several files that belong together so that no old one is ever left beside a new one: every
    file is written in full to a temporary name first; then `marker` (the file whose presence says the
    set is complete) is removed, the others are moved into place, and `marker` comes last. A crash leaves
    the old set whole, or no `marker`: never the old marker beside new data."""
    staged: dict[Path, str] = {}
    path = marker
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged[path] = tmp
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        marker.unlink(missing_ok=True)
        for path in sorted(staged, key=lambda p: p == marker):
            os.replace(staged[path], path)
            del staged[path]
    except OSError as e:
        raise _naming(e, path) from None
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


class NotJson(ValueError):
    """Why a text is not JSON molting can use; `line` is the line of the text where it fails."""

    def __init__(self, reason: str, line: int = 1):
        super().__init__(reason)
        self.line = line


_TOO_DEEP = "JSON nested too deep (arrays or objects inside each other hundreds of times)"
_SURROGATE = re.compile("[\\ud800-\\udfff]")


def parse_json(text: str) -> Any:
    """`json.loads` with every way a file can defeat it raised as NotJson: not JSON, nested deeper than
    Python's parser recurses (RecursionError), or holding a lone surrogate escape ("\\ud800"), which parses
    but is no character: writing it back, or handing it to a tokenizer, would fail later and far from here."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotJson(f"not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno})", e.lineno) from None
    except RecursionError:
        raise NotJson(_TOO_DEEP) from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise NotJson(
            f"{_surrogate_field(value)}: a lone surrogate escape (\\u{ord(e.object[e.start]):04x}) is no character; "
            "write the character itself, or both halves of its surrogate pair"
        ) from None
    except RecursionError:
        raise NotJson(_TOO_DEEP) from None
    return value


def _surrogate_field(value: Any) -> str:
    """The dotted path (messages[0].content) of the first string, or key, holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str) and _SURROGATE.search(v):
            return path or "(top level)"
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in reversed(list(items)):
            if isinstance(k, str) and _SURROGATE.search(k):
                return f"{path}.{k!r}".lstrip(".")
            stack.append((f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}".lstrip("."), child))
    return "(top level)"


def read_jsonl(path: Path, missing_hint: str = "") -> tuple[list[tuple[int, Any]], list[str]]:
    """(line number, object) for every non-blank line that parses, and `file:line` problems for those
    that do not (not UTF-8, not JSON, nested too deep, a lone surrogate). A missing file is a UserError at
    once."""
    if not path.is_file():
        raise UserError(f"{path}: file not found.{' ' + missing_hint if missing_hint else ''}")
    rows, problems = _parse_lines(path)
    return rows, [f"{path}:{n}: {problem}." for n, problem in problems]


def _parse_lines(path: Path) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """(line number, object) for every non-blank line that parses, (line number, problem) for the others.
    Lines are split on "\\n" only, as in `jsonl_lines`, and decoded one at a time, so that bytes that are not
    UTF-8 are reported at their line."""
    rows, problems = [], []
    for n, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as e:
            byte = f"byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line"
            problems.append((n, f"not UTF-8 text ({byte}); save the file as UTF-8"))
            continue
        if line.strip():
            try:
                rows.append((n, parse_json(line)))
            except NotJson as e:
                problems.append((n, str(e)))
    return rows, problems


def read_json(path: Path) -> Any:
    """A JSON file molting wrote, or None if it is absent. One that is not JSON is reported with its line."""
    path = Path(path)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        return parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line, reason = raw.count(b"\n", 0, e.start) + 1, "not UTF-8 text"
    except NotJson as e:
        line, reason = e.line, str(e)
    raise UserError(f"{path}:{line}: {reason}. Re-run the stage that writes it.")


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split on "\n" only (a trailing "\r" dropped). Never `str.splitlines()`:
    it also splits on U+2028, U+2029, U+0085 and other separators, which JSON strings may hold unescaped
    (json.dumps(..., ensure_ascii=False) writes them as they are), and cuts such a row in two."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


_JSON_KIND = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def read_jsonl_rows(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Every row of a JSONL file molting wrote ([] if it is absent), each an object holding the `required`
    keys. A line that is not (not JSON, not UTF-8, not an object, a key missing) is a UserError naming
    file:line, so a damaged file stops the command with a message instead of a traceback further on."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, problems = _parse_lines(path)
    for n, row in rows:
        if not isinstance(row, dict):
            problems.append((n, f"expected a JSON object ({{...}}), got {_JSON_KIND.get(type(row), 'a number')}"))
        elif missing := [key for key in required if key not in row]:
            problems.append((n, f"{', '.join(missing)}: missing; every row of this file has it"))
    if problems:
        shown = [f"{path}:{n}: {problem}." for n, problem in sorted(problems)[:10]]
        more = [f"{path}: {len(problems) - 10} more damaged line(s)."] if len(problems) > 10 else []
        raise UserError(shown + more + [f"{path}: damaged; re-run the stage that writes it, or restore the file."])
    return [row for _, row in rows]


def build_dir_once(final: Path, build: Callable[[Path], None]) -> Path:
    """A cache folder made once: `build` writes into a staging folder beside `final`, which is renamed into
    place only when complete, so a failed or interrupted build leaves nothing a later run would trust. A
    folder already complete (it has config.json) is returned as it is."""
    final = Path(final)
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(final.parent, f".{final.name}.")
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
