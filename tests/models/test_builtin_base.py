"""Builtin bases: Llama architecture, SentencePiece tokenizer, Zephyr template with </s>, deterministic,
loaded through the same from_pretrained path as a hub model."""

import dataclasses
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from molting.errors import UserError
from molting.io import sha256_file
from molting.models.base_model import load_model, load_tokenizer
from molting.models.builtin_base import SIZES, ZEPHYR_TEMPLATE, builtin_path
from molting.models.resolve import resolve_base


def _sha(path):
    return sha256_file(path)


def test_tiny_is_an_ordinary_hf_llama_directory():
    path = builtin_path("builtin:tiny")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA, as TinyLlama
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 6_000_000, n
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.eos_token == "</s>"
    assert tokenizer.chat_template == ZEPHYR_TEMPLATE
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Oi"}, {"role": "assistant", "content": "Olá!"}], tokenize=False
    )
    assert text == "<|user|>\nOi</s>\n<|assistant|>\nOlá!</s>\n"
    # byte fallback: text outside the training corpus still round-trips
    assert tokenizer.decode(tokenizer("naïve 東京 🙂", add_special_tokens=False)["input_ids"]) == "naïve 東京 🙂"


def test_small_has_25_to_30_million_parameters():
    s = SIZES["small"]
    config = LlamaConfig(
        vocab_size=s.vocab_size,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        n = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    assert 25_000_000 <= n <= 30_000_000, n


def test_same_code_path_as_a_local_model_directory():
    path = builtin_path("builtin:tiny")
    assert resolve_base("builtin:tiny") == str(path)
    a = load_model("builtin:tiny")
    b = load_model(str(path))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert load_tokenizer(str(path)).chat_template == load_tokenizer("builtin:tiny").chat_template


def test_build_is_deterministic(tmp_path, monkeypatch):
    # The whole build (SentencePiece training, initialisation, pretraining) twice from scratch, in two caches;
    # 20 pretraining steps instead of 200 keep it to seconds and run the same code.
    monkeypatch.setitem(SIZES, "tiny", dataclasses.replace(SIZES["tiny"], pretrain_steps=20))
    monkeypatch.setenv("MOLTING_CACHE", str(tmp_path / "one"))
    first = builtin_path("builtin:tiny")
    monkeypatch.setenv("MOLTING_CACHE", str(tmp_path / "two"))
    second = builtin_path("builtin:tiny")
    assert first != second
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha(first / name) == _sha(second / name), name


def test_unknown_builtin_size_is_a_user_error():
    with pytest.raises(UserError, match="builtin:tiny, builtin:small"):
        builtin_path("builtin:huge")


def test_hub_id_without_network_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load"):
        load_tokenizer("TinyLlama/TinyLlama-1.1B-Chat-v1.0-not-cached" + os.urandom(2).hex())
