"""One `molt train` per run directory: an exclusive lock on `RUN_DIR/.molt-train.lock`.

Reached through `run_lock(run_dir)` (a context manager) from `train.train_run`. The lock is an
`fcntl.flock` on an open file, so the kernel releases it when the process exits for any reason — a crash,
Ctrl-C or SIGKILL never leaves a stale lock behind to clear by hand. The file itself stays (it holds the
pid of the last holder, for the message a second process gets).
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from molting.errors import UserError

LOCK_NAME = ".molt-train.lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold the run directory's lock for the duration of the block; a `UserError` if another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"{run_dir} is in use by another molt train (pid {holder}). Wait for it to finish, or train "
                "into another run directory with --name."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
