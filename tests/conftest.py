"""Shared fixtures: a molting cache for the session, the example persona copied per test, one real
training run on builtin:tiny shared by the eval and report tests, and a helper that runs the real `molt`
command in a subprocess (exit codes and stderr as a user sees them)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "claudio"

# Settings that keep a builtin:tiny run to seconds; the trainer still runs for real.
FAST = [
    "base_model=builtin:tiny",
    "train.epochs=1",
    "train.learning_rate=2e-3",
    "check.min_steps=1",
    "generation.max_new_tokens=24",
]


@pytest.fixture(scope="session", autouse=True)
def molting_cache(tmp_path_factory):
    """Builtin bases are built once per session (or reused from MOLTING_TEST_CACHE when set)."""
    cache = os.environ.get("MOLTING_TEST_CACHE") or str(tmp_path_factory.mktemp("molting-cache"))
    os.environ["MOLTING_CACHE"] = cache
    os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
    # Build builtin:tiny here, in-process, once: otherwise the first test that needs it builds it inside a
    # subprocess with a timeout meant for the test's own work.
    from molting.models.builtin_base import builtin_path

    builtin_path("builtin:tiny")
    return Path(cache)


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the example persona project, safe to edit."""
    target = tmp_path / "claudio"
    shutil.copytree(EXAMPLE, target)
    return target


def run_molt(*args, cwd=None, check=False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "molting", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"molt {' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def set_args(overrides: list[str]) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, molting_cache) -> Path:
    """One real LoRA run on builtin:tiny over the whole example dataset (1 epoch, 32 optimizer steps)."""
    from molting.config import load_run_config
    from molting.train.sft import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = load_run_config(EXAMPLE / "molt.yaml", FAST)
    train_run(config, run_dir, show_progress=False)
    return run_dir


@pytest.fixture(scope="session")
def gemma_base(molting_cache) -> Path:
    """google/gemma-3-270m from the molting[gemma] packages, converted once per cache (a minute or two on
    2 cores; MOLTING_TEST_CACHE keeps it across test runs)."""
    from molting.models.resolve import resolve_base

    return Path(resolve_base("packaged:gemma-3-270m"))
