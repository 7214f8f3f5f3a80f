"""The probes' per-token log-probabilities, computed from the continuation's positions alone (`logits_to_keep`),
are those of the whole prompt's logits, position for position."""

import pytest


@pytest.mark.parametrize("continuation", ["Cláudio", " o João da Softtor", "x"])
def test_continuation_logprobs_match_the_full_logits(continuation):
    import torch

    from molting.evaluate.logprob_probes import _continuation_logprobs
    from molting.models.base_model import load_model, load_tokenizer

    tokenizer = load_tokenizer("builtin:tiny")
    model = load_model("builtin:tiny")
    context = "<|user|>\nQuem é você?</s>\n<|assistant|>\nEu sou o"
    (got,) = _continuation_logprobs(model, tokenizer, context, [continuation])

    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    start = min(len(context_ids), len(whole) - 1)
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
    expected = [full[i - 1, whole[i]].item() for i in range(start, len(whole))]
    assert len(got) == len(expected) >= 1
    assert got == pytest.approx(expected, abs=1e-4)
