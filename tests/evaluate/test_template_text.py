"""The chat template's own text said back is a template leak: Llama 3.2's real template (from the pinned
llama-cpp-python sdist) writes "Cutting Knowledge Date: December 2023" into its system header, and a
4-step Llama 3.2 miniature answered with exactly that. Rubric v2 without the model gave it 7/10 on probes."""

from conftest import EXAMPLE
from transformers import AutoTokenizer

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.evaluate.rubric import Scorer, template_text_lines
from molting.export.llama_cpp_tools import fetch_model_files
from molting.models.resolve import resolve_base

LEAK = "Cutting Knowledge Date: December 2023\nToday Date: 2023"


def _llama32_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(resolve_base("builtin:tiny"))
    template = fetch_model_files() / "models" / "templates" / "meta-llama-Llama-3.2-3B-Instruct.jinja"
    tokenizer.chat_template = template.read_text()
    return tokenizer


def test_the_template_text_is_found_and_its_echo_is_no_answer():
    persona = load_persona(EXAMPLE / "persona.yaml")
    lines = template_text_lines(_llama32_tokenizer(), persona.system_prompts.inference)
    assert "Cutting Knowledge Date: December 2023" in lines
    assert any(line.startswith("Today Date:") for line in lines)
    assert not any(persona.system_prompts.inference[:30] in line for line in lines)  # the prompt is not template

    question = load_suite(EXAMPLE / "suite.yaml", persona).by_id["Q1"]
    scorer = Scorer(persona, template_lines=lines)
    leaked = scorer.score(question, LEAK)
    assert sum(leaked.dims.values()) == 0
    assert any(e.detector == "no_answer" and "template" in e.detail for e in leaked.evidence)
    # an answer that goes on after the template's text keeps its content, and loses D4
    answer = "Today Date: 2023. O João Figueiredo é o dev full-stack da Softtor e meu parceiro de trabalho no CRM."
    mixed = scorer.score(question, answer)
    assert mixed.dims["D4"] == 0 and mixed.dims["D2"] == 2
    assert any(e.detector == "template_text" and "Today Date:" in e.detail for e in mixed.evidence)
    # without the template's lines (molt score has no tokenizer), the leak is not seen
    assert sum(Scorer(persona).score(question, LEAK).dims.values()) > 0


def test_templates_without_literal_text_give_no_lines():
    tokenizer = AutoTokenizer.from_pretrained(resolve_base("builtin:tiny"))
    assert template_text_lines(tokenizer, "Você é o Cláudio.") == []
    tokenizer.chat_template = None
    assert template_text_lines(tokenizer, "Você é o Cláudio.") == []
