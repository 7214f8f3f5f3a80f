"""Batched answer generation for evaluation: left-padded batches, stopping on every end-of-turn token.

Reached through `generate_answers`. Prompts are tokenized by `chat_format.encode_prompt`, exactly as in
training. Prompts are sorted by length so each batch pads little, and answers come back in input order
with the number of new tokens and why generation stopped ("stop" at an end-of-turn token, "length" at
max_new_tokens, which the scorer reports as truncation). Each batch is seeded on its own (`batch_seed`), so
a resumed evaluation can generate the missing batches alone and get what an uninterrupted run would have.
"""

from collections.abc import Callable

from molting.config import GenerationSettings
from molting.models.chat_format import encode_prompt


def batch_seed(seed: int, batch_index: int) -> int:
    """The torch seed of one batch: from the sample's seed and the batch's place in the plan, so any batch
    can be generated again alone (a resumed evaluation) and give the same answers."""
    import numpy as np

    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1)[0])


def plan_batches(encoded: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of the prompts, sorted by length (so each batch pads little) and cut into batches."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def generate_batch(
    model, tokenizer, encoded: list[list[int]], settings: GenerationSettings, eos_ids: set[int], seed: int
) -> list[dict]:
    """Answers to one batch of tokenized prompts, in order; sampling (temperature > 0) seeded by `seed`."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    device = next(model.parameters()).device
    sampling = settings.temperature > 0
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):  # left padding: every prompt ends where generation starts
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=settings.top_p if sampling else None,
            top_k=None,
            repetition_penalty=settings.repetition_penalty,
            eos_token_id=sorted(eos_ids),
            pad_token_id=pad_id,
        )
    results = []
    for row in range(len(encoded)):
        new = out[row, width:].tolist()
        stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
        kept = new if stop is None else new[:stop]
        reasoning, response = split_reasoning(tokenizer.decode(kept, skip_special_tokens=False))
        results.append(
            {
                "response": response,
                **({"reasoning": reasoning} if reasoning is not None else {}),
                "new_tokens": len(kept) + (0 if stop is None else 1),
                "finish_reason": "length" if stop is None else "stop",
            }
        )
    return results


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, answer) of a generated text. A model tuned on a template that writes a reasoning block into
    the answer (Qwen3's `<think>...</think>`, empty when there is no reasoning) generates it before the answer;
    the answer is what follows it, so the rubric and the fluency pass read only what the user is told. Text
    without a closed block is all answer (reasoning None)."""
    stripped = text.strip()
    if stripped.startswith("<think>") and "</think>" in stripped:
        reasoning, _, answer = stripped[len("<think>") :].partition("</think>")
        return reasoning.strip(), answer.strip()
    return None, stripped


def generate_answers(
    model,
    tokenizer,
    prompts: list[list[dict]],
    settings: GenerationSettings,
    eos_ids: set[int],
    on_batch: Callable[[int], None] | None = None,
    seed: int | None = None,
) -> list[dict]:
    """Answers to `prompts` (chat messages), in input order. `seed` defaults to `settings.seed`."""
    encoded = [encode_prompt(tokenizer, messages) for messages in prompts]
    results: list[dict | None] = [None] * len(encoded)
    seed = settings.seed if seed is None else seed
    for b, batch in enumerate(plan_batches(encoded, settings.batch_size)):
        answers = generate_batch(model, tokenizer, [encoded[i] for i in batch], settings, eos_ids, batch_seed(seed, b))
        for i, answer in zip(batch, answers, strict=True):
            results[i] = answer
        if on_batch:
            on_batch(len(batch))
    return results
