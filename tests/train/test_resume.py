"""Crash-safe resume: a real `molt train` killed with SIGKILL mid-run, resumed from its
newest complete checkpoint, ends with the same log an uninterrupted run writes; a checkpoint without its
completion marker is never resumed from; a run directory in use by another `molt train` is refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLE, FAST, run_molt, set_args

from molting.io import sha256_file
from molting.train.checkpoints import MARKER, newest_complete_checkpoint, remove_incomplete_checkpoints, truncate_log


def _wait_for(predicate, timeout: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_sigkill_mid_run_then_resume_continues_the_same_run(project, tmp_path, trained_run):
    """FAST + checkpoints every 5 steps: the same training as the `trained_run` fixture (checkpointing does not
    change the math), so the resumed log must match that uninterrupted run row for row."""
    runs = tmp_path / "runs"
    run_dir = runs / "r"
    args = ["train", project / "molt.yaml", *set_args(FAST + ["train.save_steps=5"]), "--runs-dir", runs, "--name", "r"]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "molting", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = run_dir / "checkpoints" / "checkpoint-5" / MARKER
        assert _wait_for(first.is_file, 600, proc), f"no complete checkpoint appeared: {proc.stderr.read()}"
        # Paused (it keeps its lock), so that it cannot finish while a second molt train on the same run
        # directory starts; that one is refused.
        proc.send_signal(signal.SIGSTOP)
        second = run_molt(*args, "--resume")
        assert second.returncode == 2, second.stderr
        assert "in use by another molt train" in second.stderr and f"pid {proc.pid}" in second.stderr
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run_dir / "adapter").exists()
    # a checkpoint the kill caught half-written: folder and files there, completion marker not yet
    newest = newest_complete_checkpoint(run_dir / "checkpoints")
    torn = run_dir / "checkpoints" / "checkpoint-999"
    shutil.copytree(newest[1], torn)
    (torn / MARKER).unlink()

    plain = run_molt(*args)
    assert plain.returncode == 2 and "--resume" in plain.stderr  # never silently starts over
    resumed = run_molt(*args, "--resume")  # the lock died with the killed process
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from the checkpoint at step {newest[0]}" in resumed.stdout

    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in reference] == [1, 5, 10, 15, 20, 25, 30]
    for got, want in zip(log, reference, strict=True):  # same learning-rate schedule and data order
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-6), (got, want)
        assert got["loss"] == pytest.approx(want["loss"], abs=0.02), (got, want)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["train"]["optimizer_steps"] == 32 and manifest["train"]["resumed_from_step"] == newest[0]
    assert not (run_dir / "checkpoints").exists(), "checkpoints are pruned on success"


def test_only_marked_checkpoints_count_and_the_log_is_cut_back(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (folder / f"checkpoint-{step}" / MARKER).write_text("{}")
    assert newest_complete_checkpoint(folder) == (4, folder / "checkpoint-4")
    assert remove_incomplete_checkpoints(folder) == [folder / "checkpoint-6"]
    assert not (folder / "checkpoint-6").exists()
    assert newest_complete_checkpoint(tmp_path / "none") is None

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4, 5)) + '{"step": 6, "lo')
    assert [r["step"] for r in truncate_log(log, 4)] == [1, 2, 3, 4]
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


def test_resume_refuses_a_changed_config(tmp_path):
    from molting.config import load_run_config
    from molting.errors import UserError
    from molting.train.sft import save_resolved_config, train_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_resolved_config(load_run_config(EXAMPLE / "molt.yaml", FAST), run_dir)
    with pytest.raises(UserError, match=r"train\.epochs \(1\.0 -> 2\.0\)"):
        train_run(load_run_config(EXAMPLE / "molt.yaml", FAST + ["train.epochs=2"]), run_dir, resume=True)


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    """Two processes: a holder of the lock, SIGKILLed, and this one, which then gets the lock."""
    from molting.errors import UserError
    from molting.train.run_lock import run_lock

    code = (
        "import sys, time; from molting.train.run_lock import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid}"), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):
        pass


def test_commands_import_and_lock_without_fcntl(tmp_path):
    """Windows has no fcntl: with it made unimportable, molt train's and molt serve's modules import, and the
    run and score-file locks still exclude a second holder (filelock's fallback where flock is missing)."""
    code = f"""
import os, sys
sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError, as on Windows
import molting.cli, molting.train.sft, molting.report.dashboard, molting.evaluate.run
from molting.errors import UserError
from molting.evaluate.human_scores import locked
from molting.train.run_lock import run_lock
from pathlib import Path
run = Path({str(tmp_path)!r}) / "run"
with run_lock(run, "molt eval"):
    try:
        with run_lock(run):
            sys.exit("a second holder got the lock")
    except UserError as e:
        print(os.getpid(), e)
with run_lock(run), locked(run / "manual_scores.json"):
    print("fcntl" in sys.modules and sys.modules["fcntl"] is not None)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    refused, fcntl_loaded = result.stdout.strip().splitlines()
    pid, message = refused.split(" ", 1)
    assert f"is in use by another molt eval (pid {pid})" in message, message
    assert fcntl_loaded == "False"


def _files(run_dir) -> dict[str, bytes]:
    """Every file of a run directory but its lock files and an overwrite in progress, with its bytes."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not p.name.startswith(".molt.lock") and ".overwrite" not in p.relative_to(run_dir).parts
    }


def test_an_interrupted_overwrite_leaves_the_old_run_whole(project, tmp_path, trained_run):
    """`molt train --overwrite` SIGKILLed mid-run: the old adapter, its evaluation, report and config are as
    they were; `molt eval` is refused while the overwrite runs; `--resume` completes it, and only then is
    the old run replaced. An evaluation of the old adapter put back beside the new one is refused by
    `molt report`."""
    from molting.evaluate.run import eval_run

    runs = tmp_path / "runs"
    run_dir = runs / "r"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("eval", "report.md", "export"))
    eval_run(run_dir, "old", samples=1, probes=False, overrides=["generation.max_new_tokens=8"], show_progress=False)
    assert run_molt("report", run_dir).returncode == 0
    old = _files(run_dir)
    assert "eval/old/scores.json" in old and "report.md" in old
    kept_eval = tmp_path / "old-eval"
    shutil.copytree(run_dir / "eval" / "old", kept_eval)

    settings = FAST + ["train.save_steps=5", "train.seed=7"]
    args = ["train", project / "molt.yaml", *set_args(settings), "--runs-dir", runs, "--name", "r"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "molting", *map(str, args), "--overwrite"],
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = run_dir / ".overwrite" / "checkpoints" / "checkpoint-5" / MARKER
        assert _wait_for(first.is_file, 600, proc), f"no complete checkpoint appeared: {proc.stderr.read()}"
        proc.send_signal(signal.SIGSTOP)  # holding the lock: an evaluation must wait for it
        refused = run_molt("eval", run_dir, "--id", "during")
        assert refused.returncode == 2 and "in use by another molt train" in refused.stderr, refused.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _files(run_dir) == old  # nothing of the old run changed or went missing
    assert (run_dir / ".overwrite" / "train_log.jsonl").is_file()
    assert run_molt("report", run_dir).returncode == 0  # still a consistent run

    resumed = run_molt(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint at step" in resumed.stdout
    assert not (run_dir / ".overwrite").exists() and not (run_dir / ".replaced").exists()
    assert not (run_dir / "eval").exists() and not (run_dir / "report.md").exists()
    new = _files(run_dir)
    assert new["adapter/adapter_model.safetensors"] != old["adapter/adapter_model.safetensors"]
    manifest = json.loads(new["manifest.json"])
    assert manifest["run"] == "r" and manifest["config"]["train"]["seed"] == 7
    assert manifest["train"]["adapter_sha256"] == sha256_file(run_dir / "adapter" / "adapter_model.safetensors")

    shutil.copytree(kept_eval, run_dir / "eval" / "old")  # the old adapter's answers, beside the new adapter
    report = run_molt("report", run_dir)
    assert report.returncode == 2 and "answered by the adapter with sha256" in report.stderr, report.stderr
    assert "molt eval" in report.stderr
