"""Agreement figures: Cohen's kappa against a hand-computed example, and the deterministic scorer against
the hand-labelled set, held at its targets (exact ≥ 85% on D1, D4, D5; ≥ 75% on D2, D3) so a rubric
regression fails here."""

import subprocess
import sys

import pytest
from conftest import REPO

from molting.evaluate.rubric import DIMENSIONS, labelled_agreement
from molting.evaluate.statistics import agreement, agreement_by_dimension, cohen_kappa

LABELLED = REPO / "tests" / "fixtures" / "labelled" / "answers.yaml"
TARGETS = {"D1": 0.85, "D2": 0.75, "D3": 0.75, "D4": 0.85, "D5": 0.85}


def test_kappa_matches_a_hand_computed_example():
    auto = [2, 2, 1, 0, 2, 1, 0, 2, 2, 1]
    human = [2, 1, 1, 0, 2, 2, 0, 2, 1, 1]
    # By hand: 7 of 10 agree, p_o = 0.7. Label counts auto 0:2 1:3 2:5, human 0:2 1:4 2:4, so chance
    # agreement p_e = (2·2 + 3·4 + 5·4) / 100 = 0.36 and kappa = (0.7 − 0.36) / (1 − 0.36) = 0.53125.
    assert cohen_kappa(auto, human) == pytest.approx(0.53125)
    assert agreement(auto, human) == {"n": 10, "exact": 0.7, "within_one": 1.0, "kappa": 0.5312}


def test_kappa_edge_cases():
    assert cohen_kappa([2, 0, 1], [2, 0, 1]) == pytest.approx(1.0)
    assert cohen_kappa([2, 2, 0, 0], [0, 0, 2, 2]) == pytest.approx(-1.0)  # always disagreeing
    assert cohen_kappa([2, 2, 2], [2, 2, 2]) is None  # chance agreement is 1: undefined
    assert cohen_kappa([], []) is None
    assert agreement([0, 2], [2, 2])["within_one"] == 0.5


def test_agreement_by_dimension_skips_what_a_person_left_blank():
    auto = {"Q1": {"D1": 2, "D2": 1, "D3": 2, "D4": 2, "D5": 0}, "Q2": {"D1": 0, "D2": 2, "D3": 2, "D4": 2, "D5": 2}}
    human = {"Q1": {"D1": 2, "D5": 1}, "Q2": {"D1": 1}, "Q9": {"D1": 2}}  # Q9: no automatic score
    figures = agreement_by_dimension(auto, human, DIMENSIONS)
    # D1 pairs (2, 2) and (0, 1): p_o = 1/2, p_e = 1/4 (only the label 2 is shared), kappa = 1/3
    assert figures["D1"] == {"n": 2, "exact": 0.5, "within_one": 1.0, "kappa": 0.3333}
    assert figures["D5"]["n"] == 1 and figures["D5"]["exact"] == 0.0
    assert figures["D2"] == {"n": 0, "exact": None, "within_one": None, "kappa": None}


def test_scorer_agrees_with_the_labelled_set_at_the_targets():
    result = labelled_agreement(LABELLED)
    assert all(f["n"] >= 80 for f in result.figures.values())
    below = {d: f["exact"] for d, f in result.figures.items() if f["exact"] < TARGETS[d]}
    assert not below, f"rubric v1 agreement fell below the targets: {below}"


def test_agreement_script_prints_the_figures():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "agreement.py")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "D1" in out.stdout and "kappa" in out.stdout and "MISSED" not in out.stdout
