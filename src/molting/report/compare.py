"""Compare runs (`molt compare RUN_A RUN_B ...`): the settings, training and scores of each run side by
side, and a verdict on whether a later run is better, made by one command instead of by hand.

Reached through `compare_runs(run_dirs, eval_id)`, which returns a `CompareResult` (the `--json` output);
`to_markdown` and `plot_loss_curves` render it, and `molting.cli.tables` on a terminal. The first run is the
baseline; every
other run gets a verdict against it, per question and overall:

- IMPROVEMENT / REGRESSION when the two 95% confidence intervals do not overlap (the later run's interval
  wholly above / below the baseline's), NO SIGNIFICANT CHANGE when they overlap;
- NO VERDICT when either side has one answer per question: one greedy answer cannot tell a change from
  noise, and the comparison says so instead of inventing a verdict.
Non-overlap of two 95% intervals is a conservative test (it misses some real changes); it was chosen
because a person can check it by eye in the table. Beside it, the overall verdict reports a paired test
(`molting.evaluate.statistics.paired_bootstrap`): the per-question differences of the two runs' means over
the questions both answered, with a 95% bootstrap interval of their mean and a p-value. A small gain on
every question is a real change the overlap rule misses; the paired test finds it. Its verdict follows the
same words (the interval of the difference above 0, below 0, or around it, and NO VERDICT with one answer per
question); `--fail-on-regression` reads the overlap verdict alone.
"""

import io
from pathlib import Path
from typing import Any, TypedDict

from molting.errors import UserError
from molting.evaluate.rubric import DIMENSIONS
from molting.evaluate.statistics import PAIRED_RESAMPLES, PairedDifference, paired_bootstrap
from molting.io import write_bytes_atomic
from molting.report.run_record import RunRecord, load_run

IMPROVEMENT = "IMPROVEMENT"
REGRESSION = "REGRESSION"
NO_CHANGE = "NO SIGNIFICANT CHANGE"


class FactRow(TypedDict):
    metric: str
    values: list[Any]  # one per run
    differs: bool


class RunScore(TypedDict):
    mean: float
    ci95: list[float] | None
    samples: int
    human: int  # answers to the question that a person scored


class QuestionComparison(TypedDict):
    id: str
    scores: list[RunScore | None]  # one per run; None where the run has no answer to the question
    verdicts: list[str]  # one per run after the baseline


class PairedVerdict(PairedDifference):
    verdict: str  # from the interval of the mean difference: IMPROVEMENT, REGRESSION, NO SIGNIFICANT CHANGE


class Verdict(TypedDict):
    run: str
    against: str
    verdict: str  # the interval-overlap rule
    average_delta: float | None  # None when either run has no scored answer
    questions_regressed: list[str]
    questions_improved: list[str]
    paired: PairedVerdict | None  # None with fewer than two questions scored in both runs


class AverageScore(TypedDict):
    mean: float
    ci95: list[float] | None


class RubricComparison(TypedDict):
    average: list[AverageScore]
    dimensions: list[dict[str, float]]


class CompareResult(TypedDict):
    """`compare_runs`' result: `molt compare --json` writes it as it is."""

    runs: list[str]
    paths: list[str]
    eval_id: str
    facts: list[dict[str, Any]]  # run_facts of each run
    rows: list[FactRow]
    rubric: RubricComparison
    questions: list[QuestionComparison]
    overall: list[Verdict]
    notes: list[str]
    regression: bool


def no_verdict(samples: int) -> str:
    return f"NO VERDICT ({samples} sample{'s' if samples != 1 else ''})"


def verdict(
    base_ci: tuple[float, float] | None, other_ci: tuple[float, float] | None, base_n: int, other_n: int
) -> str:
    """`base_n`/`other_n`: answers per question. With one, an interval that exists at all (a bootstrap over
    questions) measures how questions differ, not how the next answer would: no verdict from it."""
    if base_ci is None or other_ci is None or min(base_n, other_n) <= 1:
        return no_verdict(min(base_n, other_n))
    if other_ci[0] > base_ci[1]:
        return IMPROVEMENT
    if other_ci[1] < base_ci[0]:
        return REGRESSION
    return NO_CHANGE


def paired_verdict(base: list[dict | None], other: list[dict | None]) -> PairedVerdict | None:
    """The paired test of two runs' question scores (RunScore per question, None where a run has no answer),
    over the questions both answered."""
    pairs = [(b, o) for b, o in zip(base, other, strict=True) if b is not None and o is not None]
    test = paired_bootstrap([b["mean"] for b, _ in pairs], [o["mean"] for _, o in pairs])
    if test is None:
        return None
    samples = min(min(b["samples"], o["samples"]) for b, o in pairs)
    low, high = test["ci95"]
    if samples <= 1:
        word = no_verdict(samples)
    else:
        word = IMPROVEMENT if low > 0 else REGRESSION if high < 0 else NO_CHANGE
    return {**test, "verdict": word}


def fmt_value(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{round(value, digits):g}"
    return str(value)


def run_facts(run: RunRecord) -> dict:
    """What the comparison table lists for one run, as plain values (None where the run does not have it)."""
    c = run.config
    lora, train = c.get("lora", {}), c.get("train", {})
    m = run.manifest or {}
    t = m.get("train", {})
    pf = run.preflight or {}
    ib = pf.get("inference_budget", {})
    mem = m.get("memory", {})
    held_out = t.get("eval_loss") or {}
    lora_text = None
    if lora:
        lora_text = f"r={lora.get('r')} α={lora.get('alpha')} dropout={t.get('lora_dropout', lora.get('dropout'))}"
        lora_text += f" targets={lora.get('target_modules')}"
        if lora.get("modules_to_save"):
            lora_text += f" + full: {', '.join(lora['modules_to_save'])}"
        if rows := (t.get("trainable_tokens") or {}).get("train_tokens"):
            lora_text += f" + token rows: {', '.join(rows)}"
    return {
        "base_model": c.get("base_model"),
        "max_length": train.get("max_length"),
        "train_system_prompt_tokens": ib.get("train_system_prompt_tokens"),
        "inference_system_prompt_tokens": ib.get("inference_system_prompt_tokens"),
        "inference_prompt_tokens": ib.get("inference_prompt_tokens"),
        "answer_budget": ib.get("answer_budget"),
        "dataset_size": t.get("examples", pf.get("dataset", {}).get("conversations")),
        "corrective_examples": pf.get("dataset", {}).get("tags", {}).get("corrective", 0 if pf else None),
        "lora": lora_text,
        "learning_rate": train.get("learning_rate"),
        "epochs": train.get("epochs"),
        "optimizer_steps": t.get("optimizer_steps"),
        "loss_by_epoch": [e["end_loss"] for e in t.get("loss_by_epoch", [])],
        "eval_loss_by_epoch": [e.get("end_eval_loss") for e in t.get("loss_by_epoch", [])],
        "final_loss": t.get("final_loss"),
        "eval_data": Path(c["eval_data"]).name if c.get("eval_data") else None,
        "final_eval_loss": held_out.get("final"),
        "best_eval_loss": held_out.get("best"),
        "best_eval_epoch": held_out.get("best_epoch"),
        "peak_memory_mb": mem.get("peak_cuda_allocated_mb", mem.get("peak_rss_mb")),
        "train_seconds": (m.get("timings") or {}).get("train_seconds"),
        "eval_id": run.eval_id,
        "samples_per_question": run.samples_per_question,
        "human_scored_answers": run.human_scored,
        "probes_pass_rate": (run.scores or {}).get("probes_pass_rate"),
    }


FACT_ROWS = (
    ("Base model", "base_model"),
    ("max_length", "max_length"),
    ("System prompt (train), tokens", "train_system_prompt_tokens"),
    ("System prompt (inference), tokens", "inference_system_prompt_tokens"),
    ("Inference prompt with longest question, tokens", "inference_prompt_tokens"),
    ("Left for the answer, tokens", "answer_budget"),
    ("Dataset size (conversations)", "dataset_size"),
    ("Corrective examples", "corrective_examples"),
    ("LoRA", "lora"),
    ("Learning rate", "learning_rate"),
    ("Epochs", "epochs"),
    ("Optimizer steps", "optimizer_steps"),
)
TAIL_ROWS = (
    ("Final loss", "final_loss"),
    ("Held-out set (eval_data)", "eval_data"),
    ("Final held-out loss", "final_eval_loss"),
    ("Lowest held-out loss", "best_eval_loss"),
    ("Epoch of the lowest held-out loss", "best_eval_epoch"),
    ("Peak memory, MB", "peak_memory_mb"),
    ("Training time, s", "train_seconds"),
    ("Evaluation", "eval_id"),
    ("Answers per question", "samples_per_question"),
    ("Answers scored by a person", "human_scored_answers"),
    ("Probes passed (share)", "probes_pass_rate"),
)


def _score_text(mean: float | None, ci: tuple[float, float] | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def compare_runs(run_dirs: list[str | Path], eval_id: str = "final") -> CompareResult:
    if len(run_dirs) < 2:
        raise UserError("molt compare needs at least two runs: molt compare RUN_A RUN_B [RUN_C ...].")
    runs = [load_run(d, eval_id) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):  # runs/a/x and runs/b/x: name them by their path instead
        names = [str(r.path) for r in runs]
    facts = [run_facts(r) for r in runs]

    rows = []
    for label, key in FACT_ROWS:
        values = [f[key] for f in facts]
        if any(v is not None for v in values):  # a row none of the runs has (probes, say) is left out
            rows.append({"metric": label, "values": values, "differs": len({repr(v) for v in values}) > 1})
    epochs = max(len(f["loss_by_epoch"]) for f in facts)
    for e in range(epochs):
        values = [f["loss_by_epoch"][e] if e < len(f["loss_by_epoch"]) else None for f in facts]
        rows.append({"metric": f"Loss at end of epoch {e + 1}", "values": values, "differs": len(set(values)) > 1})
    held_out = [f["eval_loss_by_epoch"] for f in facts]
    for e in range(epochs if any(v is not None for losses in held_out for v in losses) else 0):
        values = [losses[e] if e < len(losses) else None for losses in held_out]
        rows.append(
            {"metric": f"Held-out loss at end of epoch {e + 1}", "values": values, "differs": len(set(values)) > 1}
        )
    for label, key in TAIL_ROWS:
        values = [f[key] for f in facts]
        if any(v is not None for v in values):
            rows.append({"metric": label, "values": values, "differs": len({repr(v) for v in values}) > 1})

    base = runs[0]
    question_ids = [q.id for q in base.questions]
    for r in runs[1:]:
        question_ids += [q.id for q in r.questions if q.id not in question_ids]
    by_run = [{q.id: q for q in r.questions} for r in runs]
    questions = []
    for qid in question_ids:
        scores = [
            {"mean": q.mean, "ci95": list(q.ci95) if q.ci95 else None, "samples": q.samples, "human": q.human_scored}
            if (q := b.get(qid))
            else None
            for b in by_run
        ]
        verdicts = []
        for s in scores[1:]:
            if scores[0] is None or s is None:
                verdicts.append("NOT IN BOTH RUNS")
            else:
                verdicts.append(
                    verdict(
                        tuple(scores[0]["ci95"]) if scores[0]["ci95"] else None,
                        tuple(s["ci95"]) if s["ci95"] else None,
                        scores[0]["samples"],
                        s["samples"],
                    )
                )
        questions.append({"id": qid, "scores": scores, "verdicts": verdicts})

    overall = []
    for r in runs[1:]:
        v = verdict(base.average_ci95, r.average_ci95, base.samples_per_question, r.samples_per_question)
        regressed = [q["id"] for q in questions if q["verdicts"][runs.index(r) - 1] == REGRESSION]
        improved = [q["id"] for q in questions if q["verdicts"][runs.index(r) - 1] == IMPROVEMENT]
        overall.append(
            {
                "run": names[runs.index(r)],
                "against": names[0],
                "verdict": v,
                "average_delta": None if None in (r.average, base.average) else round(r.average - base.average, 4),
                "questions_regressed": regressed,
                "questions_improved": improved,
                "paired": paired_verdict(
                    [q["scores"][0] for q in questions], [q["scores"][runs.index(r)] for q in questions]
                ),
            }
        )
    notes = []
    single = [n for n, r in zip(names, runs, strict=True) if r.samples_per_question <= 1]
    if single:
        notes.append(
            f"{', '.join(single)}: one answer per question. One sample per question cannot support a verdict: "
            "a difference of a point or two is within the noise of a single greedy answer. Evaluate with "
            "several samples per question to get confidence intervals."
        )
    return {
        "runs": names,
        "paths": [str(r.path) for r in runs],
        "eval_id": eval_id,
        "facts": facts,
        "rows": rows,
        "rubric": {
            "average": [{"mean": r.average, "ci95": list(r.average_ci95) if r.average_ci95 else None} for r in runs],
            "dimensions": [r.dimensions for r in runs],
        },
        "questions": questions,
        "overall": overall,
        "notes": notes,
        "regression": any(o["verdict"] == REGRESSION for o in overall),
    }


def _delta(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{b - a:+.2f}"


def rubric_rows(result: CompareResult) -> list[list[str]]:
    """The rubric table: average, each dimension, each question; values, Δ against the baseline and the
    verdict for each later run."""
    n = len(result["runs"])
    rows = []
    avg = result["rubric"]["average"]
    row = ["Rubric average /10", *(_score_text(a["mean"], a["ci95"]) for a in avg)]
    for i in range(1, n):
        row += [_delta(avg[0]["mean"], avg[i]["mean"]), result["overall"][i - 1]["verdict"]]
    rows.append(row)
    dims = result["rubric"]["dimensions"]
    for d in DIMENSIONS:
        row = [f"{d} /2", *(f"{x[d]:.2f}" if d in x else "–" for x in dims)]
        for i in range(1, n):
            row += [_delta(dims[0].get(d), dims[i].get(d)), ""]
        rows.append(row)
    for q in result["questions"]:
        s = q["scores"]
        row = [f"{q['id']} /10", *(_score_text(x["mean"], x["ci95"]) if x else "–" for x in s)]
        for i in range(1, n):
            row += [_delta(s[0]["mean"] if s[0] else None, s[i]["mean"] if s[i] else None), q["verdicts"][i - 1]]
        rows.append(row)
    return rows


def rubric_header(result: CompareResult) -> list[str]:
    runs = result["runs"]
    header = ["Rubric", *runs]
    for r in runs[1:]:
        header += [f"Δ {r}", f"Verdict {r} vs {runs[0]}"]
    return header


def fact_rows(result: CompareResult) -> list[list[str]]:
    """Metric rows with a ≠ in the last column where the runs differ."""
    return [
        [row["metric"], *(fmt_value(v) for v in row["values"]), "≠" if row["differs"] else ""] for row in result["rows"]
    ]


def verdict_lines(result: CompareResult) -> list[str]:
    lines = []
    for o in result["overall"]:
        delta = "no scored answers" if o["average_delta"] is None else f"average {o['average_delta']:+.2f}"
        line = f"VERDICT {o['run']} vs {o['against']}: {o['verdict']} ({delta})"
        if o["questions_regressed"]:
            line += f"; regressed: {', '.join(o['questions_regressed'])}"
        if o["questions_improved"]:
            line += f"; improved: {', '.join(o['questions_improved'])}"
        if paired := o.get("paired"):
            p_text = f"p < {1 / PAIRED_RESAMPLES:g}" if paired["p_value"] == 0 else f"p = {paired['p_value']:.3g}"
            line += (
                f". Paired test over {paired['questions']} questions: {paired['verdict']} (mean difference "
                f"{paired['mean_delta']:+.2f}, 95% CI [{paired['ci95'][0]:+.2f}, {paired['ci95'][1]:+.2f}], {p_text})"
            )
        lines.append(line)
    return lines


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(result: CompareResult) -> str:
    out = [f"## Comparison: {' → '.join(result['runs'])} (eval `{result['eval_id']}`)", ""]
    out += [_md_table(["Metric", *result["runs"], "differs"], fact_rows(result)), ""]
    out += [_md_table(rubric_header(result), rubric_rows(result)), ""]
    out += [f"**{line}**" for line in verdict_lines(result)]
    out += [""] + [f"> {n}" for n in result["notes"]]
    return "\n".join(out).rstrip() + "\n"


def loss_curves_png(curves: dict[str, list[dict]], title: str) -> bytes:
    """One PNG with the training loss of every run against epoch, and its held-out loss (eval_data) dashed in
    the same colour where it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    for name, rows in curves.items():
        train = [r for r in rows if "loss" in r]
        held_out = [r for r in rows if "eval_loss" in r]
        if train:
            (line,) = ax.plot(
                [r["epoch"] for r in train], [r["loss"] for r in train], marker=".", linewidth=1.2, label=name
            )
            if held_out:
                ax.plot(
                    [r["epoch"] for r in held_out],
                    [r["eval_loss"] for r in held_out],
                    marker="o",
                    linestyle="--",
                    linewidth=1.2,
                    color=line.get_color(),
                    label=f"{name} held-out",
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or any("eval_loss" in r for rows in curves.values() for r in rows):
        ax.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def plot_loss_curves(run_dirs: list[str | Path], out: str | Path) -> Path:
    runs = [load_run(d, require_scores=False) for d in run_dirs]
    curves = {r.name: r.log for r in runs}
    if not any(curves.values()):
        raise UserError("none of the runs has a train_log.jsonl: nothing to plot.")
    write_bytes_atomic(out, loss_curves_png(curves, "training loss"))
    return Path(out)
