"""The evidence that a chat-template token's embedding row was never trained (molting.models.token_rows):
one of a cluster of near-identical rows, or a zero row; and `lora.trainable_tokens` reaching PEFT, so that
exactly those rows train, in the input embedding and in an untied output head. The real case, Gemma 3
270M's <start_of_turn>/<end_of_turn>, is in tests/models/test_gguf_base.py."""

import json

import pytest
import torch
from conftest import EXAMPLE, FAST

from molting.errors import UserError
from molting.models.base_model import load_tokenizer
from molting.models.token_rows import CLUSTER_ROWS, plan_trainable_tokens, row_evidence, template_token_ids


def _matrix(tokenizer):
    torch.manual_seed(0)
    weight = torch.randn(len(tokenizer), 32)
    return weight


def test_a_clustered_row_and_a_zero_row_look_untrained_and_ordinary_rows_do_not():
    tokenizer = load_tokenizer("builtin:tiny")
    weight = _matrix(tokenizer)
    never = weight[5].clone()
    cluster = list(range(100, 100 + CLUSTER_ROWS + 1))
    for i in cluster:  # the rows pretraining never reached: one shared initial value, a little noise
        weight[i] = never + 0.01 * torch.randn(32)
    weight[7] = 0.0
    found = {e.token_id: e for e in row_evidence(weight, [5, 7, 8, 100], tokenizer)}
    assert found[100].untrained and found[100].similar_rows >= CLUSTER_ROWS
    assert found[5].untrained  # the first of the cluster's rows is in it too
    assert found[7].untrained and found[7].zero and "zero embedding row" in found[7].describe()
    assert not found[8].untrained and found[8].similar_rows == 0


def test_auto_trains_only_the_template_tokens_that_look_untrained():
    tokenizer = load_tokenizer("builtin:tiny")
    ids = template_token_ids(tokenizer)
    assert ids == [tokenizer.eos_token_id]  # the builtin Zephyr template writes <|assistant|> as plain text
    weight = _matrix(tokenizer)
    plan = plan_trainable_tokens("auto", tokenizer, {"input": weight}, embeddings_in_full=False)
    assert plan["train_ids"] == [] and plan["untrained_end_of_turn"] == []  # random rows: all distinct
    eos = tokenizer.eos_token_id
    weight[eos] = 0.0
    plan = plan_trainable_tokens("auto", tokenizer, {"input": _matrix(tokenizer), "output": weight}, False)
    assert plan["train_ids"] == [eos] and plan["train_tokens"] == [tokenizer.eos_token]
    assert plan["untrained_end_of_turn"]  # the preflight's warning when nothing would train it
    assert plan_trainable_tokens("none", tokenizer, {"input": weight}, False)["train_ids"] == []
    assert plan_trainable_tokens("auto", tokenizer, None, True)["train_ids"] == []  # every row trains in full


def test_a_listed_token_must_be_one_token_of_the_vocabulary():
    tokenizer = load_tokenizer("builtin:tiny")
    plan = plan_trainable_tokens(["</s>", "<s>"], tokenizer, None, False)
    assert plan["train_tokens"] == ["<s>", "</s>"]
    with pytest.raises(UserError, match=r"lora.trainable_tokens: 'not-a-token' is not one token"):
        plan_trainable_tokens(["not-a-token"], tokenizer, None, False)


def test_listed_rows_train_in_the_embedding_and_the_untied_head_and_no_other_row(tmp_path):
    from peft import PeftModel

    from molting.config import load_run_config
    from molting.models.base_model import load_model
    from molting.train.sft import train_run

    config = load_run_config(
        EXAMPLE / "molt.yaml",
        FAST + ["lora.modules_to_save=[]", "lora.trainable_tokens=[</s>, <]", "train.epochs=0.25"],
    )
    manifest = train_run(config, tmp_path / "run", show_progress=False)
    tokenizer = load_tokenizer("builtin:tiny")
    listed = sorted(tokenizer.convert_tokens_to_ids(["</s>", "<"]))
    assert manifest["train"]["trainable_tokens"]["train_ids"] == listed
    adapter_config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["trainable_token_indices"] == {"embed_tokens": listed, "lm_head": listed}

    base = load_model("builtin:tiny", "float32", "cpu")
    before_in = base.get_input_embeddings().weight.detach().clone()
    before_out = base.get_output_embeddings().weight.detach().clone()
    merged = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).merge_and_unload()
    changed = {}
    for name, before, after in (
        ("input", before_in, merged.get_input_embeddings().weight),
        ("output", before_out, merged.get_output_embeddings().weight),
    ):
        changed[name] = sorted(torch.nonzero((after.detach() - before).abs().sum(dim=1)).flatten().tolist())
    assert changed["output"] == listed  # every head row has a gradient, through the softmax
    # the input rows that occur in the data; </s> is the builtin base's pad token, and nn.Embedding gives
    # its padding_idx row no gradient
    assert changed["input"] == [tokenizer.convert_tokens_to_ids("<")]
