"""Means with 95% bootstrap confidence intervals, per question and per run (issue 3, section 1).

Reached through `group_summary` (rubric.score_responses calls it). A question answered several times
(samples, paraphrases) gets the mean of its answers' totals and a percentile bootstrap interval over those
answers. The run's average is the mean of the question means, so every question weighs the same however
many answers it has; its interval comes from a two-level bootstrap: resample the questions, and within
each question resample its answers. The resampling seed is fixed, so the same scores always give the
same interval. One answer per question gives no interval for that question (`ci95` is null): a single
answer cannot show how much the next one would differ.
"""

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


def group_summary(entries: list[dict], dimensions: tuple[str, ...]) -> tuple[list[dict], float, list[float] | None]:
    """Per-id summaries of answer entries (`id`, `total`, `dims`), in order of first appearance, plus the
    run average (mean of the per-id means) and its two-level interval."""
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
    average = round(float(np.mean(means)), 3) if means else 0.0
    ci = two_level_ci([[a["total"] for a in answers] for answers in groups.values()])
    return summaries, average, ci
