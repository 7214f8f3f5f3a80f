"""Find and load a base model and its tokenizer: a Hugging Face id, a local folder, or `builtin:<size>`.

Every base goes through the same `from_pretrained` calls; a builtin one is first built into the cache
(see `builtin_base`). Loading failures a user can fix (a wrong id, no network, no chat template) become
`UserError`s that say what to do.
"""

from pathlib import Path

from molting.errors import UserError
from molting.models.hardware import cpu_supports_bf16
from molting.models.model_configs import shipped_config
from molting.models.resolve import resolve_base
from molting.progress import step


def _load_error(spec: str, error: Exception) -> UserError:
    hint = (
        "Check the id or path. Hub models need network on first use; offline, use builtin:tiny or "
        "builtin:small, or a local folder holding config.json and the weights."
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"base_model {spec!r}: could not load it ({first_line}). {hint}")


def config_tokenizer(config) -> tuple:
    """(tokenizer, max_length) of a run config: its base's tokenizer with the config's chat template, and
    train.max_length. `molt data import` splits and `molt data curate` measures examples with these."""
    return load_tokenizer(config.base_model, config.chat_template), config.train.max_length


def load_tokenizer(spec: str, chat_template: str | None = None):
    from transformers import AutoTokenizer

    path = resolve_base(spec)
    if not spec.startswith("builtin:") and (spec.startswith((".", "/")) and not Path(path).exists()):
        raise UserError(f"base_model {spec!r}: no such folder.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _load_error(spec, e) from None
    if chat_template:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise UserError(
            f"base_model {spec!r} has no chat template. Set `chat_template` in molt.yaml to the template "
            "the model should be trained and served with."
        )
    if tokenizer.pad_token is None:  # same choice TRL makes; labels still keep the EOS (see chat_format)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(setting: str, device: str):
    """Weights dtype. `auto` means bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on a CPU
    (where training may still autocast, see `mixed_precision`)."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def mixed_precision(setting: str, device: str, weights_dtype) -> str:
    """Autocast for training: "bf16", "fp16" or "no". On a CPU, `auto` keeps fp32 weights and autocasts
    to bf16 where the CPU has it natively (no bf16 without support)."""
    import torch

    if weights_dtype == torch.bfloat16:
        return "bf16"
    if weights_dtype == torch.float16:
        return "fp16"
    if setting == "auto" and device == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "no"


def quantization_config(quantization: str, compute_dtype):
    """The BitsAndBytesConfig for `train.quantization` (None for "none"): QLoRA's NF4 with double
    quantisation and `compute_dtype` matmuls for "4bit", LLM.int8 for "8bit". Building it needs neither
    bitsandbytes nor a GPU; loading with it needs both."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def is_prequantized(spec: str) -> bool:
    """A checkpoint saved already quantised (its config.json has a quantization_config)."""
    import json

    config = Path(resolve_base(spec)) / "config.json"
    if not config.is_file():
        shipped = shipped_config(spec)
        return bool(shipped and shipped.get("quantization_config"))
    return "quantization_config" in json.loads(config.read_text(encoding="utf-8"))


def quantization_unavailable(quantization: str, device: str) -> str | None:
    """Why a quantised load cannot happen on this machine (None when it can). Checked by the preflight,
    before anything is loaded."""
    if quantization == "none":
        return None
    if device != "cuda":
        return (
            f"train.quantization is {quantization!r} but this machine has no CUDA GPU: bitsandbytes "
            "quantisation (QLoRA) trains on a GPU only. Set train.quantization: none to train on the CPU, "
            "or run on a machine with an NVIDIA GPU (molt doctor shows what this one has)."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return (
            f"train.quantization is {quantization!r} but bitsandbytes is not installed. Install it with "
            "`pip install molting[gpu]` (or `pip install bitsandbytes`)."
        )
    return None


def load_model(spec: str, dtype_setting: str = "auto", device: str | None = None, quantization: str = "none"):
    """Load the base for training or generation. With `quantization` ("4bit"/"8bit") the weights are
    quantised tensor by tensor while loading, straight onto this process's GPU (`device_map`), so the full
    precision model never sits on the GPU (the transformers 5 load spike, transformers #43032: without a
    device_map the model is materialised first and quantised after). transformers 5 always builds the model
    on the meta device (its old `low_cpu_mem_usage` flag is gone and ignored), and with on-the-fly
    quantisation it loads synchronously, one tensor at a time; a pre-quantised checkpoint loads with its
    own quantization_config."""
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    dtype = pick_dtype(dtype_setting, device)
    kwargs = {"dtype": dtype}
    if quantization != "none":
        problem = quantization_unavailable(quantization, device)
        if problem:
            raise UserError(problem)
        import os

        # transformers already loads synchronously when it quantises on the fly; this keeps a pre-quantised
        # checkpoint's loader threads from racing ahead of the GPU too.
        os.environ.setdefault("HF_DEACTIVATE_ASYNC_LOAD", "1")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": local_rank}
        if not is_prequantized(spec):
            kwargs["quantization_config"] = quantization_config(quantization, dtype)
    path = resolve_base(spec)  # builds or converts a builtin:, packaged: or .gguf base first, with its own progress
    precision = str(dtype).removeprefix("torch.") + (f", {quantization}" if quantization != "none" else "")
    try:
        with step(f"loading {spec} ({precision}, {device})"):
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise _load_error(spec, e) from None
    return model if quantization != "none" else model.to(device)


def eos_token_ids(tokenizer, model=None) -> set[int]:
    """Every token id that ends a turn: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(model, "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return ids
