"""The one exception type for user mistakes.

Anything a user can fix (a missing file, bad YAML, an unknown field, a malformed data line) raises
`UserError` with a message naming the file, line and field and saying what to do. The CLI prints it and
exits with code 2. An OSError (a full disk, a read-only folder, a file-size limit) is the system refusing, not a
mistake in the input: the CLI prints it in one line and exits 1. Everything else is a bug and keeps its
traceback.
"""

import errno
import re


class UserError(Exception):
    """A mistake in the user's input. `problems` holds every problem found, one message each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# What to do about the refusals a command meets when it writes: the file system's, not the user's input.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EFBIG: "the file is over this process's file-size limit (`ulimit -f`): raise it and run the command again",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "check the permissions of the file and its folder, or write somewhere else",
    errno.EPERM: "check the permissions of the file and its folder, or write somewhere else",
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError that reached the command line: which file, what the system said, what to do.
    molting writes every file atomically (a temporary file, then a rename), so a write refused half-way left
    the earlier file as it was."""
    where = f"{e.filename}: " if e.filename else ""
    hint = _OS_ERROR_HINTS.get(e.errno or 0)
    if hint is None:
        return f"{where}{e.strerror or e}."
    return f"{where}{e.strerror}; {hint}. Nothing half-written was kept; earlier files are as they were."


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def as_os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e`: `e` itself, or the one a Rust extension (safetensors, tokenizers) reported in its
    own exception type, as Rust's io::Error writes it: "Error while serializing: I/O error: File too large
    (os error 27)". None for anything else."""
    if isinstance(e, OSError):
        return e
    found = _RUST_OS_ERROR.search(str(e))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, str(e))
