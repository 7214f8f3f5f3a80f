"""The statistics behind every score molting reports: means with 95% bootstrap confidence intervals, and
agreement between two scorers.

Intervals are reached through `group_summary` (rubric.score_responses and refresh_question_summary call it:
`molt eval`, and report.md after human scores) and through `mean_ci` / `two_level_ci` directly (the run
reader behind report.html, `molt compare` and the dashboard), so every report of a run shows the same
interval. A question answered several times
(samples, paraphrases) gets the mean of its answers' totals and a percentile bootstrap interval over those
answers. The run's average is the mean of the question means, so every question weighs the same however
many answers it has; its interval comes from a two-level bootstrap: resample the questions, and within
each question resample its answers. The resampling seed is fixed, so the same scores always give the
same interval. One answer per question gives no interval for that question (`ci95` is null): a single
answer cannot show how much the next one would differ.

Two runs answering the same questions are compared by `paired_bootstrap` (`molt compare`): the per-question
differences of their means, resampled together with scipy's `bootstrap(paired=True)`, give a 95% interval
of the mean difference and a two-sided bootstrap p-value. Pairing removes what the questions themselves
contribute (an easy question is easy for both runs), so a small gain on every question shows, where two
overlapping intervals of the averages would hide it.

Agreement (`agreement_by_dimension`: automatic against human scores, `molt scores agreement`; the rubric
against the hand-labelled set, `molting.evaluate.rubric.labelled_agreement`) is three figures per
dimension, as persona benchmarks report them: exact agreement (same 0/1/2), within-one agreement
(|a − b| ≤ 1) and Cohen's kappa (agreement corrected for what two scorers with the same label frequencies
would reach by chance), from scikit-learn, both unweighted and quadratic-weighted: the scores are ordinal,
so a 0 against a 2 is a worse disagreement than a 1 against a 2, and the weighted kappa counts it four times.
"""

import warnings
from typing import TypedDict

import numpy as np

RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def _interval(means: np.ndarray) -> list[float]:
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


def mean_ci(values: list[float], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[float] | None:
    """95% percentile bootstrap interval of the mean of `values`; None for fewer than two values."""
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    return _interval(data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1))


def two_level_ci(
    groups: list[list[float]], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[float] | None:
    """95% interval of the mean of group means: each replicate draws the groups (questions) with
    replacement, and each group's answers with replacement. None when nothing varies to resample
    (fewer than two groups of one answer each)."""
    if not groups or (len(groups) < 2 and len(groups[0]) < 2):
        return None
    rng = np.random.default_rng(seed)
    within = np.empty((resamples, len(groups)))
    for j, group in enumerate(groups):
        data = np.asarray(group, dtype=float)
        within[:, j] = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    # A question drawn twice in one replicate reuses that replicate's answer draw (the usual shortcut;
    # the second level's spread is still there through the other replicates).
    picks = rng.integers(0, len(groups), size=(resamples, len(groups)))
    return _interval(np.take_along_axis(within, picks, axis=1).mean(axis=1))


def group_summary(
    entries: list[dict], dimensions: tuple[str, ...]
) -> tuple[list[dict], float | None, list[float] | None]:
    """Per-id summaries of answer entries (`id`, `total`, `dims`), in order of first appearance, plus the
    run average (mean of the per-id means; None when there are no entries) and its two-level interval."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["id"], []).append(e)
    summaries, means = [], []
    for qid, answers in groups.items():
        totals = [a["total"] for a in answers]
        means.append(float(np.mean(totals)))
        summaries.append(
            {
                "id": qid,
                "samples": len(answers),
                "mean": round(means[-1], 3),
                "ci95": mean_ci(totals),
                "dims": {d: round(float(np.mean([a["dims"][d] for a in answers])), 3) for d in dimensions},
            }
        )
    average = round(float(np.mean(means)), 3) if means else None
    ci = two_level_ci([[a["total"] for a in answers] for answers in groups.values()])
    return summaries, average, ci


PAIRED_RESAMPLES = 10_000  # the p-value's resolution is 1 / PAIRED_RESAMPLES


class PairedDifference(TypedDict):
    """The paired bootstrap of two runs' per-question means: `other` minus `base`."""

    questions: int  # questions both runs answered
    mean_delta: float
    ci95: list[float]  # 95% percentile interval of the mean difference
    p_value: float  # two-sided: twice the share of resampled mean differences on the far side of 0, at most 1


def paired_bootstrap(
    base: list[float], other: list[float], resamples: int = PAIRED_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> PairedDifference | None:
    """95% interval and bootstrap p-value of mean(other − base) over paired values (the same questions, in the
    same order); None for fewer than two pairs. Seeded: the same scores give the same figures."""
    if len(base) != len(other):
        raise ValueError("paired_bootstrap needs one value of each run per question")
    if len(base) < 2:
        return None
    from scipy.stats import bootstrap  # scipy.stats costs a second to import; only `molt compare` needs it

    result = bootstrap(
        (np.asarray(base, dtype=float), np.asarray(other, dtype=float)),
        lambda a, b, axis: np.mean(b - a, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    replicates = result.bootstrap_distribution
    p_value = min(1.0, 2 * min(float(np.mean(replicates <= 0)), float(np.mean(replicates >= 0))))
    low, high = result.confidence_interval
    return {
        "questions": len(base),
        "mean_delta": round(float(np.mean(np.subtract(other, base))), 4),
        "ci95": [round(float(low), 4), round(float(high), 4)],
        "p_value": round(p_value, 4),
    }


SCORE_LEVELS = (0, 1, 2)  # a dimension's score


def cohen_kappa(a: list[int], b: list[int], weights: str | None = None) -> float | None:
    """Cohen's kappa (scikit-learn's `cohen_kappa_score`), unweighted or with `weights="quadratic"`. None when
    undefined: no items, or both scorers gave one and the same label to everything, so chance agreement is
    already 1 (scikit-learn warns and returns nan there)."""
    if not a or len(a) != len(b):
        return None
    # scikit-learn costs a second to import, and rubric (which every config load reads) imports this module
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # the whole score scale as labels: the confusion matrix keeps its shape when one label is all there is
        kappa = float(cohen_kappa_score(a, b, labels=sorted({*SCORE_LEVELS, *a, *b}), weights=weights))
    return None if np.isnan(kappa) else kappa


def agreement(auto: list[int], human: list[int]) -> dict:
    """Exact and within-one agreement (fractions), unweighted kappa and quadratic-weighted kappa
    (`kappa_quadratic`) for paired scores."""
    n = len(auto)
    if n == 0:
        return {"n": 0, "exact": None, "within_one": None, "kappa": None, "kappa_quadratic": None}
    kappa = cohen_kappa(auto, human)
    weighted = cohen_kappa(auto, human, weights="quadratic")
    return {
        "n": n,
        "exact": round(sum(a == h for a, h in zip(auto, human, strict=True)) / n, 4),
        "within_one": round(sum(abs(a - h) <= 1 for a, h in zip(auto, human, strict=True)) / n, 4),
        "kappa": round(kappa, 4) if kappa is not None else None,
        "kappa_quadratic": round(weighted, 4) if weighted is not None else None,
    }


def agreement_by_dimension(
    auto: dict[str, dict[str, int]], human: dict[str, dict[str, int]], dimensions: tuple[str, ...]
) -> dict:
    """`auto` and `human` map answer ids to {dim: score}; dimensions a person left blank are skipped.
    Returns {dim: {n, exact, within_one, kappa, kappa_quadratic}} for each of `dimensions`, over the answers
    both scored."""
    out = {}
    for dim in dimensions:
        pairs = [(auto[a][dim], h[dim]) for a, h in human.items() if a in auto and dim in h and dim in auto[a]]
        out[dim] = agreement([p[0] for p in pairs], [p[1] for p in pairs])
    return out
