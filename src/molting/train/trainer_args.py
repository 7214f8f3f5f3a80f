"""train.extra_args: any other field of TRL's trainer configs (SFTConfig, DPOConfig, ORPOConfig), for the
settings molt.yaml has no name of its own for: optim, max_grad_norm, neftune_noise_alpha, adam_beta2, ….

Reached from `config.load_run_config`, which checks the mapping with `check_extra_args` (unknown fields,
fields molting sets from its own settings, values the dataclass refuses), and from `train.sft` and
`train.preference`, which pass each stage the keys its config class has (`extra_args_for`). A key goes to every
stage whose config has the field: with train.method sft+dpo, `max_grad_norm` reaches both SFT and DPO, and
`packing` (an SFTConfig field only) the SFT stage alone.
"""

import dataclasses
import difflib
import os
import types
import typing
from typing import Any

# Fields molting sets from its own settings (train.sft's common_args, the DPO and ORPO stages), and why a
# value in extra_args would be wrong there: one setting, one name, or the run would say two things at once.
MOLTING_SETS = {
    "output_dir": "the run directory (`molt train CONFIG --name NAME --runs-dir DIR`)",
    "per_device_train_batch_size": "train.batch_size (preference.batch_size for the DPO stage)",
    "gradient_accumulation_steps": "train.grad_accum",
    "num_train_epochs": "train.epochs (preference.epochs for the DPO stage)",
    "max_steps": "train.epochs, from which `molt check` counts the steps (fractions work: 0.5 is half an epoch)",
    "learning_rate": "train.learning_rate (preference.learning_rate for the DPO stage)",
    "lr_scheduler_type": "train.lr_scheduler",
    "warmup_steps": "train.warmup_steps (preference.warmup_steps for the DPO stage)",
    "weight_decay": "train.weight_decay",
    "logging_steps": "train.logging_steps",
    "logging_strategy": "train.logging_steps",
    "logging_first_step": "train.logging_steps (the first step is always logged)",
    "save_strategy": "train.save_steps (0: no checkpoints)",
    "save_steps": "train.save_steps",
    "save_total_limit": "train.save_total_limit",
    "resume_from_checkpoint": "`molt train --resume`",
    "report_to": "train.report_to",
    "seed": "train.seed",
    "data_seed": "train.seed",
    "max_length": "train.max_length",
    "bf16": "train.dtype",
    "fp16": "train.dtype",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "activation_checkpointing": "train.gradient_checkpointing",
    "use_cpu": "the device molting picks (a CUDA GPU when one is visible; CUDA_VISIBLE_DEVICES= hides it)",
    "ddp_backend": "the launcher (`molt train --nproc`, accelerate launch or torchrun)",
    "disable_tqdm": "molt train's own progress bar",
    "dataloader_num_workers": "molting's data loading (pre-tokenized rows in memory, 0 workers)",
    "chat_template_path": "chat_template",
    "assistant_only_loss": "molting's own assistant-only loss mask (chat_format), used for every template",
    "completion_only_loss": "molting's own assistant-only loss mask (chat_format), used for every template",
    "remove_unused_columns": "molting's pre-tokenized rows",
    "eval_strategy": "eval_data (the held-out conversations) and train.eval_steps",
    "eval_steps": "train.eval_steps",
    "do_eval": "eval_data (the held-out conversations)",
    "per_device_eval_batch_size": "train.batch_size (held-out batches are as large as training's, which the memory "
    "check covers)",
    "beta": "preference.beta",
    "loss_type": "preference.rpo_alpha (sigmoid, plus the SFT term when rpo_alpha > 0)",
    "loss_weights": "preference.rpo_alpha",
    "disable_dropout": "lora.dropout",
    "hub_token": "HF_TOKEN in the environment: molt.yaml is copied into the run directory, and no token may "
    "land in a run file",
}


def trainer_configs(method: str) -> list[type]:
    """The TRL config classes the stages of `method` are built from (importing TRL: seconds)."""
    if method == "orpo":
        # ORPO lives in trl.experimental; the pinned TRL is what is tested (see train.preference.orpo_trainer).
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.orpo import ORPOConfig

        return [ORPOConfig]
    from trl import SFTConfig

    if method == "sft+dpo":
        from trl import DPOConfig

        return [SFTConfig, DPOConfig]
    return [SFTConfig]


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def extra_args_for(cls: type, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The keys of train.extra_args that `cls` (one stage's config class) has."""
    names = _field_names(cls)
    return {k: v for k, v in extra_args.items() if k in names}


def _simple_type(tp: Any) -> tuple[type, ...] | None:
    """The Python types a value of annotation `tp` may have, for the plain annotations (float, int, bool, str,
    optionally None); None for anything richer, which the dataclass itself checks."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if not all(o in (float, int, bool, str, type(None)) for o in options):
        return None
    return tuple(options)


def _type_problem(value: Any, allowed: tuple[type, ...]) -> str | None:
    """None when `value` fits `allowed`, else what the field takes, in YAML's words."""
    if value is None:
        fits = type(None) in allowed
    elif isinstance(value, bool):
        fits = bool in allowed
    elif isinstance(value, int):
        fits = int in allowed or float in allowed
    else:
        fits = isinstance(value, allowed)
    if fits:
        return None
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    return " or ".join(words[t] for t in allowed)


_DOCS = {"SFTConfig": "sft_trainer", "DPOConfig": "dpo_trainer", "ORPOConfig": "orpo_trainer"}


def check_extra_args(extra_args: dict[str, Any], method: str) -> tuple[dict[str, Any], dict[str, str]]:
    """train.extra_args under train.method `method`: (the mapping with numbers written as text, like `1e-3`,
    read as numbers where the field takes a number; key -> what is wrong, for every bad key)."""
    if not extra_args:
        return {}, {}
    configs = trainer_configs(method)
    known = set().union(*(_field_names(c) for c in configs))
    names = " or ".join(c.__name__ for c in configs)
    docs = ", ".join(f"https://huggingface.co/docs/trl/{_DOCS[c.__name__]}" for c in configs)
    resolved, problems = {}, {}
    for key, value in extra_args.items():
        resolved[key] = value
        if key in MOLTING_SETS:
            problems[key] = f"molting sets {key} itself from {MOLTING_SETS[key]}; set that instead."
            continue
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            problems[key] = (
                f"not a field of {names}, the trainer config of train.method {method}.{hint} Its fields: {docs}."
            )
            continue
        for cls in configs:
            if key not in _field_names(cls):
                continue
            allowed = _simple_type(typing.get_type_hints(cls).get(key))
            if allowed and float in allowed and str not in allowed and isinstance(value, str):
                try:  # YAML reads 1e-3 (no dot) as text; the config's own float fields accept it too
                    value = resolved[key] = float(value)
                except ValueError:
                    pass
            wanted = _type_problem(value, allowed) if allowed else None
            if wanted:
                problems[key] = f"{cls.__name__}.{key} takes {wanted}, got {value!r}."
                break
            try:  # the dataclass's own checks (optim names, scheduler kwargs, …), on this one key
                cls(output_dir=os.devnull, use_cpu=True, **{key: value})
            except Exception as e:  # noqa: BLE001 - any refusal of the value is the user's to fix
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                problems[key] = f"{cls.__name__} refuses {key}={value!r}: {first}"
                break
    return resolved, problems


def as_the_trainer_holds(args, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra_args keys `args` (a trainer's config object) has, read back from it for the manifest: what the
    trainer ran with, after its own conversions (optim "sgd" is OptimizerNames.SGD, recorded as "sgd")."""
    import enum
    import json

    held = {}
    for key in extra_args:
        if not hasattr(args, key):
            continue
        value = getattr(args, key)
        if isinstance(value, enum.Enum):
            value = value.value
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        held[key] = value
    return held
