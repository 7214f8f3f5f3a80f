"""One `molt train` or `molt eval` at a time per run directory: an exclusive lock on `RUN_DIR/.molt.lock`.

Reached through `run_lock(run_dir, command)` (a context manager) from `train.train_run` and
`evaluate.run.eval_run`: an evaluation never reads an adapter that a `molt train --overwrite` is replacing,
and a training never replaces the adapter an evaluation is answering with. The lock is an `fcntl.flock` on
an open file, so the kernel releases it when the process exits for any reason — a crash, Ctrl-C or SIGKILL
never leaves a stale lock behind to clear by hand. The file itself stays (it holds the pid and command of
the last holder, for the message a second process gets).
"""

import fcntl
import functools
import os
from contextlib import contextmanager
from pathlib import Path

from molting.errors import UserError

LOCK_NAME = ".molt.lock"


@contextmanager
def run_lock(run_dir: Path, command: str = "molt train"):
    """Hold the run directory's lock for the duration of the block; a `UserError` if another process has it.
    `command` names the holder in that message."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, holder = os.pread(fd, 200, 0).decode(errors="replace").strip().partition(" ")
            raise UserError(
                f"{run_dir} is in use by another {holder or 'molt command'} (pid {pid or 'unknown'}). Wait for it "
                f"to finish, or {command} another run (--name)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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
