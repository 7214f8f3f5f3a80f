"""conftest.run_molt forks `molt` from a launcher that imported its libraries once (tests/molt_zygote.py): what a
test sees must be what `python -m molting` gives in a fresh process, exit code, stdout and stderr alike."""

import os
import subprocess
import sys

import pytest
from conftest import EXAMPLE, run_molt


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],  # the program name click prints ("python -m molting") comes from how it was started
        ["check", "nope.yaml"],  # a user error: exit 2, one line on stderr
        ["score", str(EXAMPLE / "persona.yaml")],  # a usage error from click
        ["config", "schema", "--help"],
    ],
)
def test_the_launcher_gives_what_a_fresh_process_gives(args, tmp_path):
    fresh = subprocess.run(
        [sys.executable, "-m", "molting", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    forked = run_molt(*args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_a_table_is_as_wide_as_in_a_fresh_process(tmp_path):
    """rich fixes a console's width when molting's consoles are made, at import: the launcher's must be the
    fresh process's (COLUMNS=200), or every table a test reads would wrap differently."""
    from fake_runs import make_run

    answers = {"Q1": ["O João Figueiredo é o desenvolvedor full-stack com quem eu trabalho na Softtor."]}
    a = make_run(tmp_path, "a", answers, [2.0, 1.5])
    b = make_run(tmp_path, "b", answers, [2.0, 1.4])
    test_the_launcher_gives_what_a_fresh_process_gives(["compare", str(a), str(b)], tmp_path)


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs(tmp_path):
    """As subprocess.run(timeout=…): TimeoutExpired, the command's process killed; the launcher goes on."""
    import socket

    from conftest import _launcher

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "runs").mkdir()
    with pytest.raises(subprocess.TimeoutExpired):
        _launcher.run(["serve", str(tmp_path / "runs"), "--port", str(port)], tmp_path, timeout=3)
    with socket.socket() as s:  # the killed server's port is free again (a live listener would still hold it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert run_molt("--version").returncode == 0
