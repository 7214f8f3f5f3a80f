"""Batched answer generation for evaluation: left-padded batches, stopping on every end-of-turn token.

Reached through `generate_answers`. Prompts are tokenized by `chat_format.encode_prompt`, exactly as in
training. Prompts are sorted by length so each batch pads little, and answers come back in input order
with the number of new tokens and why generation stopped ("stop" at an end-of-turn token, "length" at
max_new_tokens, which the scorer reports as truncation).
"""

from collections.abc import Callable

from molting.chat_format import encode_prompt
from molting.config import GenerationSettings


def generate_answers(
    model,
    tokenizer,
    prompts: list[list[dict]],
    settings: GenerationSettings,
    eos_ids: set[int],
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    import torch

    encoded = [encode_prompt(tokenizer, messages) for messages in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    results: list[dict | None] = [None] * len(encoded)
    device = next(model.parameters()).device
    torch.manual_seed(settings.seed)
    sampling = settings.temperature > 0
    for b in range(0, len(order), settings.batch_size):
        batch = order[b : b + settings.batch_size]
        width = max(len(encoded[i]) for i in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
            ids = encoded[i]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
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
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
            kept = new if stop is None else new[:stop]
            results[i] = {
                "response": tokenizer.decode(kept, skip_special_tokens=False).strip(),
                "new_tokens": len(kept) + (0 if stop is None else 1),
                "finish_reason": "length" if stop is None else "stop",
            }
        if on_batch:
            on_batch(len(batch))
    return results
