"""A run directory read back for comparison and display: its config, preflight, training log and one
evaluation, with human scores applied and each question's score summarised with its uncertainty.

Reached through `load_run(run_dir, eval_id)`, used by `molt compare`, report.html and `molt serve`.
Reads only files (config.yaml, manifest.json, preflight.json, train_log.jsonl, eval/<id>/responses.jsonl,
scores.json, manual_scores.json), so it works on runs made on other machines.

Scores: a question's score is the mean of its answers' totals. Where scores.json carries the scorer's
own summary (`per_question` entries with `samples`, `mean` and `ci95`, or `samples`/`ci95` on a question
entry, and `average_ci95`), those are used. Otherwise, with several answers per question, the 95%
interval is computed here (Student t). One answer per question has no interval: nothing can be said
about noise from one greedy answer.
Human scores (`manual_scores.json`, keyed by answer id) replace the automatic value of each dimension a
person scored; the question's mean and interval are then computed here from the corrected answers.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from molting.errors import UserError
from molting.evaluate.manual_scores import load_manual_scores
from molting.evaluate.rubric import DIMENSIONS, answer_ids

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11)
_T95 += (2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96


def mean_ci95(values: list[float]) -> tuple[float, float] | None:
    """95% confidence interval of the mean of `values` (None for fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return (round(mean - half, 4), round(mean + half, 4))


def read_json(path: Path) -> dict | None:
    """A JSON file, or None if absent. A file that is not JSON is the user's to fix."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}). Re-run the stage that writes it.") from None


def read_jsonl_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg}).") from None
    return rows


@dataclass
class Answer:
    """One scored answer: the automatic dims, the human ones where a person scored, and the result."""

    answer_id: str
    question_id: str
    prompt: str
    response: str
    auto_dims: dict[str, int]
    human_dims: dict[str, int]
    evidence: list[dict]
    note: str = ""

    @property
    def dims(self) -> dict[str, int]:
        return {d: self.human_dims.get(d, self.auto_dims.get(d, 0)) for d in DIMENSIONS}

    @property
    def total(self) -> int:
        return sum(self.dims.values())


@dataclass
class QuestionScore:
    """A question's score in one run: mean total over its answers, how many, and the 95% interval."""

    id: str
    mean: float
    samples: int
    ci95: tuple[float, float] | None
    human_scored: int  # answers of this question with at least one human dim
    dims: dict[str, float] = field(default_factory=dict)


@dataclass
class RunRecord:
    name: str
    path: Path
    eval_id: str
    config: dict
    manifest: dict | None
    preflight: dict | None
    log: list[dict]
    scores: dict | None
    answers: list[Answer]
    questions: list[QuestionScore]
    average: float | None
    average_ci95: tuple[float, float] | None
    dimensions: dict[str, float]

    @property
    def samples_per_question(self) -> int:
        return min((q.samples for q in self.questions), default=0)

    @property
    def human_scored(self) -> int:
        return sum(1 for a in self.answers if a.human_dims)


def _answer_rows(scores: dict, responses: list[dict]) -> list[tuple[dict, dict | None]]:
    """Pair each scores.json question entry with its responses.jsonl row: by answer id when the entries
    carry one (molting.evaluate.rubric.answer_ids: the scorer's own naming), else by
    position (molt eval and molt score write them in the same order)."""
    entries = scores.get("questions", [])
    by_answer = dict(zip(answer_ids(responses), responses, strict=True))
    if entries and all("answer_id" in e for e in entries):
        return [(e, by_answer.get(e["answer_id"])) for e in entries]
    answered = [r for r in responses if r.get("response") is not None]  # unanswered rows have no score entry
    if len(entries) == len(answered):
        return list(zip(entries, answered, strict=True))
    return [(e, None) for e in entries]


def _summarise(run_answers: list[Answer], entries: list[dict], per_question: dict[str, dict]) -> list[QuestionScore]:
    """Per question: the scorer's own summary (`per_question`, or samples/ci95 on an aggregated entry) when
    no person changed an answer of it; otherwise mean and interval computed from the answers here."""
    order: list[str] = []
    grouped: dict[str, list[tuple[Answer, dict]]] = {}
    for answer, entry in zip(run_answers, entries, strict=True):
        if answer.question_id not in grouped:
            order.append(answer.question_id)
            grouped[answer.question_id] = []
        grouped[answer.question_id].append((answer, entry))
    out = []
    for qid in order:
        items = grouped[qid]
        human = sum(1 for a, _ in items if a.human_dims)
        summary = per_question.get(qid)
        if summary and not human and summary.get("samples") == len(items):
            ci = tuple(summary["ci95"]) if summary.get("ci95") else None
            dims = {d: float(summary.get("dims", {}).get(d, 0)) for d in DIMENSIONS}
            mean, samples = float(summary["mean"]), len(items)
        elif len(items) == 1 and items[0][1].get("samples", 1) > 1:
            answer, entry = items[0]
            mean = float(entry.get("mean_total", entry["total"]))
            ci = tuple(entry["ci95"]) if entry.get("ci95") and not human else None
            samples = int(entry["samples"])
            dims = {d: float(entry["dims"][d]) for d in DIMENSIONS}
            if human:  # a person rescored the aggregate: their total stands, the sampled interval does not
                mean, dims = float(answer.total), {d: float(v) for d, v in answer.dims.items()}
        else:
            totals = [a.total for a, _ in items]
            mean = sum(totals) / len(totals)
            samples = len(items)
            ci = mean_ci95(totals)
            dims = {d: sum(a.dims[d] for a, _ in items) / len(items) for d in DIMENSIONS}
        out.append(QuestionScore(qid, round(mean, 4), samples, ci, human, {d: round(v, 4) for d, v in dims.items()}))
    return out


def _average_ci(questions: list[QuestionScore]) -> tuple[float, float] | None:
    """Interval of the mean over questions, from each question's interval (independent questions)."""
    if not questions or any(q.ci95 is None for q in questions):
        return None
    k = len(questions)
    mean = sum(q.mean for q in questions) / k
    se = math.sqrt(sum(((q.ci95[1] - q.ci95[0]) / (2 * 1.96)) ** 2 for q in questions)) / k
    return (round(mean - 1.96 * se, 4), round(mean + 1.96 * se, 4))


def load_config(run_dir: Path, manifest: dict | None) -> dict:
    if manifest and "config" in manifest:
        return manifest["config"]
    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({e}).") from None
    return {}


def eval_ids(run_dir: Path) -> list[str]:
    """Evaluations of a run, the trained model first, then the base, then the others by name."""
    found = [p.parent.name for p in (Path(run_dir) / "eval").glob("*/scores.json")]
    return sorted(found, key=lambda k: (k != "final", k != "base", k))


def load_run(run_dir: str | Path, eval_id: str = "final", require_scores: bool = True) -> RunRecord:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory.")
    manifest = read_json(run_dir / "manifest.json")
    eval_dir = run_dir / "eval" / eval_id
    scores = read_json(eval_dir / "scores.json")
    if scores is None and require_scores:
        have = eval_ids(run_dir)
        hint = f" It has: {', '.join(have)} (choose with --eval)." if have else f" Evaluate it: molt eval {run_dir}."
        raise UserError(f"{eval_dir / 'scores.json'}: not found.{hint}")
    responses = read_jsonl_rows(eval_dir / "responses.jsonl")
    manual = load_manual_scores(eval_dir / "manual_scores.json")["answers"]
    answers: list[Answer] = []
    entries = (scores or {}).get("questions", [])
    for entry, row in _answer_rows(scores or {}, responses):
        answer_id = entry.get("answer_id") or (row.get("answer_id", row.get("id")) if row else entry["id"])
        human = manual.get(answer_id, {})
        answers.append(
            Answer(
                answer_id=answer_id,
                question_id=entry["id"],
                prompt=(row or {}).get("prompt", ""),
                response=(row or {}).get("response", ""),
                auto_dims={d: entry["dims"][d] for d in DIMENSIONS},
                human_dims={d: int(v) for d, v in human.get("dims", {}).items() if d in DIMENSIONS},
                evidence=entry.get("evidence", []),
                note=human.get("note", ""),
            )
        )
    per_question = {s["id"]: s for s in (scores or {}).get("per_question", []) if "id" in s}
    questions = _summarise(answers, entries, per_question)
    average = round(sum(q.mean for q in questions) / len(questions), 4) if questions else None
    dimensions = {}
    if questions:
        dimensions = {d: round(sum(q.dims[d] for q in questions) / len(questions), 4) for d in DIMENSIONS}
    any_human = any(a.human_dims for a in answers)
    if scores and scores.get("average_ci95") and not any_human:
        average_ci = tuple(scores["average_ci95"])
    else:
        average_ci = _average_ci(questions)
    return RunRecord(
        name=run_dir.name,
        path=run_dir,
        eval_id=eval_id,
        config=load_config(run_dir, manifest),
        manifest=manifest,
        preflight=read_json(run_dir / "preflight.json"),
        log=read_jsonl_rows(run_dir / "train_log.jsonl"),
        scores=scores,
        answers=answers,
        questions=questions,
        average=average,
        average_ci95=average_ci,
        dimensions=dimensions,
    )
