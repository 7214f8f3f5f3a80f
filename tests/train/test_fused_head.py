"""The LM head during training projects only the supervised positions, on the CPU too
(molting.train.sft.head_at_supervised_positions_only over TRL's fused LM head)."""

import copy

import torch
import trl.trainer.utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from molting.models.base_model import load_model
from molting.train.sft import head_at_supervised_positions_only


def _loss_and_rows(model, ids, labels, monkeypatch):
    """The fused head's loss and gradient on the model, and how many hidden rows the head projected."""
    seen = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grad = model.get_input_embeddings().weight.grad.clone()
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", apply)
    return out.loss.detach(), grad, seen


def test_the_head_projects_only_supervised_positions_with_the_same_loss_and_gradients(monkeypatch):
    torch.manual_seed(0)
    model = load_model("builtin:tiny", "float32")
    add_fused_lm_head(model)
    ids = torch.randint(3, model.config.vocab_size, (2, 40))
    labels = ids.clone()
    labels[:, :25] = -100  # a prompt, then a 15-token answer
    labels[1, 30:] = -100  # the second answer is 5 tokens, then padding
    everywhere = _loss_and_rows(model, ids, labels, monkeypatch)
    with head_at_supervised_positions_only():
        compact = _loss_and_rows(copy.deepcopy(model), ids, labels, monkeypatch)
    assert everywhere[2] == [2 * 39]  # TRL on a CPU: every position of the shifted batch
    supervised = int((labels[:, 1:] != -100).sum())
    assert compact[2] == [supervised] and supervised == 15 + 5
    torch.testing.assert_close(compact[0], everywhere[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compact[1], everywhere[1], rtol=1e-4, atol=1e-7)


def test_trl_s_own_choice_is_back_after_training():
    before = trl_utils._use_triton
    with head_at_supervised_positions_only():
        assert trl_utils._use_triton(torch.device("cpu")) is True
    assert trl_utils._use_triton is before and before(torch.device("cpu")) is False
