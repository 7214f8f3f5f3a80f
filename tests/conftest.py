"""Shared fixtures: a molting cache for the session, the example persona copied per test, one real
training run on builtin:tiny shared by the eval and report tests, and a helper that runs the real `molt`
command in a process of its own (exit codes and stderr as a user sees them), forked from a launcher that
imported molting's libraries once per worker (tests/molt_zygote.py)."""

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never touch the network. Set here, before any test module is collected: huggingface_hub reads
# HF_HUB_OFFLINE once, when it is first imported, and collection imports it (through transformers); set
# later, in a fixture, it came too late and a hub id not in the cache waited ~45 s on connection retries.
os.environ["HF_HUB_OFFLINE"] = "1"

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One core per worker: torch's default of a thread per core would have the workers (and the `molt`
    # subprocesses they start, which inherit this) fight over the same cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
EXAMPLE = REPO / "examples" / "claudio"

# Settings that keep a builtin:tiny run to seconds; the trainer still runs for real.
FAST = [
    "base_model=builtin:tiny",
    "train.epochs=1",
    "train.learning_rate=2e-3",
    "check.min_steps=1",
    "generation.max_new_tokens=24",
    "fluency.model=null",  # the reference model's pass has tests of its own (tests/evaluate/test_fluency.py)
]


# Under `--dist loadfile`, the test files whose work takes longest (a base built once per session, then trained,
# exported and verified on), handed out before the others: started last, one of them alone kept a worker busy
# for minutes after the other had finished everything else.
LONGEST_FIRST = (
    "tests/models/test_families.py",
    "tests/models/test_gguf_base.py",
    "tests/models/test_family_export.py",
    "tests/evaluate/test_fluency.py",
)


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            for scope in LONGEST_FIRST:
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
                    break
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


def _shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (the parent of the workers' base temp
    folders); without xdist, the session's own base temp folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _once_per_session(tmp_path_factory, name: str):
    """Serialise work that the xdist workers share (a base build, a GGUF conversion, the shared training
    run): the first worker does it, the others wait for it, then find it done."""
    from filelock import FileLock

    with FileLock(str(_shared_dir(tmp_path_factory) / f"{name}.lock")):
        yield


@pytest.fixture(scope="session")
def family_bases(tmp_path_factory, molting_cache) -> dict[str, Path]:
    """The four family bases (`builtin:tinyllama`, `builtin:phi3`, `builtin:qwen2.5`, `builtin:llama3.2`), built
    once per session and shared by the xdist workers."""
    from molting.models.family_base import FAMILIES
    from molting.models.resolve import resolve_base

    with _once_per_session(tmp_path_factory, "family-bases"):
        return {name: Path(resolve_base(f"builtin:{name}")) for name in FAMILIES}


def row_base(row: str) -> str:
    """The family base a row of the family matrix runs on: "qwen3" is Qwen3's template on builtin:qwen2.5."""
    return "qwen2.5" if row == "qwen3" else row


def qwen3_template_path() -> Path:
    """Qwen3's real chat template, from the pinned llama-cpp-python sdist: with the Qwen2 vocabulary (Qwen3's
    own), the matrix's fifth row, a template that does not render a conversation as its own prefixes."""
    from molting.export.llama_cpp_tools import fetch_model_files

    return fetch_model_files() / "models" / "templates" / "Qwen-Qwen3-0.6B.jinja"


@pytest.fixture(scope="session", autouse=True)
def molting_cache(tmp_path_factory):
    """Builtin bases are built once per session, shared by the xdist workers (or reused from
    MOLTING_TEST_CACHE when set)."""
    cache = os.environ.get("MOLTING_TEST_CACHE") or str(_shared_dir(tmp_path_factory) / "molting-cache")
    os.environ["MOLTING_CACHE"] = cache
    return Path(cache)


_tiny_built = False


@pytest.fixture(autouse=True)
def builtin_tiny_built(request, tmp_path_factory, molting_cache) -> None:
    """builtin:tiny, built in-process once per session before the first test that may need it (otherwise a
    test would build it inside a `molt` subprocess, on its own time). Not before the tests of the first file
    handed out (LONGEST_FIRST), which need none: the worker that runs them starts at once, and the other
    worker builds builtin:tiny (when both waited, or the first worker built it, the suite took a minute longer)."""
    global _tiny_built
    if _tiny_built or request.node.nodeid.startswith(LONGEST_FIRST[0]):
        return
    from molting.models.builtin_base import builtin_path

    with _once_per_session(tmp_path_factory, "builtin-tiny"):
        builtin_path("builtin:tiny")
    _tiny_built = True


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the example persona project, safe to edit."""
    target = tmp_path / "claudio"
    shutil.copytree(EXAMPLE, target)
    return target


class _MoltLauncher:
    """`python -m molting ARGS` in a process of its own, forked from a launcher that has imported molting and
    its libraries once (tests/molt_zygote.py): exit code, stdout and stderr as a user sees them, without the
    4-5 s of imports each `molt` subprocess spent first. One per xdist worker, started on first use."""

    def __init__(self) -> None:
        import threading

        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()  # one command at a time per launcher: calls from threads wait their turn

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "molt_zygote.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # unbuffered: a line already read into a buffer would be invisible to select()
                env={**os.environ, "COLUMNS": "200"},  # rich reads the width when molting's consoles are made
            )
        return self.proc

    def run(self, args: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
        import json
        import select
        import signal
        import tempfile

        with self.lock, tempfile.TemporaryDirectory() as tmp:
            proc = self._start()
            assert proc.stdin and proc.stdout
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {
                "args": args,
                "cwd": str(cwd or os.getcwd()),
                "env": {**os.environ, "COLUMNS": "200"},
                "stdout": str(out),
                "stderr": str(err),
            }
            proc.stdin.write((json.dumps(request) + "\n").encode())
            pid = self._reply(proc)["pid"]
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                self._reply(proc)
                raise subprocess.TimeoutExpired(["molt", *args], timeout)
            returncode = self._reply(proc)["returncode"]
            return subprocess.CompletedProcess(
                ["molt", *args], returncode, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
            )

    @staticmethod
    def _reply(proc: subprocess.Popen) -> dict:
        import json

        line = proc.stdout.readline()  # type: ignore[union-attr]  # raw: read byte by byte, never past the line
        if not line:
            proc.wait()
            raise RuntimeError(f"the molt launcher (tests/molt_zygote.py) exited {proc.returncode}: see its stderr")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # idle between commands: nothing of its own to finish
            self.proc.wait()


_launcher = _MoltLauncher()


@pytest.fixture(scope="session", autouse=True)
def _close_the_molt_launcher():
    yield
    _launcher.close()


def run_molt(*args, cwd=None, check=False) -> subprocess.CompletedProcess:
    """`molt ARGS` in a process of its own (forked from the launcher above); the CompletedProcess that
    `subprocess.run(["molt", *args], capture_output=True, text=True)` would give."""
    result = _launcher.run([str(a) for a in args], cwd, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"molt {' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def set_args(overrides: list[str]) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, molting_cache) -> Path:
    """One real LoRA run on builtin:tiny over the whole example dataset (1 epoch, 32 optimizer steps),
    trained once per session and copied into each xdist worker (tests add evaluations to it, and an
    evaluation holds the run's lock)."""
    from molting.config import load_run_config
    from molting.train.sft import train_run

    shared = _shared_dir(tmp_path_factory) / "trained-run" / "tiny"
    with _once_per_session(tmp_path_factory, "trained-run"):
        if not (shared / "manifest.json").is_file():
            train_run(load_run_config(EXAMPLE / "molt.yaml", FAST), shared, show_progress=False)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    shutil.copytree(shared, run_dir, ignore=shutil.ignore_patterns(".molt.lock*"))
    return run_dir


@pytest.fixture(scope="session")
def gemma_base(tmp_path_factory, molting_cache) -> Path:
    """google/gemma-3-270m from the molting[gemma] packages, converted once per cache (a minute or two on
    2 cores; MOLTING_TEST_CACHE keeps it across test runs)."""
    from molting.models.resolve import resolve_base

    with _once_per_session(tmp_path_factory, "gemma-base"):
        return Path(resolve_base("packaged:gemma-3-270m"))
