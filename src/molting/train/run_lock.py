"""One `molt train` or `molt eval` at a time per run directory: an exclusive lock on `RUN_DIR/.molt.lock`.

Reached through `run_lock(run_dir, command)` (a context manager) from `train.train_run` and
`evaluate.run.eval_run`: an evaluation never reads an adapter that a `molt train --overwrite` is replacing,
and a training never replaces the adapter an evaluation is answering with. The lock is `filelock`'s (flock on
Linux and macOS, LockFileEx on Windows), held through an open file, so the operating system releases it when
the process exits for any reason — a crash, Ctrl-C or SIGKILL never leaves a stale lock behind to clear by
hand. The holder writes its pid and command into `RUN_DIR/.molt.lock.holder`, for the message a second
process gets; it is a file of its own because the lock file's content is filelock's (on a filesystem without
flock, its fallback marker), and because Windows does not let another process read a locked file.
"""

import functools
import os
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from molting.errors import UserError

LOCK_NAME = ".molt.lock"
HOLDER_NAME = ".molt.lock.holder"
LOCK_FILES = (LOCK_NAME, HOLDER_NAME)  # the lock's files, which are no part of the run


@contextmanager
def run_lock(run_dir: Path, command: str = "molt train"):
    """Hold the run directory's lock for the duration of the block; a `UserError` if another process has it.
    `command` names the holder in that message."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    holder_path = run_dir / HOLDER_NAME
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            pid, _, holder = holder_path.read_text(encoding="utf-8", errors="replace").strip().partition(" ")
        except OSError:
            pid, holder = "", ""
        raise UserError(
            f"{run_dir} is in use by another {holder or 'molt command'} (pid {pid or 'unknown'}). Wait for it "
            f"to finish, or {command} another run (--name)."
        ) from None
    try:
        try:  # a plain write, not write_text_atomic: only the lock's holder writes it, and a torn note is harmless
            holder_path.write_text(f"{os.getpid()} {command}\n", encoding="utf-8")
        except OSError:
            pass  # the note only makes a second process's message precise; the lock is what counts
        yield path
    finally:
        lock.release()


def holds_run_lock(command: str):
    """Decorate a function whose first argument is a run directory to run under that directory's lock. A
    directory that does not exist is not created: the function raises its own "no such run" error."""

    def wrap(fn):
        @functools.wraps(fn)
        def locked(run_dir, *args, **kwargs):
            if not Path(run_dir).is_dir():
                return fn(run_dir, *args, **kwargs)
            with run_lock(Path(run_dir), command):
                return fn(run_dir, *args, **kwargs)

        return locked

    return wrap
