"""train.extra_args: any other TRL trainer-config field, checked against the dataclass when the config loads,
and passed to the trainer of a real builtin:tiny run."""

import json

import pytest
from conftest import FAST, run_molt, set_args

from molting.config import load_run_config
from molting.errors import UserError
from molting.train.trainer_args import extra_args_for, trainer_configs


def _with_extra_args(project, lines: list[str]) -> int:
    """Writes `lines` under train.extra_args in the project's molt.yaml; returns the line of the first."""
    text = (project / "molt.yaml").read_text()
    block = "train:\n  extra_args:\n" + "".join(f"    {line}\n" for line in lines)
    text = text.replace("train:\n", block, 1)
    (project / "molt.yaml").write_text(text)
    return text.splitlines().index(f"    {lines[0]}") + 1


def test_a_real_run_trains_with_the_extra_args(project, tmp_path):
    """The values reach the trainer: the manifest records them as the trainer held them, and the optimizer
    it built is the one optim names (SGD, not the default AdamW)."""
    extra = ["train.epochs=0.25", "train.extra_args.max_grad_norm=0.5", "train.extra_args.optim=sgd"]
    result = run_molt("train", project / "molt.yaml", "--name", "x", "--runs-dir", tmp_path, *set_args(FAST + extra))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["train"]["extra_args"] == {"max_grad_norm": 0.5, "optim": "sgd"}
    assert manifest["train"]["optimizer"] == "SGD"
    assert "max_grad_norm: 0.5" in (tmp_path / "x" / "config.yaml").read_text()
    log = (tmp_path / "x" / "train_log.jsonl").read_text().splitlines()
    assert log and all("loss" in json.loads(line) for line in log)


def test_a_run_without_extra_args_records_the_default_optimizer(trained_run):
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["train"]["optimizer"] == "AdamW" and manifest["train"]["extra_args"] == {}


def test_unknown_and_molting_owned_fields_are_errors_naming_file_and_line(project, tmp_path):
    line = _with_extra_args(project, ["max_grad_nrom: 0.5", "learning_rate: 0.1", "optim: adamw_foo"])
    result = run_molt("check", project / "molt.yaml", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"molt.yaml:{line}: train.extra_args.max_grad_nrom: not a field of SFTConfig" in result.stderr
    assert "Did you mean max_grad_norm?" in result.stderr
    assert f"molt.yaml:{line + 1}: train.extra_args.learning_rate: molting sets learning_rate" in result.stderr
    assert "train.learning_rate" in result.stderr
    assert f"molt.yaml:{line + 2}: train.extra_args.optim: SFTConfig refuses optim='adamw_foo'" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_grad_norm", "abc", "SFTConfig.max_grad_norm takes a number, got 'abc'"),
        ("packing", "'yes'", "SFTConfig.packing takes true or false, got 'yes'"),
        ("hub_token", "hf_x", "HF_TOKEN in the environment"),
        ("eval_strategy", "steps", r"eval_data \(the held-out conversations\) and train.eval_steps"),
        ("eval_steps", 10, "molting sets eval_steps itself from train.eval_steps"),
        ("beta", 0.5, "preference.beta"),
    ],
)
def test_values_and_fields_refused_through_set(project, key, value, message):
    with pytest.raises(UserError, match=f"train.extra_args.{key}: .*{message}"):
        load_run_config(project / "molt.yaml", [f"train.extra_args.{key}={value}"])


def test_numbers_written_as_text_are_numbers_and_a_set_override_reaches_the_config(project):
    _with_extra_args(project, ["adam_epsilon: 1e-6", "neftune_noise_alpha: 5"])
    config = load_run_config(project / "molt.yaml", ["train.extra_args.max_grad_norm=0.5"])
    assert config.train.extra_args == {"adam_epsilon": 1e-6, "neftune_noise_alpha": 5, "max_grad_norm": 0.5}


def test_each_stage_gets_the_fields_its_config_has(project):
    """sft+dpo: a field of both configs goes to both stages, an SFT-only one to SFT, a DPO-only one to DPO;
    orpo has one config, and an SFT-only field is unknown there."""
    (project / "pairs.jsonl").write_text("")
    pairs = ["preference_data=pairs.jsonl"]
    extra = {"max_grad_norm": 0.5, "packing": True, "precompute_ref_log_probs": True}
    overrides = pairs + ["train.method=sft+dpo"] + [f"train.extra_args.{k}={v}" for k, v in extra.items()]
    config = load_run_config(project / "molt.yaml", overrides)
    sft_config, dpo_config = trainer_configs("sft+dpo")
    assert extra_args_for(sft_config, config.train.extra_args) == {"max_grad_norm": 0.5, "packing": True}
    assert extra_args_for(dpo_config, config.train.extra_args) == {
        "max_grad_norm": 0.5,
        "precompute_ref_log_probs": True,
    }
    with pytest.raises(UserError, match="train.extra_args.packing: not a field of ORPOConfig"):
        load_run_config(project / "molt.yaml", pairs + ["train.method=orpo", "train.extra_args.packing=true"])
    with pytest.raises(UserError, match="train.extra_args.precompute_ref_log_probs: not a field of SFTConfig"):
        load_run_config(project / "molt.yaml", ["train.extra_args.precompute_ref_log_probs=true"])
