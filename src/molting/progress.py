"""Progress on long work, in a terminal and in a log.

Every step that can take more than a few seconds shows progress: training, answering the suite, the fluency
pass, probes, export checks, base builds, GGUF conversions and model loads. In a terminal that is rich's live
bar. Anywhere else (a CI log, `make demo | tee`, a file) rich draws nothing until the work ends, so a 40-minute
training looked hung; there `bar` prints a plain line to stderr every `PLAIN_EVERY_S` seconds and one at the end:

    training: 12/96 steps (12%), loss 3.214, 5m02s elapsed, about 35m left

`step` says what a single long call is doing (a model load, a tokenizer conversion) and how long it took.
Both write to stderr, so a command's own output on stdout stays clean for pipes.

Reached through `bar(description, total, ...)` and `step(message)`.
"""

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PLAIN_EVERY_S = 30.0  # seconds between plain progress lines
QUIET_BELOW_S = 2.0  # a step faster than this gets no "done in" line


def interactive(stream=None) -> bool:
    """Whether `stream` (default stderr) is a terminal, where live bars can redraw."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def duration(seconds: float) -> str:
    """ "42s", "5m02s", "1h07m"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Bar:
    """One task's progress: `advance(n)`, `update(completed=…, note=…, total=…)`; a context manager.

    `note` is shown after the counts (the current loss, say). Live (rich) in a terminal; plain lines otherwise;
    nothing at all when disabled."""

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str = "",
        disable: bool = False,
        transient: bool = False,
        completed: int = 0,
        every_s: float = PLAIN_EVERY_S,
        stream=None,
    ):
        self.description, self.total, self.unit = description, total, unit
        self.completed, self.note = completed, ""
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.disable = disable or (total == 0)
        self.live = not self.disable and interactive(self.stream)
        self.transient = transient
        self._rich = None
        self._task = None
        self._start = self._last = 0.0
        self._done_printed = False
        self._lock = threading.Lock()  # callbacks may come from worker threads (the judge, distil)

    def __enter__(self) -> "Bar":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._start = self._last = time.monotonic()
        if self.disable:
            return
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._rich = Progress(
                TextColumn(self.description),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}" + (f" {self.unit}" if self.unit else "")),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=self.transient,
            )
            self._rich.start()
            self._task = self._rich.add_task(self.description, total=self.total, completed=self.completed, note="")
        else:
            self._print(self._line(started=True))

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._update(self.completed + n, None, None)

    def update(self, completed: int | None = None, note: str | None = None, total: int | None = None) -> None:
        with self._lock:
            self._update(completed, note, total)

    def _update(self, completed: int | None, note: str | None, total: int | None) -> None:
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
        if note is not None:
            self.note = note
        if self.disable:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=self.completed, total=self.total, note=self.note)
            return
        now = time.monotonic()
        finished = self.total is not None and self.completed >= self.total
        if (finished and not self._done_printed) or now - self._last >= self.every_s:
            self._last = now
            self._done_printed = finished
            self._print(self._line())

    def stop(self) -> None:
        if self.disable:
            return
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        elif not self._done_printed:
            self._done_printed = True
            self._print(self._line())

    def _line(self, started: bool = False) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            counts = f"{self.completed}/{self.total}{unit} ({100 * self.completed // self.total}%)"
        else:
            counts = f"{self.completed}{unit}"
        if started:
            return f"{self.description}: {counts}, started"
        elapsed = time.monotonic() - self._start
        parts = [counts] + ([self.note] if self.note else []) + [f"{duration(elapsed)} elapsed"]
        if self.total and 0 < self.completed < self.total:
            parts.append(f"about {duration(elapsed / self.completed * (self.total - self.completed))} left")
        return f"{self.description}: " + ", ".join(parts)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def bar(description: str, total: int | None, **kwargs) -> Bar:
    """A progress bar for `total` units of work (see `Bar`)."""
    return Bar(description, total, **kwargs)


@contextmanager
def step(message: str, disable: bool = False, stream=None) -> Iterator[None]:
    """Say `message` (a model load, a conversion) before a long call, and how long it took after it."""
    stream = stream or sys.stderr
    if disable:
        yield
        return
    print(f"{message} …", file=stream, flush=True)
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    if seconds >= QUIET_BELOW_S:
        print(f"{message}: done in {duration(seconds)}", file=stream, flush=True)
