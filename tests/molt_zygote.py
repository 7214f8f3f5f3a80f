"""A `molt` launcher for the tests: imports molting's CLI and the libraries it loads (torch, transformers, PEFT,
TRL, datasets) once, then forks a child per command. Each child is a process of its own, as `python -m
molting ARGS` is (its own exit code, stdout and stderr, locks, signals, environment and working folder), and
skips the 4-5 s of imports every `molt` subprocess spent before doing anything (conftest.run_molt).

Protocol, one JSON line each way per command: in {"args", "cwd", "env", "stdout", "stderr"} (the last two: files
the child writes to); out {"pid"} once the child runs, then {"returncode"} (negative: the signal that ended it,
as subprocess reports it).
"""

import json
import os
import sys


def _preload() -> None:
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import molting.cli  # noqa: F401


def _child(request: dict) -> None:
    """Runs in the forked child: the command as `python -m molting` would run it; never returns."""
    import runpy
    import traceback

    code = 1
    try:
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["molting", *request["args"]]  # run_module sets argv[0] to molting/__main__.py, as -m does
        try:
            runpy.run_module("molting", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:  # sys.exit(n), or sys.exit("message"): the message on stderr, exit 1
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to flush
                pass
        os._exit(code)


def main() -> None:
    _preload()
    inbox, outbox = sys.stdin, sys.stdout
    for line in inbox:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        outbox.write(json.dumps({"pid": pid}) + "\n")
        outbox.flush()
        _, status = os.waitpid(pid, 0)
        outbox.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        outbox.flush()


if __name__ == "__main__":
    main()
