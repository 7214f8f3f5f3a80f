"""A base model's config.json, offline when molting ships it: what the memory estimate reads.

Reached through `model_config(spec)`. molting ships the config.json of the bases users pick
(`shipped_configs/`: TinyLlama-1.1B-Chat, Phi-3-mini-4k, Qwen2.5-0.5B/1.5B, Llama-3.2-1B/3B — small text
files, no weights), so the memory preflight and the README's table need no network. A builtin base or a
local folder is read from its own config.json; any other hub id from the Hugging Face cache (or the hub).
"""

import json
from pathlib import Path

from molting.errors import UserError
from molting.models.resolve import resolve_base

SHIPPED = Path(__file__).parent / "shipped_configs"


def shipped_ids() -> list[str]:
    return sorted(p.stem.replace("--", "/", 1) for p in SHIPPED.glob("*.json"))


def shipped_config(spec: str) -> dict | None:
    path = SHIPPED / (spec.replace("/", "--", 1) + ".json")
    return json.loads(path.read_text(encoding="utf-8")) if "/" in spec and path.is_file() else None


def model_config(spec: str) -> dict:
    """config.json of `spec` (hub id, folder or builtin:*) as a dict, without loading weights."""
    path = Path(resolve_base(spec))
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    shipped = shipped_config(spec)
    if shipped is not None:
        return shipped
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path)).to_dict()
    except (OSError, ValueError) as e:
        raise UserError(
            f"base_model {spec!r}: could not read its config.json ({str(e).strip().splitlines()[0]}). "
            f"Offline, molting knows these hub models: {', '.join(shipped_ids())}; or give a local folder."
        ) from None
