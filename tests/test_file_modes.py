"""Files and folders molting puts in place get the permissions the user's umask gives, as any other program's
would: the temporary file or staging folder they are built in is private (mkstemp's 0600, mkdtemp's 0700),
and that must not carry over to a run, an evaluation or an export that someone else reads."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from molting.io import build_dir_once, write_json_atomic, write_set_atomic, write_text_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_and_cache_folders_follow_the_umask(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_text_atomic(tmp_path / "report.md", "# report\n")
    write_json_atomic(tmp_path / "scores.json", {"average": 7.5})
    write_set_atomic({tmp_path / "train.jsonl": "{}\n", tmp_path / "curate.json": "{}"}, tmp_path / "curate.json")
    folder = build_dir_once(tmp_path / "base", lambda d: (d / "config.json").write_text("{}"))
    for name in ("report.md", "scores.json", "train.jsonl", "curate.json"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(folder) == 0o777 & ~umask


def test_another_umask_is_honoured(tmp_path):
    """Under umask 027 (group may read, others nothing) a written file is 0640, not 0600."""
    target = tmp_path / "out.json"
    code = f"from molting.io import write_json_atomic; write_json_atomic({str(target)!r}, {{}})"
    subprocess.run([sys.executable, "-c", code], check=True, preexec_fn=lambda: os.umask(0o027))
    assert _mode(target) == 0o640
