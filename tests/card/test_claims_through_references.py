"""A forbidden relation said of a card person through a pronoun or a relative clause is the claim; a
pronoun that leads to a denial, or refers to someone else, is not (molting.card.claims)."""

import pytest
from conftest import EXAMPLE

from molting.card.claims import claims_in_text
from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.evaluate.rubric import Scorer

PERSONA = load_persona(EXAMPLE / "persona.yaml")
Q1 = load_suite(EXAMPLE / "suite.yaml", PERSONA).by_id["Q1"]


@pytest.mark.parametrize(
    "answer",
    [
        "O João Figueiredo é dev full-stack na Softtor. Ele é meu filho.",  # the issue's own example
        "O João, que é meu pai, cuida do front e do back.",
        "Trabalho com o João no CRM; ele é o meu criador.",
        "O João trabalha comigo na Softtor. Esse cara é meu irmão.",
    ],
)
def test_a_claim_through_a_reference_costs_d2(answer):
    score = Scorer(PERSONA).score(Q1, answer)
    assert score.dims["D2"] == 0
    assert any(e.detector == "forbidden_claim:joao_family" for e in score.evidence)
    assert [c.claim for c in claims_in_text(PERSONA, answer)] == ["joao_family"]  # training data too


@pytest.mark.parametrize(
    "answer",
    [
        "O João é meu parceiro de trabalho na Softtor. Ele é meu colega, não meu pai.",
        "O João é meu parceiro de trabalho, dev full-stack. O pai dele é professor.",
        "O João trabalha com o Pedro na Softtor. Ele é meu filho.",  # 'ele' is Pedro, named last
        "Você é o João? Não, eu sou o Cláudio. O João é meu parceiro; ele é quem decide.",
    ],
)
def test_no_claim_when_the_reference_denies_it_or_is_someone_else(answer):
    score = Scorer(PERSONA).score(Q1, answer)
    assert not any(e.detector == "forbidden_claim:joao_family" for e in score.evidence), score.evidence
