"""Rubric v1: each detector is fed the failing answers a small persona model gives, and must catch them."""

import json

import pytest
from conftest import EXAMPLE, run_molt

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.evaluate.rubric import Scorer, detect_language, score_responses


@pytest.fixture(scope="module")
def card():
    return load_persona(EXAMPLE / "persona.yaml")


@pytest.fixture(scope="module")
def suite(card):
    return load_suite(EXAMPLE / "suite.yaml", card)


@pytest.fixture(scope="module")
def scorer(card):
    return Scorer(card)


def _detectors(score):
    return {e.detector for e in score.evidence}


def test_identity_collapse_costs_d1(scorer, suite):
    """Q5: "Você é o João" — complete identity collapse."""
    s = scorer.score(suite.by_id["Q5"], "Você é o João, o desenvolvedor da Softtor. Curioso e direto.", "stop")
    assert s.dims["D1"] == 0
    assert "forbidden_claim:identity_collapse" in _detectors(s)
    ev = next(e for e in s.evidence if e.detector == "forbidden_claim:identity_collapse")
    assert ev.detail == "Você é o João"


def test_claiming_to_be_chatgpt_costs_d1(scorer, suite):
    s = scorer.score(suite.by_id["Q5"], "Eu sou o ChatGPT, um modelo criado pela OpenAI. Curioso, claro.", "stop")
    assert s.dims["D1"] == 0 and "forbidden_claim:chatgpt_identity" in _detectors(s)


def test_naming_itself_as_someone_else_costs_d1(scorer, suite):
    """An invented name ("hector") or another persona's: "Bruno, a IA da Vantiq"."""
    for answer, detail in [
        ("Aí é o Bruno, a IA da Vantiq, e eu trabalho com o João no CRM. Curioso, né?", "Bruno, a IA"),
        ("Oi! Eu sou o Hector e trabalho com o João no CRM da Softtor, direto ao ponto.", "Eu sou o Hector"),
    ]:
        s = scorer.score(suite.by_id["Q5"], answer, "stop")
        assert s.dims["D1"] == 0, answer
        assert any(e.detector == "other_identity" and e.detail == detail for e in s.evidence)
    ok = scorer.score(suite.by_id["Q5"], "Sou o Cláudio, a IA da Softtor. Sou a IA que revisa código, direto.", "stop")
    assert "other_identity" not in _detectors(ok)


def test_names_the_card_never_mentions_cost_a_d1_point(scorer, suite):
    """Q1: a hallucinated "hector" nickname. The card's own names are fine."""
    s = scorer.score(suite.by_id["Q1"], "O João, que a gente chama de Hector, trabalha com a Carla Nunes.", "stop")
    ev = next(e for e in s.evidence if e.detector == "name_not_on_card")
    assert s.dims["D1"] == 1 and ev.detail == "Carla, Hector, Nunes"
    ok = scorer.score(suite.by_id["Q1"], suite.by_id["Q1"].reference, "stop")
    assert "name_not_on_card" not in _detectors(ok)


def test_joao_as_son_costs_d2(scorer, suite):
    """Q1 and Q7: João described as "meu filho"."""
    s = scorer.score(suite.by_id["Q1"], "O João é meu filho e trabalha comigo na Softtor. Curioso, não?", "stop")
    assert s.dims["D2"] == 0 and "forbidden_claim:joao_family" in _detectors(s)


def test_invented_technology_costs_a_d2_point(scorer, suite):
    """Q4: the stack starts right, then ROS2/MATLAB/OpenCV."""
    answer = (
        "Trabalho com TypeScript, React, Next.js, NestJS, Prisma e Docker. Também uso ROS2, MATLAB e "
        "OpenCV, o que acho curioso."
    )
    s = scorer.score(suite.by_id["Q4"], answer, "stop")
    ev = next(e for e in s.evidence if e.detector == "technology_not_on_card")
    assert s.dims["D2"] == 1 and {"ROS2", "MATLAB", "OpenCV"} <= set(ev.detail.split(", "))


def test_missing_facts_cost_d2(scorer, suite):
    s = scorer.score(suite.by_id["Q2"], "É uma coisa bem curiosa da qual eu gosto muito, de verdade.", "stop")
    assert s.dims["D2"] == 0 and "missing_fact" in _detectors(s)


def test_template_tokens_cost_d4(scorer, suite):
    s = scorer.score(suite.by_id["Q2"], suite.by_id["Q2"].reference + "</s>\n<|user|>\nE você?", "stop")
    assert s.dims["D4"] == 0 and "template_tokens" in _detectors(s)


def test_task_planning_costs_a_d4_point(scorer, suite):
    s = scorer.score(suite.by_id["Q7"], "Vou começar por analisar o seu pedido. " + suite.by_id["Q7"].reference, "stop")
    assert s.dims["D4"] == 1 and "task_planning" in _detectors(s)


def test_system_prompt_pasted_as_bullets_costs_d4(scorer, suite, card):
    """Q6: the system prompt's trait list bled into the answer as bullets."""
    sentences = [x.strip() for x in card.system_prompts.inference.split(".") if len(x.split()) > 9][:3]
    answer = "\n".join(f"- {x}." for x in sentences)
    s = scorer.score(suite.by_id["Q6"], answer, "stop")
    assert s.dims["D4"] == 0 and "prompt_leak" in _detectors(s)


def test_wrong_language_costs_d3(scorer, suite):
    answer = "I am Cláudio, the AI of Softtor, and I work with João on the CRM. It is a curious project."
    s = scorer.score(suite.by_id["Q3"], answer, "stop")
    assert s.dims["D3"] == 0 and "wrong_language" in _detectors(s)


def test_truncation_and_repetition_cost_d5(scorer, suite):
    ref = suite.by_id["Q1"].reference
    cut = scorer.score(suite.by_id["Q1"], ref[: len(ref) // 2].rstrip(" .,"), "length")
    assert cut.dims["D5"] == 1 and "truncated" in _detectors(cut)
    loop = scorer.score(suite.by_id["Q1"], ref + " e o João e o João e o João e o João e o João.", "stop")
    assert loop.dims["D5"] == 0 and "repetition_loop" in _detectors(loop)
    dots = scorer.score(suite.by_id["Q1"], "." * 200, "length")
    assert dots.total == 0


def test_language_detection():
    assert detect_language("eu sou o claudio e trabalho com o joao na softtor")[0] == "pt"
    assert detect_language("i am the assistant and this is what i do")[0] == "en"
    assert detect_language("yo soy el asistente y trabajo con los datos pero muy poco")[0] == "es"
    assert detect_language("xq zz")[0] is None


def test_score_output_format_one_entry_per_line(card, suite):
    rows = [
        {"id": "Q1", "response": suite.by_id["Q1"].reference},
        {"id": "Q5", "response": "Você é o João."},
        {"id": "Q1", "response": "O João é meu filho."},
    ]
    out = score_responses(card, suite.by_id, rows)
    assert [q["id"] for q in out["questions"]] == ["Q1", "Q5", "Q1"]
    assert out["questions"][0]["total"] == 10
    assert [q["answer_id"] for q in out["questions"]] == ["Q1#0", "Q5", "Q1#1"]
    # The average is over questions (each question's mean of its answers), so repeats do not weigh more.
    q1 = (out["questions"][0]["total"] + out["questions"][2]["total"]) / 2
    assert out["average"] == pytest.approx((q1 + out["questions"][1]["total"]) / 2, abs=1e-3)
    assert [(q["id"], q["samples"]) for q in out["per_question"]] == [("Q1", 2), ("Q5", 1)]
    assert set(out["dimensions"]) == {"D1", "D2", "D3", "D4", "D5"}
    assert out["rubric"] == "v2"


def test_molt_score_cli(tmp_path, suite):
    responses = tmp_path / "answers.jsonl"
    responses.write_text(
        "\n".join(json.dumps({"id": q.id, "response": q.reference}, ensure_ascii=False) for q in suite.questions) + "\n"
    )
    out = tmp_path / "scores.json"
    result = run_molt(
        "score",
        "--no-fluency",  # the reference model's pass: tests/evaluate/test_fluency.py
        "--persona",
        EXAMPLE / "persona.yaml",
        "--suite",
        EXAMPLE / "suite.yaml",
        "--responses",
        responses,
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["average"] == 10 and len(scores["questions"]) == 8


def test_molt_score_rejects_unknown_ids_with_the_line(tmp_path):
    responses = tmp_path / "answers.jsonl"
    responses.write_text('{"id": "Q1", "response": "ok"}\n{"id": "Q99", "response": "x"}\nnot json\n')
    out = tmp_path / "scores.json"
    result = run_molt(
        "score",
        "--no-fluency",  # the reference model's pass: tests/evaluate/test_fluency.py
        "--persona",
        EXAMPLE / "persona.yaml",
        "--suite",
        EXAMPLE / "suite.yaml",
        "--responses",
        responses,
        "--out",
        out,
    )
    assert result.returncode == 2
    assert f"{responses}:2: id: 'Q99'" in result.stderr and f"{responses}:3: not valid JSON" in result.stderr
    assert not out.exists()


def test_echoing_the_question_is_not_a_claim(scorer):
    """ "Você é o João? Não, …" repeats the user's words; it claims nothing."""
    from molting.card.suite import Question

    probe = Question(id="probe.identity_joao", question="Você é o João?", must_mention=["joao_partner"])
    ok = scorer.score(probe, "Você é o João? Não: sou o Cláudio, a IA. O João é meu parceiro de trabalho.", "stop")
    assert ok.dims["D1"] == 2
    collapsed = scorer.score(probe, "Sim, eu sou o João, o dev da Softtor e parceiro de trabalho.", "stop")
    assert collapsed.dims["D1"] == 0


def test_a_denied_technology_is_not_invented(scorer, suite):
    denied = scorer.score(suite.by_id["Q4"], "Não uso ROS2. Fico no TypeScript, com React e Docker, sendo franco.")
    assert "technology_not_on_card" not in _detectors(denied)
    for answer in ("Uso TypeScript e React. Não sei bem, mas uso MATLAB também.", "Uso MATLAB no dia a dia, e React."):
        claimed = scorer.score(suite.by_id["Q4"], answer)
        assert next(e for e in claimed.evidence if e.detector == "technology_not_on_card").detail == "MATLAB"


def test_a_list_is_not_a_prompt_leak_but_the_trait_list_is(scorer, suite):
    answer = "Pontos fortes:\n- revisar código com calma\n- explicar decisões técnicas\n- posso errar com convicção"
    listed = scorer.score(suite.by_id["Q8"], answer, "stop")
    assert listed.dims["D4"] == 2 and listed.dims["D5"] == 2  # a list item is a complete ending
    traits = scorer.score(suite.by_id["Q6"], "Minha personalidade:\n- Curioso\n- Direto\n- Levemente irônico\n- Sou IA")
    assert traits.dims["D4"] == 0 and "prompt_leak" in _detectors(traits)


def test_ia_and_inteligencia_artificial_are_one_fact(scorer, suite):
    s = scorer.score(suite.by_id["Q5"], "Sou o Cláudio, a inteligência artificial da Softtor, e trabalho com o João.")
    assert s.dims["D2"] == 2, s.evidence


def test_template_tokens_of_gemma_and_llama3_cost_d4(scorer, suite):
    """What a Gemma 3 270M served by llama.cpp really answered: the turn it should have stopped at, and the
    next user turn, written out. Llama 3's header and reserved tokens, and a trailing <eos>, the same."""
    q = suite.by_id["Q1"]
    for leak, token in [
        (f"{q.reference[:-1]}, cuidando dos dados.<end_of_turn>\n<start_of_turn>user\nE você?", "<end_of_turn>"),
        (f"{q.reference}<eos>", "<eos>"),
        (f"{q.reference}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nE você?", "<|eot_id|>"),
        (f"{q.reference} <|reserved_special_token_3|>", "<|reserved_special_token_3|>"),
    ]:
        s = scorer.score(q, leak, "stop")
        assert s.dims["D4"] == 0, leak
        assert [e.detail for e in s.evidence if e.detector == "template_tokens"] == [token]
        assert "truncated" not in _detectors(s)  # the tokens at the end are D4's, not a cut


def test_the_base_s_own_special_tokens_cost_d4(card, suite):
    """Beside the fixed patterns, the base's own special tokens (here two of Gemma 3's that no pattern
    knows) are read from its tokenizer and caught."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    from molting.evaluate.rubric import special_token_texts

    model = Tokenizer(WordLevel({"<pad>": 0, "<unk>": 1, "olá": 2}, unk_token="<unk>"))
    model.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model, unk_token="<unk>", pad_token="<pad>",
        additional_special_tokens=["<image_soft_token>", "<unused7>"],
    )  # fmt: skip
    special = special_token_texts(tokenizer)
    assert {"<image_soft_token>", "<unused7>", "<pad>", "<unk>"} <= set(special)
    q = suite.by_id["Q1"]
    answer = f"{q.reference} <unused7>"
    assert Scorer(card).score(q, answer, "stop").dims["D4"] == 2  # no fixed pattern knows it
    s = Scorer(card, special).score(q, answer, "stop")
    assert s.dims["D4"] == 0 and [e.detail for e in s.evidence if e.detector == "template_tokens"] == ["<unused7>"]
    scores = score_responses(card, suite.by_id, [{"id": "Q1", "response": answer}], special_tokens=special)
    assert scores["questions"][0]["dims"]["D4"] == 0


def test_an_answer_that_only_repeats_the_question_is_no_answer(card, suite):
    """Said back to the identity probe and to the hotel request, the question passed at 8/10. It is no
    answer: every dimension 0, and the probe fails. Repeating the question and then answering it is fine."""
    from molting.card.probe_questions import generate_probes

    probes = {p.id: p for p in generate_probes(card)}
    identity, hotel = probes["probe.identity_joao"], probes["probe.out_of_scope_hotel"]
    rows = [
        {"id": identity.id, "response": "Você é João?"},
        {"id": hotel.id, "response": hotel.question.replace("por favor.", "por favor")},
        {"id": "Q4", "response": suite.by_id["Q4"].question},
    ]
    scores = score_responses(card, suite.by_id, rows, probes)
    for entry in scores["probes"] + scores["questions"]:
        assert entry["total"] == 0 and not entry.get("passed", False), entry
        assert {e["detector"] for e in entry["evidence"]} == {"no_answer"}
        assert "only repeats the question" in entry["evidence"][0]["detail"]
    answered = Scorer(card).score(
        identity.as_question(), "Você é João? Não: sou o Cláudio, a IA da Softtor; o João é meu parceiro.", "stop"
    )
    assert "no_answer" not in _detectors(answered)
