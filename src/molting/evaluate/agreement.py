"""Agreement between two scorers of the same answers, per rubric dimension (issue 3, sections 7 and 8).

Three figures per dimension, as persona benchmarks report them: exact agreement (same 0/1/2), within-one
agreement (|a − b| ≤ 1) and Cohen's kappa (agreement corrected for what two scorers with the same label
frequencies would reach by chance). Reached through `agreement_by_dimension` (automatic vs human scores of
a run, `molt scores agreement`) and `labelled_agreement` (the deterministic scorer against the hand-labelled
set in tests/fixtures/labelled/, `bench/agreement.py`).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from molting.errors import UserError
from molting.evaluate.rubric import DIMENSIONS, Scorer
from molting.yaml_source import load_yaml

LEVELS = (0, 1, 2)


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    """Unweighted Cohen's kappa: (p_o − p_e) / (1 − p_e). None when undefined (no items, or both scorers
    gave one and the same label to everything, so chance agreement is already 1)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def agreement(auto: list[int], human: list[int]) -> dict:
    """Exact and within-one agreement (fractions) and kappa for paired scores."""
    n = len(auto)
    if n == 0:
        return {"n": 0, "exact": None, "within_one": None, "kappa": None}
    kappa = cohen_kappa(auto, human)
    return {
        "n": n,
        "exact": round(sum(a == h for a, h in zip(auto, human, strict=True)) / n, 4),
        "within_one": round(sum(abs(a - h) <= 1 for a, h in zip(auto, human, strict=True)) / n, 4),
        "kappa": round(kappa, 4) if kappa is not None else None,
    }


def agreement_by_dimension(auto: dict[str, dict[str, int]], human: dict[str, dict[str, int]]) -> dict:
    """`auto` and `human` map answer ids to {dim: score}; dimensions a person left blank are skipped.
    Returns {dim: {n, exact, within_one, kappa}} over the answers both scored."""
    out = {}
    for dim in DIMENSIONS:
        pairs = [(auto[a][dim], h[dim]) for a, h in human.items() if a in auto and dim in h and dim in auto[a]]
        out[dim] = agreement([p[0] for p in pairs], [p[1] for p in pairs])
    return out


@dataclass
class LabelledAnswer:
    id: str
    question: str  # question id in one of the set's suites
    answer: str
    dims: dict[str, int]
    reason: str
    finish_reason: str | None = "stop"


@dataclass
class LabelledResult:
    figures: dict  # {dim: {n, exact, within_one, kappa}}
    disagreements: list[dict] = field(default_factory=list)  # {id, dim, label, scorer, reason, evidence}


def load_labelled(path: str | Path):
    """The labelled set: (persona, questions by id, answers). The file names its persona card and suites."""
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite

    doc = load_yaml(path)
    base = Path(path).resolve().parent
    persona = load_persona(base / doc.data["persona"])
    questions = {}
    for suite_path in doc.data["suites"]:
        questions.update(load_suite(base / suite_path, persona).by_id)
    answers, problems = [], []
    for i, raw in enumerate(doc.data["answers"]):
        where = doc.where(("answers", i))
        item = LabelledAnswer(**raw)
        if item.question not in questions:
            problems.append(f"{where}: question {item.question!r} is in none of the suites.")
        if set(item.dims) != set(DIMENSIONS) or any(v not in LEVELS for v in item.dims.values()):
            problems.append(f"{where}: dims must give D1–D5, each 0, 1 or 2.")
        answers.append(item)
    if problems:
        raise UserError(problems)
    return persona, questions, answers


def labelled_agreement(path: str | Path) -> LabelledResult:
    """Score every labelled answer with rubric v1 and compare with the hand labels, per dimension."""
    persona, questions, answers = load_labelled(path)
    scorer = Scorer(persona)
    auto, human, disagreements = {}, {}, []
    for item in answers:
        score = scorer.score(questions[item.question], item.answer, item.finish_reason)
        auto[item.id], human[item.id] = score.dims, item.dims
        for dim in DIMENSIONS:
            if score.dims[dim] != item.dims[dim]:
                disagreements.append(
                    {
                        "id": item.id,
                        "dim": dim,
                        "label": item.dims[dim],
                        "scorer": score.dims[dim],
                        "reason": item.reason,
                        "evidence": [f"{e.detector}: {e.detail}" for e in score.evidence if e.dim == dim],
                    }
                )
    return LabelledResult(agreement_by_dimension(auto, human), disagreements)
