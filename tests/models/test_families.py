"""The families users train, in miniature (`builtin:tinyllama`, `builtin:phi3`, `builtin:qwen2.5`,
`builtin:llama3.2`): real architecture class, real tokenizer from llama.cpp's vocab GGUF, real chat template and
end-of-turn list. One row per family: the preflight with the real tokenizer, masks, a wrong end token caught,
the Ollama TEMPLATE rendering every suite prompt as the Jinja template, and a few LoRA steps."""

import json

import pytest
from conftest import EXAMPLE, qwen3_template_path, row_base

from molting.models.family_base import FAMILIES

# family -> (architecture, tokenizer EOS, every end-of-turn token, BOS the template writes)
EXPECTED = {
    "tinyllama": ("LlamaForCausalLM", "</s>", ["</s>"], None),
    "phi3": ("Phi3ForCausalLM", "<|end|>", ["<|end|>", "<|endoftext|>"], None),
    "qwen2.5": ("Qwen2ForCausalLM", "<|im_end|>", ["<|im_end|>", "<|endoftext|>"], None),
    "llama3.2": (
        "LlamaForCausalLM",
        "<|eot_id|>",
        ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
        "<|begin_of_text|>",
    ),
}
# A wrong end token for each: the template ends assistant turns with it while generation stops on the family's.
WRONG_END = {
    "qwen3": ("'<|im_end|>'", "'</s>'"),
    "tinyllama": ("eos_token", "'<unk>'"),
    "phi3": ("'<|end|>'", "'<|endoftext|>'"),
    "qwen2.5": ("'<|im_end|>'", "'</s>'"),
    "llama3.2": ("'<|eot_id|>'", "'<|end_of_text|>'"),
}


def _conversation() -> list[dict]:
    return [
        {"role": "system", "content": "Você é o Cláudio."},
        {"role": "user", "content": "Oi, tudo bem?"},
        {"role": "assistant", "content": "Tudo ótimo! E contigo?"},
        {"role": "user", "content": "Em que você trabalha?"},
        {"role": "assistant", "content": "Sou desenvolvedor full-stack."},
    ]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_base_is_the_real_format(family, family_bases):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    path = family_bases[family]
    architecture, eos, end_of_turn, _ = EXPECTED[family]
    config = AutoConfig.from_pretrained(path)
    assert config.architectures == [architecture]
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.eos_token == eos
    generation = GenerationConfig.from_pretrained(path)
    assert sorted(generation.eos_token_id) == sorted(tokenizer.convert_tokens_to_ids(end_of_turn))
    raw = json.loads((path / "config.json").read_text())
    if family == "phi3":
        assert raw["rope_scaling"]["type"] == "longrope"
        assert len(raw["rope_scaling"]["long_factor"]) == config.hidden_size // config.num_attention_heads // 2
    if family == "llama3.2":
        assert raw["rope_scaling"]["rope_type"] == "llama3"
        assert tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|eom_id|>"]) == [128009, 128008]
    if family == "phi3":
        assert tokenizer.convert_tokens_to_ids(["<|end|>", "<|endoftext|>"]) == [32007, 32000]
    assert len(tokenizer) == config.vocab_size or family == "qwen2.5"  # Qwen pads its matrix past the vocabulary


@pytest.mark.parametrize("family", list(FAMILIES))
def test_masks_supervise_assistant_turns_ending_in_end_of_turn(family, family_bases):
    from transformers import AutoTokenizer

    from molting.models.chat_format import encode_prompt, tokenize_conversation

    tokenizer = AutoTokenizer.from_pretrained(family_bases[family])
    messages = _conversation()
    tokenized = tokenize_conversation(tokenizer, messages)
    assert len(tokenized.assistant_turns) == 2
    for start, end in tokenized.assistant_turns:
        assert tokenized.input_ids[end - 1] == tokenizer.eos_token_id
        assert all(tokenized.assistant_mask[start:end])
    supervised = [t for t, m in zip(tokenized.input_ids, tokenized.assistant_mask, strict=True) if m]
    assert len(supervised) == sum(e - s for s, e in tokenized.assistant_turns)
    text = tokenizer.decode(supervised)
    for message in messages:
        assert (message["content"] in text) == (message["role"] == "assistant")
    # nothing of the generation prompt is supervised: the prompt is an unsupervised prefix of the sequence
    prompt = encode_prompt(tokenizer, messages[:2])
    assert tokenized.input_ids[: len(prompt)] == prompt
    assert not any(tokenized.assistant_mask[: len(prompt)])
    bos = EXPECTED[family][3]
    assert (tokenized.input_ids[0] == tokenizer.convert_tokens_to_ids(bos)) if bos else True


@pytest.mark.parametrize("family", [*FAMILIES, "qwen3"])
def test_check_passes_with_the_real_tokenizer_and_catches_a_wrong_end_token(family, family_bases):
    from molting.config import load_run_config
    from molting.train.preflight import run_preflight

    base = row_base(family)
    fast = [f"base_model=builtin:{base}", "check.min_steps=1", "lora.modules_to_save=[]"]
    if family == "qwen3":
        fast.append(f"chat_template={qwen3_template_path()}")
    report = run_preflight(load_run_config(EXAMPLE / "molt.yaml", fast))
    assert report["ok"], [f for f in report["findings"] if f["level"] == "error"]
    assert report["template"]["turns_not_ending_in_eos"] == 0
    assert report["template"]["inference_prompt_is_training_prefix"]
    assert report["template"]["eos_token"] == EXPECTED[base][1]

    template = _tokenizer(family, family_bases).chat_template
    right, wrong = WRONG_END[family]
    if family == "tinyllama":  # Zephyr writes eos_token after every turn: end them with <unk> instead
        template = template.replace("message['content'] + eos_token", "message['content'] + '<unk>'")
    elif family == "qwen2.5":
        template = template.replace("+ message.content + '<|im_end|>'", "+ message.content + '</s>'")
    elif family == "qwen3":  # the end written after each assistant turn (the line before the tool branch)
        assistant_end = "{{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}"
        assert assistant_end in template
        template = template.replace(assistant_end, assistant_end.replace("<|im_end|>", "</s>"))
    else:
        template = template.replace(right[1:-1], wrong[1:-1])
    config = load_run_config(EXAMPLE / "molt.yaml", fast)
    config.chat_template = template
    report = run_preflight(config)
    errors = [f["message"] for f in report["findings"] if f["level"] == "error"]
    assert not report["ok"]
    expected_right = f"'{EXPECTED[base][1]}'"
    assert any(expected_right in m and wrong.strip("'") in m for m in errors), errors


def _tokenizer(row: str, family_bases):
    """The row's tokenizer: a family base's, or for "qwen3" the Qwen2 vocabulary with Qwen3's real template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(family_bases[row_base(row)])
    if row == "qwen3":
        tokenizer.chat_template = qwen3_template_path().read_text(encoding="utf-8")
    return tokenizer


@pytest.mark.parametrize("family", [*FAMILIES, "qwen3"])
def test_ollama_template_renders_every_suite_prompt_as_the_chat_template(family, family_bases):
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.export.ollama_modelfile import (
        chat_segments,
        go_template,
        sample_conversations,
        template_leaves_out,
        template_mismatches,
    )

    tokenizer = _tokenizer(family, family_bases)
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    system = persona.system_prompts.inference.strip()
    prompts = [
        [{"role": "system", "content": system}, {"role": "user", "content": q.question}] for q in suite.questions
    ]
    template = go_template(chat_segments(tokenizer))
    assert template_mismatches(template, tokenizer, prompts + sample_conversations(system)) == []
    assert (template_leaves_out(tokenizer.chat_template) is not None) == (family in ("qwen2.5", "llama3.2", "qwen3"))


def test_a_template_that_rewrites_earlier_turns_trains_one_turn_at_a_time(family_bases, tmp_path):
    """Qwen3's real template (from the sdist) drops the reasoning of earlier turns once a later user turn follows,
    so a conversation does not render as its own prefixes: each assistant turn becomes its own example,
    supervised on that turn only, and the preflight says so and what it costs."""
    from transformers import AutoTokenizer

    from molting.config import load_run_config
    from molting.models.chat_format import PrefixMismatch, tokenize_conversation, tokenize_for_training
    from molting.train.preflight import run_preflight

    qwen3 = qwen3_template_path().read_text(encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(family_bases["qwen2.5"])
    tokenizer.chat_template = qwen3
    messages = _conversation()
    messages[2]["content"] = "<think>\nO usuário cumprimenta.\n</think>\n\nTudo ótimo! E contigo?"
    with pytest.raises(PrefixMismatch):
        tokenize_conversation(tokenizer, messages)
    examples = tokenize_for_training(tokenizer, messages)
    assert len(examples) == 2
    for example, last in zip(examples, (messages[2], messages[4]), strict=True):
        supervised = [t for t, m in zip(example.input_ids, example.assistant_mask, strict=True) if m]
        assert supervised[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
        text = tokenizer.decode(supervised)
        assert last["content"].split("</think>")[-1].strip() in text
        assert all(m["content"] not in text for m in messages if m is not last)

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"messages": messages[1:]}, ensure_ascii=False) + "\n", encoding="utf-8")
    settings = ["base_model=builtin:qwen2.5", "check.min_steps=1", f"data={data}"]
    config = load_run_config(EXAMPLE / "molt.yaml", settings)
    config.chat_template = qwen3
    report = run_preflight(config)
    assert report["ok"], [f for f in report["findings"] if f["level"] == "error"]
    assert report["token_budget"]["examples"] == 2 and report["steps"]["examples"] == 2
    split = [f["message"] for f in report["findings"] if "split into" in f["message"]]
    assert split and "one per assistant turn" in split[0] and "tokens to train on instead of" in split[0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_eval_generation_stops_on_every_end_of_turn_token_of_the_family(family, family_bases):
    """`molt eval` stops on each of the family's end-of-turn tokens, not only the tokenizer's EOS (Phi-3's
    <|endoftext|>, Llama 3.2's <|eom_id|> and <|end_of_text|>): the model is made to emit one of them first (a
    hook on its output layer) and generation must stop there, with an empty answer and finish_reason "stop"."""
    import torch

    from molting.config import GenerationSettings
    from molting.evaluate.generate import generate_answers
    from molting.models.base_model import eos_token_ids, load_model, load_tokenizer

    spec = f"builtin:{family}"
    tokenizer, model = load_tokenizer(spec), load_model(spec, "float32", "cpu").eval()
    end_ids = [tokenizer.convert_tokens_to_ids(t) for t in EXPECTED[family][2]]
    eos = eos_token_ids(tokenizer, model)  # what molt eval passes to generate
    assert eos == set(end_ids)
    settings = GenerationSettings(max_new_tokens=8, batch_size=2)
    prompts = [[{"role": "user", "content": "Oi, tudo bem?"}], [{"role": "user", "content": "Quem é você?"}]]
    for end_id in end_ids:

        def force(module, args, output, end_id=end_id):
            output[..., end_id] = output.max() + 100.0
            return output

        handle = model.get_output_embeddings().register_forward_hook(force)
        try:
            answers = generate_answers(model, tokenizer, prompts, settings, eos)
        finally:
            handle.remove()
        assert [(a["response"], a["new_tokens"], a["finish_reason"]) for a in answers] == [("", 1, "stop")] * 2, (
            tokenizer.convert_ids_to_tokens(end_id)
        )
    # the same hook forcing an ordinary token: no stop, max_new_tokens of it (so the stops above were the end ids')
    ordinary = tokenizer("a", add_special_tokens=False)["input_ids"][-1]
    handle = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: output.index_fill_(-1, torch.tensor([ordinary]), output.max().item() + 100.0)
    )
    try:
        answers = generate_answers(model, tokenizer, prompts, settings, eos)
    finally:
        handle.remove()
    assert [(a["new_tokens"], a["finish_reason"]) for a in answers] == [(8, "length")] * 2
