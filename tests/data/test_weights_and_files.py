"""OpenAI's per-message `weight` (0: context only, 1: trained on) in data.jsonl: the mask the trainer builds its
labels from (TRL's own collator, on builtin:tiny's real tokenizer), the preflight's count of supervised tokens,
and the errors for weights that are not 0 or 1. And `data:` as a list of files: read in order, errors naming
the right file and line, the preflight and the manifest over both."""

import json

import pytest
import yaml
from conftest import EXAMPLE

from molting.config import load_run_config
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.models.base_model import load_tokenizer
from molting.models.chat_format import tokenize_conversation
from molting.train.preflight import run_preflight

TINY = ["base_model=builtin:tiny"]
CONTEXT = "Resposta antiga que não deve ser treinada."
TRAINED = "Resposta nova, a que o modelo deve aprender."


def conversation(first_weight=0, second_weight=1):
    return {
        "messages": [
            {"role": "user", "content": "Oi, quem é você?"},
            {"role": "assistant", "content": CONTEXT, "weight": first_weight},
            {"role": "user", "content": "E agora?"},
            {"role": "assistant", "content": TRAINED, "weight": second_weight},
        ]
    }


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_weight_0_answer_is_context_its_tokens_labelled_minus_100(tmp_path, molting_cache):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from molting.models.base_model import load_model

    tokenizer = load_tokenizer("builtin:tiny")
    (conv,) = load_dataset(write_jsonl(tmp_path / "data.jsonl", [conversation()]), "sys")
    assert conv.messages[2] == {"role": "assistant", "content": CONTEXT, "weight": 0}
    assert "weight" not in conv.messages[4]  # weight 1 is the default, not kept
    tokenized = tokenize_conversation(tokenizer, conv.messages)
    # the trainer's labels, as TRL's SFTTrainer builds them from molting's pre-tokenized row
    trainer = SFTTrainer(
        model=load_model("builtin:tiny", "float32"),
        args=SFTConfig(output_dir=str(tmp_path / "out"), max_length=1024, use_cpu=True, report_to=[]),
        train_dataset=Dataset.from_list(
            [{"input_ids": tokenized.input_ids, "assistant_masks": tokenized.assistant_mask}]
        ),
        processing_class=tokenizer,
    )
    labels = trainer.train_dataset[0]["labels"]
    assert trainer.train_dataset[0]["input_ids"] == tokenized.input_ids
    supervised = [t for t, label in zip(tokenized.input_ids, labels, strict=True) if label != -100]
    decoded = tokenizer.decode(supervised)
    assert TRAINED in decoded and CONTEXT not in decoded
    # both answers are located (the EOS check reads them), only the second is in the mask
    (a0, b0), (a1, b1) = tokenized.assistant_turns
    assert sum(tokenized.assistant_mask[a0:b0]) == 0 and all(tokenized.assistant_mask[a1:b1])
    assert set(labels[a0:b0]) == {-100}
    # the context answer is still in the sequence the model reads
    assert CONTEXT in tokenizer.decode(tokenized.input_ids)
    both = tokenize_conversation(
        tokenizer, load_dataset(write_jsonl(tmp_path / "b.jsonl", [conversation(1)]), "sys")[0].messages
    )
    assert both.input_ids == tokenized.input_ids and sum(both.assistant_mask) == sum(tokenized.assistant_mask) + (
        b0 - a0
    )


def test_other_weights_are_errors_with_file_and_line(tmp_path):
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            conversation(),
            conversation(first_weight=0.5),
            conversation(first_weight=True),
            conversation(first_weight=0, second_weight=0),
            {"messages": [{"role": "user", "content": "Oi", "weight": 1}, {"role": "assistant", "content": "Olá"}]},
        ],
    )
    with pytest.raises(UserError) as info:
        load_dataset(data, "sys")
    problems = info.value.problems
    assert problems == [
        f"{data}:2: messages[1].weight: 0.5; use 0 (context only, not trained on) or 1 (trained on, the default).",
        f"{data}:3: messages[1].weight: true; use 0 (context only, not trained on) or 1 (trained on, the default).",
        f"{data}:4: every assistant message has weight 0, so nothing in it is trained; give one weight 1, or "
        "remove the line.",
        f"{data}:5: messages[0].weight: only an assistant message has a weight (what is trained); remove it.",
    ]


def two_file_project(project, second_rows):
    """The example project with `data:` listing its data.jsonl and a second file."""
    write_jsonl(project / "more.jsonl", second_rows)
    config = yaml.safe_load((project / "molt.yaml").read_text(encoding="utf-8"))
    config["data"] = [config["data"], "more.jsonl"]
    (project / "molt.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return project / "molt.yaml"


def test_data_lists_two_files_read_in_order_and_errors_name_the_second(project):
    first = len(load_dataset(EXAMPLE / "data.jsonl", "s"))
    path = two_file_project(project, [conversation(), {"messages": [{"role": "user", "content": "só pergunta"}]}])
    config = load_run_config(path, TINY)
    assert config.data == [str(project / "data.jsonl"), str(project / "more.jsonl")]
    with pytest.raises(UserError) as info:
        load_dataset(config.data, "sys")
    assert info.value.problems == [
        f"{project / 'more.jsonl'}:2: the conversation ends with a 'user' message; it must end with the assistant's "
        "answer (that is what gets trained)."
    ]
    write_jsonl(project / "more.jsonl", [conversation()])
    conversations = load_dataset(config.data, "sys")
    assert len(conversations) == first + 1
    assert conversations[-1].where == f"{project / 'more.jsonl'}:1" and conversations[0].line == 1


def test_preflight_over_two_files_counts_only_weight_1_tokens(project):
    path = two_file_project(project, [conversation(), conversation(1)])
    report = run_preflight(load_run_config(path, TINY))
    assert report["dataset"]["path"] == [str(project / "data.jsonl"), str(project / "more.jsonl")]
    weighted, unweighted = [e for e in report["examples"] if e["file"] == str(project / "more.jsonl")]
    assert weighted["line"] == 1 and unweighted["line"] == 2
    assert weighted["tokens"] == unweighted["tokens"]  # the context answer is in the sequence…
    assert weighted["assistant_supervised"] < unweighted["assistant_supervised"]  # …not in the loss
    tokenizer = load_tokenizer("builtin:tiny")
    context_tokens = unweighted["assistant_supervised"] - weighted["assistant_supervised"]
    assert context_tokens >= len(tokenizer(CONTEXT, add_special_tokens=False)["input_ids"])
    assert report["token_budget"]["supervised_tokens"] == sum(e["assistant_supervised"] for e in report["examples"])


def test_curate_asks_for_one_file_when_data_lists_several(project):
    from conftest import run_molt

    path = two_file_project(project, [conversation()])
    result = run_molt("data", "curate", "--config", path, "--no-embeddings")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data lists 2 files" in result.stderr and f"molt data curate {project / 'data.jsonl'}" in result.stderr
