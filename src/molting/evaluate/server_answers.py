"""Answers from any model: `molt eval --backend openai --url URL --model NAME`.

Instead of the local adapter, each suite question is sent with the card's inference prompt to an
OpenAI-compatible server — the source persona on a hosted model, an exported model in Ollama or a llama.cpp
server, a vLLM deployment for large suites — through the same client the judge uses. Reached through
`answer_with_endpoint`, which returns rows in `generate_answers`' shape (response, new_tokens, finish_reason
as the server reported it). A question the server could not answer after the client's retries becomes
`{"response": None, "error": reason}`: recorded, left out of the scores, never a crash.
"""

import re
from collections.abc import Callable
from pathlib import Path

from molting.config import GenerationSettings
from molting.openai_client import ChatError, Endpoint, chat_many
from molting.paths import RunPaths


def run_dir_for_config(config_path: str | Path, overrides: list[str], run_dir: str | Path) -> Path:
    """`molt eval CONFIG --backend openai`: a model on a server needs no training run, so the run directory is
    made from the config (config.yaml, every default resolved) when it does not exist yet. An existing run
    directory keeps its own config.yaml."""
    from molting.config import load_run_config
    from molting.train.sft import save_resolved_config

    run_dir = Path(run_dir)
    config = load_run_config(config_path, overrides)
    if not RunPaths(run_dir).config.is_file():
        save_resolved_config(config, run_dir)
    return run_dir


def split_overrides(overrides: tuple[str, ...] | list[str], backend: str) -> tuple[list[str], list[str]]:
    """`molt eval --set`: (config overrides, generation overrides). With --backend openai a CONFIG may stand for
    the run, so any field other than generation.* goes into that run's config; locally, every override is a
    generation setting of this evaluation (eval_run checks that)."""
    if backend != "openai":
        return [], list(overrides)
    config = [o for o in overrides if not o.strip().startswith("generation.")]
    return config, [o for o in overrides if o not in config]


def default_eval_id(model: str) -> str:
    """An eval folder name for answers from `model`, e.g. openai-llama3.1-8b."""
    return "openai-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model")


def answer_with_endpoint(
    endpoint: Endpoint,
    prompts: list[list[dict]],
    settings: GenerationSettings,
    concurrency: int = 4,
    on_done: Callable[[int], None] | None = None,
) -> list[dict]:
    """One answer per prompt (system + user messages), with the run's generation settings: max_new_tokens,
    temperature, top_p and the seed (servers that honour a seed make sampled answers reproducible)."""
    requests = [
        {
            "messages": messages,
            "temperature": settings.temperature,
            "max_tokens": settings.max_new_tokens,
            "top_p": settings.top_p if settings.temperature > 0 else None,
            "seed": settings.seed,
        }
        for messages in prompts
    ]
    replies = chat_many(
        endpoint, requests, concurrency=concurrency, on_done=(lambda _i, _r: on_done(1)) if on_done else None
    )
    rows = []
    for reply in replies:
        if isinstance(reply, ChatError):
            rows.append({"response": None, "new_tokens": 0, "finish_reason": None, "error": reply.reason})
            continue
        usage = reply.raw.get("usage") or {}
        rows.append(
            {
                "response": reply.text.strip(),
                "new_tokens": usage.get("completion_tokens"),
                "finish_reason": reply.finish_reason,
            }
        )
    return rows
