"""Crash-safe checkpoints for `molt train --resume`.

The Trainer writes `RUN_DIR/checkpoints/checkpoint-<step>/` every `train.save_steps` optimizer steps
(adapter, optimizer, scheduler, RNG states, trainer state). A checkpoint counts as complete only once
`MARKER` exists in it, written atomically by `CheckpointMarker` after the Trainer has finished saving: a
checkpoint that was being written when the process was killed has no marker and is never resumed from.
The marker callback also keeps only the newest `train.save_total_limit` complete checkpoints — pruning
after marking, so that a crash can never leave zero complete checkpoints behind.

On resume, `train_log.jsonl` is cut back to the checkpoint's step (`truncate_log`), so the resumed run
appends each later step exactly once.
"""

import json
import re
import shutil
from pathlib import Path

from molting.io import jsonl_lines, write_json_atomic, write_jsonl_atomic

MARKER = "molting_complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(folder: Path) -> list[tuple[int, Path]]:
    """Every `checkpoint-<step>` folder, complete or not, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    return [(step, p) for step, p in checkpoint_dirs(folder) if (p / MARKER).is_file()]


def newest_complete_checkpoint(folder: Path) -> tuple[int, Path] | None:
    complete = complete_checkpoints(folder)
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(folder: Path) -> list[Path]:
    """Delete checkpoint folders without the marker (a save cut short); returns what was removed."""
    removed = []
    for _, path in checkpoint_dirs(folder):
        if not (path / MARKER).is_file():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints (0 keeps all)."""
    if keep <= 0:
        return
    for _, path in complete_checkpoints(folder)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def truncate_log(log_path: Path, step: int) -> list[dict]:
    """Cut train_log.jsonl back to the rows at or before `step`; returns the rows kept. A torn last line
    (the process killed mid-write) is dropped with the rest."""
    log_path = Path(log_path)
    kept = []
    if log_path.is_file():
        for line in jsonl_lines(log_path.read_text(encoding="utf-8")):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                kept.append(row)
    write_jsonl_atomic(log_path, kept)
    return kept


def checkpoint_marker_callback(folder: Path, keep: int):
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        """After the Trainer has saved a checkpoint: mark it complete, then prune the old ones."""

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path = Path(folder) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                write_json_atomic(path / MARKER, {"step": state.global_step, "epoch": state.epoch})
                prune_checkpoints(folder, keep)

    return CheckpointMarker()
