"""Past one device: `molt train --nproc 2` runs two real DDP processes under torchrun on
the CPU (gloo); both train their share of the data, rank 0 alone writes the run files and the adapter."""

import json
import re
from pathlib import Path

import yaml
from conftest import FAST, REPO, run_molt, set_args

from molting.train.launch import without_nproc


def test_two_processes_train_and_rank_0_writes_one_adapter(project, tmp_path):
    runs = tmp_path / "runs"
    result = run_molt(
        "train",
        project / "molt.yaml",
        *set_args(FAST + ["train.epochs=0.25"]),
        "--runs-dir",
        runs,
        "--name",
        "ddp",
        "--nproc",
        "2",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 127 conversations in batches of 4 is 32 batches; each of 2 ranks takes 16, a quarter epoch is 4 steps
    ranks = dict(re.findall(r"rank (\d) of 2: (\d+ optimizer steps, \d+ batches)", result.stdout))
    assert ranks == {"0": "4 optimizer steps, 16 batches", "1": "4 optimizer steps, 16 batches"}, result.stdout
    run_dir = runs / "ddp"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["train"]["world_size"] == 2 and manifest["train"]["optimizer_steps"] == 4
    preflight = json.loads((run_dir / "preflight.json").read_text())
    assert preflight["steps"]["world_size"] == 2 and preflight["steps"]["total_steps"] == 4
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1], "one writer: rank 0 logs each step once"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == [
        "adapter",
        "config.yaml",
        "manifest.json",
        "preflight.json",
        "train_log.jsonl",
    ]
    assert result.stdout.count("adapter in") == 1


def test_nproc_is_dropped_from_the_command_torchrun_runs():
    assert without_nproc(["train", "c.yaml", "--nproc", "2", "--name", "x"]) == ["train", "c.yaml", "--name", "x"]
    assert without_nproc(["train", "--nproc=4", "c.yaml"]) == ["train", "c.yaml"]


def test_shipped_accelerate_configs_parse_and_say_how_to_run():
    folder = Path(REPO) / "examples" / "accelerate"
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        assert text.startswith(
            f"# Run with: accelerate launch --config_file examples/accelerate/{path.name} -m molting"
        )
        kinds[path.stem] = yaml.safe_load(text)["distributed_type"]
    assert kinds == {"ddp": "MULTI_GPU", "deepspeed": "DEEPSPEED", "fsdp": "FSDP"}
