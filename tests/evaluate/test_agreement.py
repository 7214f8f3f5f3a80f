"""Agreement figures: Cohen's kappa against a hand-computed example, and the scorer against the hand-labelled
set, held at its targets (exact ≥ 85% on D1, D4, D5; ≥ 80% on D2, D3; every answer labelled 10/10 keeps
≥ 7/10) so a rubric regression fails here. The fluency figures of the labelled answers come from
tests/fixtures/labelled/fluency.json; tests/evaluate/test_fluency.py checks them against the real model."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

from molting.evaluate.rubric import DIMENSIONS, labelled_agreement, load_labelled, score_labelled
from molting.evaluate.statistics import agreement, agreement_by_dimension, cohen_kappa

LABELLED = REPO / "tests" / "fixtures" / "labelled" / "answers.yaml"
TARGETS = {"D1": 0.85, "D2": 0.80, "D3": 0.80, "D4": 0.85, "D5": 0.85}
FIGURES = LABELLED.with_name("fluency.json")


def labelled_figures():
    from molting.evaluate.fluency import Fluency, load_calibration

    data = json.loads(FIGURES.read_text())
    figures = {k: Fluency.from_figures(v) for k, v in data["answers"].items()}
    return figures, load_calibration(None, data["identity"])


def test_kappa_matches_a_hand_computed_example():
    auto = [2, 2, 1, 0, 2, 1, 0, 2, 2, 1]
    human = [2, 1, 1, 0, 2, 2, 0, 2, 1, 1]
    # By hand: 7 of 10 agree, p_o = 0.7. Label counts auto 0:2 1:3 2:5, human 0:2 1:4 2:4, so chance
    # agreement p_e = (2·2 + 3·4 + 5·4) / 100 = 0.36 and kappa = (0.7 − 0.36) / (1 − 0.36) = 0.53125.
    assert cohen_kappa(auto, human) == pytest.approx(0.53125)
    # Quadratic weights (i − j)²: the 3 disagreements are one level apart, observed cost 3. Expected cost
    # Σ (i − j)² · auto_i · human_j / n = (1·2·4 + 4·2·4 + 1·3·2 + 1·3·4 + 4·5·2 + 1·5·4) / 10 = 11.8, so the
    # weighted kappa is 1 − 3 / 11.8 = 0.7458.
    assert cohen_kappa(auto, human, weights="quadratic") == pytest.approx(1 - 3 / 11.8)
    assert agreement(auto, human) == {
        "n": 10,
        "exact": 0.7,
        "within_one": 1.0,
        "kappa": 0.5312,
        "kappa_quadratic": 0.7458,
    }


def test_quadratic_kappa_counts_a_far_disagreement_more_than_a_near_one():
    auto = [0, 1, 2, 2, 0, 1, 2, 1]
    near = [0, 1, 2, 1, 0, 1, 2, 1]  # one answer 1 level off
    far = [0, 1, 2, 0, 0, 1, 2, 1]  # the same answer 2 levels off
    assert cohen_kappa(auto, near) == pytest.approx(cohen_kappa(auto, far), abs=0.05)
    assert cohen_kappa(auto, far, weights="quadratic") < cohen_kappa(auto, near, weights="quadratic") - 0.1


def test_kappa_edge_cases():
    assert cohen_kappa([2, 0, 1], [2, 0, 1]) == pytest.approx(1.0)
    assert cohen_kappa([2, 2, 0, 0], [0, 0, 2, 2]) == pytest.approx(-1.0)  # always disagreeing
    assert cohen_kappa([2, 2, 0, 0], [0, 0, 2, 2], weights="quadratic") == pytest.approx(-1.0)
    # chance agreement is 1: undefined (scikit-learn warns and returns nan; molting reports n/a)
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) is None
    assert cohen_kappa([2, 2, 2], [2, 2, 2], weights="quadratic") is None
    assert cohen_kappa([], []) is None
    assert agreement([0, 2], [2, 2])["within_one"] == 0.5


def test_agreement_by_dimension_skips_what_a_person_left_blank():
    auto = {"Q1": {"D1": 2, "D2": 1, "D3": 2, "D4": 2, "D5": 0}, "Q2": {"D1": 0, "D2": 2, "D3": 2, "D4": 2, "D5": 2}}
    human = {"Q1": {"D1": 2, "D5": 1}, "Q2": {"D1": 1}, "Q9": {"D1": 2}}  # Q9: no automatic score
    figures = agreement_by_dimension(auto, human, DIMENSIONS)
    # D1 pairs (2, 2) and (0, 1): p_o = 1/2, p_e = 1/4 (only the label 2 is shared), kappa = 1/3; quadratic:
    # observed cost 1, expected (1·1·1 + 4·1·1 + 1·1·1) / 2 = 3, weighted kappa 1 − 1/3
    assert figures["D1"] == {"n": 2, "exact": 0.5, "within_one": 1.0, "kappa": 0.3333, "kappa_quadratic": 0.6667}
    assert figures["D5"]["n"] == 1 and figures["D5"]["exact"] == 0.0
    assert figures["D2"] == {"n": 0, "exact": None, "within_one": None, "kappa": None, "kappa_quadratic": None}


def test_scorer_agrees_with_the_labelled_set_at_the_targets():
    figures, calibration = labelled_figures()
    result = labelled_agreement(LABELLED, figures, calibration)
    assert all(f["n"] >= 160 for f in result.figures.values())
    below = {d: f["exact"] for d, f in result.figures.items() if f["exact"] < TARGETS[d]}
    assert not below, f"agreement fell below the targets: {below}"
    assert result.groups["good"]["n"] >= 30 and result.groups["good"]["min_total"] >= 7
    assert result.groups["word_salad"]["n"] >= 30 and result.groups["word_salad"]["max_total"] <= 6
    v1 = labelled_agreement(LABELLED, v1=True)
    assert v1.groups["word_salad"]["max_total"] == 10  # what v1 gave word salad, for contrast


def test_word_salad_pronoun_claims_and_invented_words_are_caught():
    figures, calibration = labelled_figures()
    _, _, answers = load_labelled(LABELLED)
    scored = score_labelled(*load_labelled(LABELLED)[:2], answers, figures, calibration)
    totals = {a.id: sum(scored.auto[a.id].values()) for a in answers}
    salad = [a.id for a in answers if a.kind == "word_salad"]
    assert all(totals[i] <= 6 for i in salad), {i: totals[i] for i in salad if totals[i] > 6}
    # L125 opens like a sentence; its order ratio alone (0.636) is below every threshold that spares the good
    # answers. The second half gives it away.
    assert figures["L125"].order_ratio < calibration.salad <= figures["L125"].order_score
    for a in answers:
        if a.kind == "pronoun_claim":  # each claim made through a pronoun or a relative clause costs D2
            assert scored.auto[a.id]["D2"] == 0, a.id
            assert any(e.detector == "forbidden_claim:joao_family" for e in scored.evidence[a.id]), a.id
        if a.kind == "pronoun_clean":  # "Você é o João? Não…", "o pai dele": no claim
            assert not any(e.detector.startswith("forbidden_claim") for e in scored.evidence[a.id]), a.id
    # without the model, invented words still catch the salad that has them
    no_model = score_labelled(*load_labelled(LABELLED)[:2], answers)
    for answer_id in ("L120", "L123", "L135"):
        assert any(e.detector in ("word_salad", "not_fluent") for e in no_model.evidence[answer_id]), answer_id


def test_agreement_script_prints_the_figures():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "agreement.py")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr  # 1: a target missed
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line[:2] in ("D1", "D2", "D3", "D4", "D5")}
    assert set(lines) == {"D1", "D2", "D3", "D4", "D5"} and all(line.endswith(" ok") for line in lines.values())
    assert "word salad (42 answers): highest total 5/10, target ≤ 6 ok" in out.stdout
    assert "good answers (42 labelled 10/10)" in out.stdout


def test_the_shipped_weight_separates_salad_from_good_answers():
    """`--weights`: at the second half's shipped weight every word-salad answer scores above every answer
    labelled 10/10, where the order ratio alone (weight 0) leaves some below; leave-one-out on all sets."""
    from molting.evaluate.fluency import HALF_WEIGHT

    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "agreement.py"), "--weights"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[0].replace(".", "").isdigit():
            rows.setdefault(float(cells[0]), []).append(float(cells[3]))  # the gap, sets 1-2 then all sets
    assert all(gap > 0 for gap in rows[HALF_WEIGHT]) and all(gap < 0 for gap in rows[0.0])
    assert "leave-one-out over 84 answers: 0 misclassified" in out.stdout
