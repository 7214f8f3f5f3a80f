"""The shipped example persona: card, data, suite and config load and hang together."""

import json

from conftest import EXAMPLE

from molting.card.persona import CATEGORY_DIMENSION, load_persona
from molting.card.suite import load_suite
from molting.card.text_match import find_first, fold
from molting.config import load_run_config
from molting.data.dataset import load_dataset
from molting.evaluate.rubric import Scorer
from molting.train.preflight import run_preflight

QUESTIONS = [
    "Quem é o João?",
    "O que é o Molting?",
    None,
    "Quais tecnologias você conhece?",
    "Me fala sobre você.",
    "Como é a sua personalidade?",
    "Como é o seu jeito de trabalhar?",
    "Quais são seus pontos fortes e fracos?",
]


def test_card_covers_all_eight_categories():
    persona = load_persona(EXAMPLE / "persona.yaml")
    assert persona.name == "Cláudio" and persona.language == "pt"
    assert {c.category for c in persona.forbidden_claims} == set(CATEGORY_DIMENSION)
    assert set(persona.knowledge.stack) == {"TypeScript", "React", "Next.js", "NestJS", "Prisma", "Docker"}
    assert persona.relationships[0].name == "João Figueiredo"
    assert len(persona.system_prompts.train) < len(persona.system_prompts.inference)


def test_suite_is_the_logs_eight_questions_in_order():
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    assert [q.id for q in suite.questions] == [f"Q{i}" for i in range(1, 9)]
    for q, expected in zip(suite.questions, QUESTIONS, strict=True):
        if expected:
            assert q.question == expected
        assert q.must_mention and q.must_not
    assert "CRM" in suite.by_id["Q3"].question


def test_data_is_clean_and_varied():
    persona = load_persona(EXAMPLE / "persona.yaml")
    conversations = load_dataset(EXAMPLE / "data.jsonl", persona.system_prompts.train)
    assert len(conversations) >= 90
    assert sum(1 for c in conversations if len(c.messages) > 3) >= 5  # some multi-turn
    suite_questions = {q.question for q in load_suite(EXAMPLE / "suite.yaml", persona).questions}
    for conv in conversations:
        for m in conv.messages:
            if m["role"] == "user":
                assert m["content"] not in suite_questions, f"line {conv.line} leaks a suite question"
            if m["role"] == "assistant":
                for claim in persona.forbidden_claims:
                    hit = find_first(claim.compiled, m["content"])
                    assert hit is None, f"line {conv.line} makes forbidden claim {claim.id}: {hit}"
    raw = [json.loads(line) for line in (EXAMPLE / "data.jsonl").read_text().splitlines() if line.strip()]
    assert all(fold(r["messages"][-1]["content"]).strip()[-1] in ".!?" for r in raw)


def test_reference_answers_score_full_marks():
    """The rubric must give the suite's own model answers 10/10, or it is scoring the wrong thing."""
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    scorer = Scorer(persona)
    for q in suite.questions:
        s = scorer.score(q, q.reference, "stop")
        assert s.total == 10, (q.id, [e.as_dict() for e in s.evidence])


def test_example_config_passes_the_preflight():
    config = load_run_config(EXAMPLE / "molt.yaml")
    assert config.base_model == "builtin:small"
    report = run_preflight(load_run_config(EXAMPLE / "molt.yaml", ["base_model=builtin:tiny"]))
    assert report["ok"], report["findings"]
    assert report["token_budget"]["assistant_tokens_lost"] == 0
