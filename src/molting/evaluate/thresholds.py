"""Minimum scores for CI jobs: `molt eval --min-average X --min D2=1.5` exits 1 when the evaluation falls short.

Reached from the CLI (`cli/evaluate.py`): `parse_minimum` reads a `--min DIM=SCORE` before anything is
loaded, so a typo costs no evaluation; `shortfalls` compares the finished scores.json with the minimums and
says, one item per miss, what fell short and by how much.
"""

from molting.errors import UserError
from molting.evaluate.rubric import DIMENSION_NAMES, DIMENSIONS, Scores


def parse_minimum(text: str) -> tuple[str, float]:
    """`D2=1.5` -> ("D2", 1.5); a UserError saying what a minimum looks like otherwise."""
    dim, sep, value = text.partition("=")
    dim = dim.strip().upper()
    try:
        score = float(value) if sep else None
    except ValueError:
        score = None
    if dim not in DIMENSIONS or score is None or not 0 <= score <= 2:
        raise UserError(
            f"--min {text!r}: expected DIMENSION=SCORE with a dimension of {', '.join(DIMENSIONS)} and a score "
            "from 0 to 2, e.g. --min D2=1.5 (each dimension's average over the suite, /2)."
        )
    return dim, score


def shortfalls(scores: Scores, min_average: float | None, minimums: dict[str, float]) -> list[str]:
    """What fell below its minimum: the suite's average (/10) and each dimension's average (/2). A value that
    could not be computed (no answer scored) falls short of any minimum."""
    missed = []
    if min_average is not None:
        average = scores["average"]
        if average is None or average < min_average:
            shown = "none (no answer scored)" if average is None else f"{average:.2f}/10"
            missed.append(f"average {shown} < --min-average {min_average:g}")
    for dim, minimum in minimums.items():
        value = scores["dimensions"].get(dim)
        if value is None or value < minimum:
            shown = "none" if value is None else f"{value:.2f}"
            missed.append(f"{dim} ({DIMENSION_NAMES[dim]}) {shown} < --min {dim}={minimum:g}")
    return missed
