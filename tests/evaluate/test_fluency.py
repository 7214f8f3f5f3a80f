"""The fluency pass on the real reference model (google/gemma-3-270m, packaged): the labelled set's stored
figures match the model, `molt score` catches word salad with it and caches what it read, thresholds are
refused for another model, and `--no-fluency` still catches invented words."""

import json

import pytest
from conftest import EXAMPLE, REPO, run_molt

from molting.evaluate.fluency import (
    ReferenceModel,
    load_calibration,
    model_identity,
    prompt_for,
    second_half,
    shuffled,
)
from molting.evaluate.rubric import load_labelled

LABELLED = REPO / "tests" / "fixtures" / "labelled" / "answers.yaml"
SALAD = (
    "Não nem. Quero entender o tipo de cortar a qualidade. Pro, direto, porque reproduzir, posso errar e aí eu "
    "trabalho, é lembrar de cada revisão, e testes."
)
GOOD = (
    "Sou forte em revisar código, raciocinar por partes e explicar decisões técnicas. O ponto fraco é a memória: "
    "esqueço tudo entre sessões e posso errar com convicção, por isso gosto que o João confira o que eu sugiro."
)


def test_stored_figures_are_the_models(gemma_base):
    stored = json.loads(LABELLED.with_name("fluency.json").read_text())
    assert stored["identity"] == model_identity(str(gemma_base))
    assert load_calibration(None, stored["identity"]).identity == stored["identity"]
    persona, questions, answers = load_labelled(LABELLED)
    sample = [a for a in answers if a.id in ("L001", "L014", "L112", "L120", "L125", "L157")]
    reference = ReferenceModel("packaged:gemma-3-270m", batch_size=4)
    for a in sample:
        prompt = prompt_for(persona.identity.summary, questions[a.question].question, persona.language)
        plain, *shuffles = reference.score(
            [(prompt, a.answer), (prompt, shuffled(a.answer, 0)), (prompt, shuffled(a.answer, 1))]
        )
        figure = stored["answers"][a.id]
        assert plain.nll == pytest.approx(figure["nll"], abs=0.02), a.id
        assert sum(s.nll for s in shuffles) / 2 == pytest.approx(figure["shuffled_nll"], abs=0.02), a.id
        # each word's NLL sums its tokens': the words add up to the answer's
        assert sum(plain.words) == pytest.approx(plain.nll * plain.tokens, abs=0.05), a.id
        half, shuffled_half = second_half(plain, shuffles)
        assert half == pytest.approx(figure["half_nll"], abs=0.1), a.id
        assert shuffled_half == pytest.approx(figure["shuffled_half_nll"], abs=0.1), a.id


def _responses(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = [{"id": "Q8", "answer_id": "salad", "response": SALAD}, {"id": "Q8", "answer_id": "good", "response": GOOD}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _score(tmp_path, *extra):
    out = tmp_path / "scores.json"
    args = ["--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml"]
    result = run_molt("score", *args, "--responses", _responses(tmp_path), "--out", out, *extra)
    return result, out


def test_molt_score_reads_every_answer_and_caches_it(tmp_path, gemma_base):
    result, out = _score(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    scores = json.loads(out.read_text())
    entries = {e["answer_id"]: e for e in scores["questions"]}
    salad, good = entries["salad"], entries["good"]
    assert salad["fluency"]["order_score"] > scores["fluency"]["thresholds"]["salad"] > good["fluency"]["order_score"]
    assert salad["fluency"]["half_ratio"] is not None and good["fluency"]["half_ratio"] is not None
    assert any(e["detector"] == "word_salad" and e["dim"] == "D5" for e in salad["evidence"])
    assert salad["dims"]["D5"] == 0 and salad["total"] <= 6
    assert not any(e["detector"] in ("word_salad", "not_fluent") for e in good["evidence"]) and good["total"] >= 7
    # each answer and its two shuffles; a cache kept across sessions (MOLTING_TEST_CACHE) may hold some already
    assert scores["fluency"]["model"] == "packaged:gemma-3-270m" and scores["fluency"]["answers"] == 2
    assert 0 <= scores["fluency"]["computed"] <= 6
    again, out = _score(tmp_path)  # the same answers again: every figure from the cache
    assert again.returncode == 0 and json.loads(out.read_text())["fluency"]["computed"] == 0


def test_thresholds_of_one_model_are_refused_for_another(tmp_path, gemma_base):
    result, out = _score(tmp_path, "--fluency-model", "builtin:tiny")
    assert result.returncode == 2 and not out.exists()
    assert "calibrated for packaged:gemma-3-270m" in result.stderr and "--calibrate" in result.stderr


def test_without_the_model_invented_words_are_still_caught(tmp_path):
    path = tmp_path / "answers.jsonl"
    text = "Sobre o CRM, a Softtor refinita o produto e o João coisase com o React no Docker, possamcrito direto."
    path.write_text(json.dumps({"id": "Q3", "response": text}, ensure_ascii=False) + "\n")
    out = tmp_path / "scores.json"
    args = ["--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml", "--responses", path]
    result = run_molt("score", *args, "--out", out, "--no-fluency")
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["fluency"] == {"skipped": "--no-fluency"}
    evidence = scores["questions"][0]["evidence"]
    assert any(e["detector"] in ("word_salad", "not_fluent") and "refinita" in e["detail"] for e in evidence)
