"""The run config (molt.yaml): which base, which persona files, and the LoRA/training/generation settings.

Reached through `load_run_config(path, overrides)`. YAML only overrides the defaults below; the defaults
are what worked in the logs (LoRA r=16 α=32, lr 1e-4, max_length 1024). Relative paths in the file are
taken from the file's own folder. The resolved config (every default filled in, paths absolute) is
written to the run directory as config.yaml.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from molting.errors import UserError
from molting.yaml_source import FieldValueError, YamlDoc, build, load_yaml, placeholder_problems


@dataclass
class LoraSettings:
    r: int = 16  # adapter rank (the logs: 16; r=32 was their next idea)
    alpha: int = 32  # scaling numerator: the update is scaled by alpha / r
    # LoRA dropout. None means 0.05 on a GPU and 0 on a CPU, where dropout costs time and tiny runs
    # gain nothing from it.
    dropout: float | None = None
    # Which linear layers get adapters: "all-linear" (PEFT picks every linear but the output head),
    # or a list of module names, e.g. [q_proj, k_proj, v_proj, o_proj].
    target_modules: str | list[str] = "all-linear"
    # Modules trained in full and saved beside the adapter. Empty for real models; the builtin bases
    # (random weights) need [embed_tokens, lm_head] to learn words at all, see examples/claudio/molt.yaml.
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.r < 1:
            raise FieldValueError("r", "LoRA rank must be at least 1 (the logs used 16).")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FieldValueError("dropout", "dropout must be in [0, 1).")


@dataclass
class TrainSettings:
    epochs: float = 8  # passes over the dataset (phase 7: 8 epochs)
    learning_rate: float = 1e-4
    batch_size: int = 4  # examples per forward pass
    grad_accum: int = 1  # forward passes per optimizer step; effective batch = batch_size × grad_accum
    # Longest training example in tokens (system + user + assistant). `molt check` fails when an
    # assistant token would be cut off: phase 7 lost answers at 512.
    max_length: int = 1024
    warmup_steps: int = 10
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: float = 0.0
    seed: int = 42
    logging_steps: int = 5  # one line in train_log.jsonl every this many optimizer steps
    # Weights dtype. "auto": bf16 on a GPU that supports it, fp16 on other GPUs; on a CPU fp32 weights,
    # trained with bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX), plain fp32 otherwise.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gradient_checkpointing: bool = False  # trade compute for memory on long examples
    # Load the base quantised with bitsandbytes (QLoRA): "4bit" is NF4 with double quantisation and bf16
    # (or fp16) compute, quantised tensor by tensor while loading so full-precision weights never fill the
    # GPU; "8bit" is LLM.int8. Needs a CUDA GPU and `pip install molting[gpu]`. A base whose config.json
    # already has a quantization_config (a pre-quantised checkpoint) loads as it was saved.
    quantization: Literal["none", "4bit", "8bit"] = "none"
    # A checkpoint every this many optimizer steps, for `molt train --resume` after a crash (0: none).
    save_steps: int = 50
    save_total_limit: int = 2  # complete checkpoints kept (the newest); 0 keeps all
    # sft: supervised fine-tuning on data.jsonl only. sft+dpo: then DPO on `preference_data` (pairs from
    # `molt augment`) on the same LoRA adapter, with the SFT adapter as the reference model and an NLL
    # term on the chosen answer (preference.rpo_alpha). Settings of the DPO stage: `preference:`.
    # orpo: one stage from the base (ORPO, Hong et al. 2024) over the pairs and data.jsonl together, with
    # train's epochs, learning_rate and batch_size, and preference.beta as ORPO's lambda.
    method: Literal["sft", "sft+dpo", "orpo"] = "sft"

    def __post_init__(self):
        if self.save_steps < 0 or self.save_total_limit < 0:
            raise FieldValueError("save_steps", "save_steps and save_total_limit cannot be negative.")
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise FieldValueError(name, f"{name} must be at least 1.")
        if self.epochs <= 0:
            raise FieldValueError("epochs", "epochs must be positive.")
        if self.learning_rate <= 0:
            raise FieldValueError("learning_rate", "learning_rate must be positive.")
        if self.warmup_steps < 0:
            raise FieldValueError("warmup_steps", "warmup_steps cannot be negative.")


@dataclass
class PreferenceSettings:
    """The DPO stage of train.method sft+dpo (TRL's DPOTrainer). Its other settings (max_length,
    grad_accum, scheduler, seed, dtype, logging) are train's. train.method orpo uses only `beta` (as
    ORPO's lambda); its epochs, learning rate and batch size are train's."""

    epochs: float = 3  # passes over the preference pairs
    # DPO moves log-ratios against a reference, so it wants a smaller step than SFT (TRL's default for
    # full fine-tuning is 1e-6; LoRA adapters take larger ones).
    learning_rate: float = 5e-5
    # DPO: how far from the SFT model the adapter may drift (higher: less). ORPO: lambda, the weight of
    # the odds-ratio term against the NLL term (the paper's and TRL's default 0.1).
    beta: float = 0.1
    # Weight of the NLL loss on the chosen answer added to the DPO loss (RPO, Pang et al. 2024): keeps the
    # chosen answer likely while the rejected one is pushed down. 0 is plain DPO.
    rpo_alpha: float = 1.0
    batch_size: int | None = None  # pairs per forward pass; None: train.batch_size
    warmup_steps: int = 0

    def __post_init__(self):
        if self.epochs <= 0:
            raise FieldValueError("epochs", "epochs must be positive.")
        if self.learning_rate <= 0:
            raise FieldValueError("learning_rate", "learning_rate must be positive.")
        if self.beta <= 0:
            raise FieldValueError("beta", "beta must be positive (TRL's default is 0.1).")
        if self.rpo_alpha < 0:
            raise FieldValueError("rpo_alpha", "rpo_alpha cannot be negative (0 is plain DPO).")
        if self.batch_size is not None and self.batch_size < 1:
            raise FieldValueError("batch_size", "batch_size must be at least 1.")
        if self.warmup_steps < 0:
            raise FieldValueError("warmup_steps", "warmup_steps cannot be negative.")


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256  # longest answer; an answer that hits it is reported as truncated
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    batch_size: int = 16  # questions generated together (left-padded)
    # Sampling seed. Sample k of every question uses seed + k (recorded in responses.jsonl), and each batch
    # is seeded from that and its position, so a rerun with the same settings gives the same answers.
    seed: int = 0
    # Answers per question (and per paraphrase and probe). More than 1 needs temperature > 0: greedy
    # answers are all the same. `molt eval` reports each question's mean with a 95% bootstrap interval.
    samples: int = 1

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise FieldValueError("max_new_tokens", "max_new_tokens must be at least 1.")
        if self.temperature < 0:
            raise FieldValueError("temperature", "temperature cannot be negative (0 is greedy).")
        if self.batch_size < 1:
            raise FieldValueError("batch_size", "batch_size must be at least 1.")
        if self.samples < 1:
            raise FieldValueError("samples", "samples must be at least 1.")


@dataclass
class CheckSettings:
    min_steps: int = 100  # fewer optimizer steps than this is a warning (phase 6 trained 50)
    allow_truncation: bool = False  # if true, lost assistant tokens are a warning, not an error
    # Memory (GB) to check the predicted peak against, instead of the free memory of this machine's GPU
    # (or its RAM on a CPU): plan for the machine you will train on.
    memory_gb: float | None = None

    def __post_init__(self):
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise FieldValueError("memory_gb", "memory_gb must be positive (or left out to use this machine's).")


@dataclass
class JudgeSettings:
    """An LLM judge (any OpenAI-compatible chat endpoint) scoring answers beside rubric v1's detectors."""

    url: str | None = None  # e.g. http://127.0.0.1:8080/v1 (llama.cpp server), http://localhost:11434/v1 (Ollama)
    model: str | None = None  # model name as the server knows it
    api_key_env: str | None = "OPENAI_API_KEY"  # environment variable holding the key (never the key itself)
    timeout: float = 60.0  # seconds per judge call before it counts as failed
    retries: int = 2  # retries per call after the first attempt
    dims: list[str] = field(default_factory=lambda: ["D1", "D2", "D3", "D4", "D5"])  # dimensions the judge scores
    concurrency: int = 4  # judge calls in flight at once
    json_mode: bool = False  # also send response_format {"type": "json_object"} (servers that support it)

    def __post_init__(self):
        unknown = [d for d in self.dims if d not in ("D1", "D2", "D3", "D4", "D5")]
        if unknown:
            raise FieldValueError("dims", f"unknown dimension(s) {unknown}; use D1, D2, D3, D4, D5.")
        if self.url and not self.model:
            raise FieldValueError("model", "judge.url is set but judge.model is not; name the judge model.")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise FieldValueError("url", f"judge.url must start with http:// or https:// (got {self.url!r}).")
        if self.timeout <= 0:
            raise FieldValueError("timeout", "timeout must be positive (seconds).")
        if self.retries < 0 or self.concurrency < 1:
            raise FieldValueError("retries", "retries cannot be negative and concurrency must be at least 1.")

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.model)


@dataclass
class RunConfig:
    base_model: str  # Hugging Face id, local path, or builtin:tiny / builtin:small
    persona: str  # persona card (persona.yaml)
    data: str  # training conversations (data.jsonl)
    suite: str  # evaluation questions (suite.yaml)
    # A Jinja chat template (inline, or a file relative to this config) to use instead of the base's own.
    # Leave empty to use the tokenizer's: the template a model was tuned with is the one it should keep.
    chat_template: str | None = None
    # Preference pairs (JSONL, see molting/preference_pairs.py; `molt augment` writes them) for
    # train.method sft+dpo or orpo.
    preference_data: str | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    preference: PreferenceSettings = field(default_factory=PreferenceSettings)
    check: CheckSettings = field(default_factory=CheckSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)  # optional LLM judge; off unless url is set

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply `section.field=value` overrides (value parsed as YAML) to the raw config mapping."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"{source} {item!r}: expected FIELD=VALUE, e.g. train.epochs=2.")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"{source} {item!r}: {part} is not a section.")
        target[parts[-1]] = yaml.safe_load(raw)
    return data


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    doc = load_yaml(path)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise UserError(f"{doc.path}: expected a mapping of config fields at the top level.")
    problems = placeholder_problems(doc)
    if problems:
        raise UserError(problems)
    doc = YamlDoc(doc.path, apply_overrides(doc.data, list(overrides)), doc.lines)
    config = build(RunConfig, doc)
    base_dir = Path(path).resolve().parent
    for name in ("persona", "data", "suite"):
        setattr(config, name, str((base_dir / getattr(config, name)).resolve()))
    if config.preference_data:
        config.preference_data = str((base_dir / config.preference_data).resolve())
    if config.train.method != "sft" and not config.preference_data:
        raise UserError(
            f"{doc.where(('train', 'method'))}: train.method {config.train.method!r} needs preference pairs: set "
            "`preference_data: pairs.jsonl` (write them with `molt augment CONFIG`)."
        )
    template = config.chat_template
    if template and "{" not in template:  # a file name, not an inline Jinja template
        template_path = base_dir / template
        if not template_path.is_file():
            raise UserError(
                f"{doc.where(('chat_template',))}: chat_template: {template_path} not found. Give a file "
                "holding a Jinja chat template, an inline template, or leave it out to use the base's own."
            )
        config.chat_template = template_path.read_text(encoding="utf-8")
    return config


def load_resolved_config(run_dir: Path) -> RunConfig:
    """The config a run was trained with (config.yaml in the run directory)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found. Is {run_dir} a run directory? Train it first: molt train CONFIG.")
    return build(RunConfig, load_yaml(path))
