"""Find and load a base model and its tokenizer: a Hugging Face id, a local folder, or `builtin:<size>`.

Every base goes through the same `from_pretrained` calls; a builtin one is first built into the cache
(see `builtin_base`). Loading failures a user can fix (a wrong id, no network, no chat template) become
`UserError`s that say what to do.
"""

from pathlib import Path

from molting.errors import UserError


def resolve_base(spec: str) -> str:
    """The path or hub id that `from_pretrained` gets for a `base_model` value."""
    if spec.startswith("builtin:"):
        from molting.builtin_base import builtin_path

        return str(builtin_path(spec))
    return spec


def _load_error(spec: str, error: Exception) -> UserError:
    hint = (
        "Check the id or path. Hub models need network on first use; offline, use builtin:tiny or "
        "builtin:small, or a local folder holding config.json and the weights."
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"base_model {spec!r}: could not load it ({first_line}). {hint}")


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


def cpu_supports_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 or AMX): bf16 autocast is then 2-3× faster than fp32.
    Without it bf16 is emulated and slower, so molting stays in fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def load_model(spec: str, dtype_setting: str = "auto", device: str | None = None):
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_base(spec), dtype=pick_dtype(dtype_setting, device))
    except (OSError, ValueError) as e:
        raise _load_error(spec, e) from None
    return model.to(device)


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
