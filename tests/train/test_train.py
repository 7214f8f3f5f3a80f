"""LoRA training: real TRL/PEFT training on builtin:tiny, assistant-only loss, the run files."""

import json

import pytest
import torch
from conftest import EXAMPLE, FAST, run_molt, set_args
from safetensors.torch import load_file

from molting.card.persona import load_persona
from molting.data.dataset import load_dataset
from molting.evaluate.run import assistant_token_loss
from molting.io import sha256_file
from molting.models.base_model import load_model, load_tokenizer
from molting.models.chat_format import tokenize_conversation
from molting.models.hardware import cpu_supports_bf16


def test_assistant_mask_covers_exactly_the_answers_and_their_eos():
    tokenizer = load_tokenizer("builtin:tiny")
    messages = [
        {"role": "system", "content": "Você é o Cláudio."},
        {"role": "user", "content": "Oi?"},
        {"role": "assistant", "content": "Olá, João!"},
        {"role": "user", "content": "Tudo certo?"},
        {"role": "assistant", "content": "Tudo, e com você?"},
    ]
    t = tokenize_conversation(tokenizer, messages)
    supervised = [i for i, m in zip(t.input_ids, t.assistant_mask, strict=True) if m]
    assert tokenizer.decode(supervised) == "Olá, João!</s>Tudo, e com você?</s>"
    assert len(t.assistant_turns) == 2
    for _start, end in t.assistant_turns:
        assert t.input_ids[end - 1] == tokenizer.eos_token_id
    assert sum(t.role_tokens.values()) == len(t.input_ids)


def test_training_writes_the_run_files(trained_run):
    adapter = trained_run / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.glob("*.bin")), "adapters are safetensors only"
    assert (adapter / "tokenizer.json").is_file()
    assert "<|assistant|>" in (adapter / "chat_template.jinja").read_text()
    assert not (trained_run / "checkpoints").exists(), "checkpoints are pruned on success"

    log = [json.loads(line) for line in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 1
    for row in log:
        assert {"step", "epoch", "loss", "lr", "grad_norm", "elapsed_s", "peak_rss_mb"} <= set(row)
    assert [r["step"] for r in log] == sorted(r["step"] for r in log)

    manifest = json.loads((trained_run / "manifest.json").read_text())
    preflight = json.loads((trained_run / "preflight.json").read_text())
    assert manifest["train"]["optimizer_steps"] == preflight["steps"]["total_steps"] == 32
    assert manifest["inputs"]["data"]["sha256"] == sha256_file(EXAMPLE / "data.jsonl")
    assert manifest["inputs"]["persona"]["sha256"] == sha256_file(EXAMPLE / "persona.yaml")
    assert manifest["inputs"]["suite"]["sha256"] == sha256_file(EXAMPLE / "suite.yaml")
    assert manifest["versions"]["transformers"] and manifest["versions"]["trl"] and manifest["versions"]["peft"]
    assert manifest["memory"]["peak_rss_mb"] > 100
    assert manifest["train"]["loss_by_epoch"][0]["epoch"] == 1
    assert manifest["train"]["final_loss"] == log[-1]["loss"]
    assert manifest["train"]["lora_dropout"] == 0.0  # CPU default
    assert manifest["train"]["dtype"] == "float32"  # fp32 weights on CPU
    # bf16 autocast only where the CPU has native bf16
    assert manifest["train"]["mixed_precision"] == ("bf16" if cpu_supports_bf16() else "no")
    config = (trained_run / "config.yaml").read_text()
    assert "builtin:tiny" in config and "max_length: 1024" in config


def test_training_changed_the_adapter_and_lowered_the_loss(trained_run):
    weights = load_file(trained_run / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b, "the adapter has LoRA B matrices"
    # PEFT initialises every B to zero; training must have moved them.
    assert all(torch.count_nonzero(w) > 0 for w in lora_b)
    # and the model got better at the persona's answers: assistant-token loss on training conversations
    from peft import PeftModel

    persona = load_persona(EXAMPLE / "persona.yaml")
    conversations = load_dataset(EXAMPLE / "data.jsonl", persona.system_prompts.train)[:20]
    tokenizer = load_tokenizer("builtin:tiny")
    before = assistant_token_loss(load_model("builtin:tiny"), tokenizer, conversations)
    tuned = PeftModel.from_pretrained(load_model("builtin:tiny"), str(trained_run / "adapter"))
    after = assistant_token_loss(tuned, tokenizer, conversations)
    assert after < before - 0.1, (before, after)


def test_train_refuses_when_the_preflight_fails(project, tmp_path):
    result = run_molt(
        "train",
        project / "molt.yaml",
        *set_args(FAST + ["train.max_length=64"]),
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "cut",
    )
    assert result.returncode == 2
    assert "molt check found errors" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "cut" / "adapter").exists()
    assert json.loads((tmp_path / "runs" / "cut" / "preflight.json").read_text())["ok"] is False


@pytest.mark.parametrize("target", [["q_proj", "v_proj"]])
def test_target_modules_and_rank_reach_peft(project, tmp_path, target):
    from molting.config import load_run_config
    from molting.train.sft import train_run

    config = load_run_config(
        project / "molt.yaml", FAST + ["lora.r=4", f"lora.target_modules=[{','.join(target)}]", "train.epochs=0.25"]
    )
    train_run(config, tmp_path / "run", show_progress=False)
    adapter_config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and sorted(adapter_config["target_modules"]) == sorted(target)


def test_a_trained_run_is_not_overwritten_by_accident(trained_run):
    from molting.config import load_run_config
    from molting.errors import UserError
    from molting.train.sft import train_run

    before = (trained_run / "adapter" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(UserError, match="--overwrite"):
        train_run(load_run_config(EXAMPLE / "molt.yaml", FAST), trained_run, show_progress=False)
    assert (trained_run / "adapter" / "adapter_model.safetensors").read_bytes() == before


def test_overwrite_replaces_the_run_and_drops_its_stale_evals(project, tmp_path):
    runs = tmp_path / "runs"
    args = ["train", project / "molt.yaml", *set_args(FAST + ["train.epochs=0.25"]), "--runs-dir", runs, "--name", "r"]
    assert run_molt(*args).returncode == 0
    (runs / "r" / "eval" / "final").mkdir(parents=True)
    (runs / "r" / "eval" / "final" / "scores.json").write_text("{}")
    again = run_molt(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run_molt(*args, "--overwrite").returncode == 0
    assert not (runs / "r" / "eval").exists()
    assert (runs / "r" / "adapter" / "adapter_model.safetensors").is_file()


def test_report_to_tensorboard_writes_events_tensorboard_reads(project, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from molting.config import load_run_config
    from molting.train.sft import train_run

    config = load_run_config(project / "molt.yaml", FAST + ["train.epochs=0.25", "train.report_to=tensorboard"])
    train_run(config, tmp_path / "run", show_progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [r["step"] for r in logged]
    assert [round(e.value, 4) for e in losses] == pytest.approx([r["loss"] for r in logged], abs=1e-4)
    assert not (tmp_path / "run" / "checkpoints").exists()  # the events are not under the pruned folder


def test_report_to_a_tracker_that_is_not_installed_says_what_to_install(project, tmp_path, monkeypatch):
    import importlib.util

    from molting.config import load_run_config
    from molting.errors import UserError
    from molting.train.sft import train_run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    config = load_run_config(project / "molt.yaml", FAST + ["train.epochs=0.25", "train.report_to=wandb"])
    with pytest.raises(UserError, match="train.report_to: wandb: its package is not installed. pip install wandb"):
        train_run(config, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "adapter").exists()
