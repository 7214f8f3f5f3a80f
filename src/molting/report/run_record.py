"""A run directory read back for comparison and display: its config, preflight, training log and one
evaluation, with human scores applied and each question's score summarised with its uncertainty.

The one reader of a run directory (its layout is molting.paths'): `load_run(run_dir, eval_id)` for
`molt compare`, report.html and `molt serve`, and `read_run(run_dir)` for report.md, which shows every
evaluation of the run with its scores.json as written (human scores applied). Reads only files
(config.yaml, manifest.json, preflight.json, train_log.jsonl, eval/<id>/responses.jsonl, scores.json,
manual_scores.json), so it works on runs made on other machines.

Scores: a question's score is the mean of its answers' totals. Where scores.json carries the scorer's
own summary (`per_question` entries with `samples`, `mean` and `ci95`, or `samples`/`ci95` on a question
entry, and `average_ci95`), those are used. Otherwise, with several answers per question, the 95%
interval is computed here, with the bootstrap `molt eval` uses (molting.evaluate.statistics: `mean_ci` per
question, `two_level_ci` for the average), so report.md, report.html and `molt compare` show the same
interval for the same run. One answer per question has no interval: nothing can be said about noise from
one greedy answer.
Human scores (`manual_scores.json`, keyed by answer id) replace the automatic value of each dimension a
person scored; the question's mean and interval are then computed here from the corrected answers.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from molting.errors import UserError
from molting.evaluate.human_scores import effective_scores, human_agreement, load_manual_scores
from molting.evaluate.rubric import DIMENSIONS, answer_ids, refresh_question_summary
from molting.evaluate.statistics import mean_ci, two_level_ci
from molting.io import read_json, read_jsonl_rows
from molting.paths import EvalPaths, RunPaths


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
            ci = _as_tuple(mean_ci(totals))
            dims = {d: sum(a.dims[d] for a, _ in items) / len(items) for d in DIMENSIONS}
        out.append(QuestionScore(qid, round(mean, 4), samples, ci, human, {d: round(v, 4) for d, v in dims.items()}))
    return out


def _as_tuple(ci: list[float] | None) -> tuple[float, float] | None:
    return (ci[0], ci[1]) if ci else None


def _average_ci(answers: list[Answer]) -> tuple[float, float] | None:
    """The run average's interval from its answers (a person's scores where given): questions resampled,
    and each question's answers within it, as `molt eval` does."""
    totals: dict[str, list[int]] = {}
    for answer in answers:
        totals.setdefault(answer.question_id, []).append(answer.total)
    return _as_tuple(two_level_ci(list(totals.values())))


def load_config(run_dir: Path, manifest: dict | None) -> dict:
    if manifest and "config" in manifest:
        return manifest["config"]
    path = RunPaths(run_dir).config
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({e}).") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected the run's settings (a mapping), got {type(data).__name__}.")
        return data
    return {}


@dataclass
class EvalFiles:
    """One evaluation as its files hold it: scores.json with the human scores applied, and the answers."""

    eval_id: str
    scores: dict
    responses: list[dict]


@dataclass
class RunFiles:
    """A run directory's files, each read once: what report.md is made from."""

    path: Path
    config_text: str  # config.yaml as written ("" when absent)
    manifest: dict | None
    preflight: dict | None
    log: list[dict]  # train_log.jsonl
    evals: dict[str, EvalFiles]  # the trained model first, then the base, then the others by name


def with_human_scores(scores: dict, eval_dir: EvalPaths) -> dict:
    """Human scores (manual_scores.json) override the automatic ones everywhere a report shows scores; their
    agreement with the automatic scores is kept for the report to print."""
    manual = load_manual_scores(eval_dir.manual_scores)
    if not manual["answers"]:
        return scores
    out = effective_scores(scores, manual)
    if "per_question" in out:  # means and intervals of the human-corrected answers
        refresh_question_summary(out)
    else:  # an older scores.json: its interval was of the automatic scores, and no answers are there to resample
        out["average_ci95"] = None
    out["human"]["agreement"] = human_agreement(scores, manual)
    return out


def check_same_adapter(eval_dir: EvalPaths, manifest: dict | None, scores: dict | None) -> None:
    """UserError when an evaluation was answered by another adapter than the one the run holds (its
    scores.json and the manifest each record the adapter's sha256; older files without it pass)."""
    trained = ((manifest or {}).get("train") or {}).get("adapter_sha256")
    answered = (scores or {}).get("adapter_sha256")
    if trained and answered and trained != answered:
        run_dir, eval_id = eval_dir.dir.parent.parent, eval_dir.dir.name
        raise UserError(
            f"{eval_dir.scores}: answered by the adapter with sha256 {answered[:12]}…, but {run_dir}/adapter is "
            f"{trained[:12]}… (the run was trained again): these scores are not this adapter's. Evaluate it again "
            f"(molt eval {run_dir} --id {eval_id}), or delete {eval_dir.dir}."
        )


def read_run(run_dir: str | Path) -> RunFiles:
    paths = RunPaths(run_dir)
    if not paths.dir.is_dir():
        raise UserError(f"{paths.dir}: no such run directory.")
    manifest = read_json(paths.manifest)
    evals = {}
    for eval_id in eval_ids(paths.dir):
        eval_dir = paths.eval(eval_id)
        scores = read_json(eval_dir.scores)
        check_same_adapter(eval_dir, manifest, scores)
        evals[eval_id] = EvalFiles(
            eval_id, with_human_scores(scores, eval_dir), read_jsonl_rows(eval_dir.responses, required=("id",))
        )
    return RunFiles(
        path=paths.dir,
        config_text=paths.config.read_text(encoding="utf-8") if paths.config.is_file() else "",
        manifest=manifest,
        preflight=read_json(paths.preflight),
        log=read_jsonl_rows(paths.train_log),
        evals=evals,
    )


def eval_ids(run_dir: Path) -> list[str]:
    """Evaluations of a run, the trained model first, then the base, then the others by name."""
    return sorted(RunPaths(run_dir).eval_ids(), key=lambda k: (k != "final", k != "base", k))


def load_run(run_dir: str | Path, eval_id: str = "final", require_scores: bool = True) -> RunRecord:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory.")
    paths = RunPaths(run_dir)
    manifest = read_json(paths.manifest)
    eval_dir = paths.eval(eval_id)
    scores = read_json(eval_dir.scores)
    check_same_adapter(eval_dir, manifest, scores)
    if scores is None and require_scores:
        have = eval_ids(run_dir)
        hint = f" It has: {', '.join(have)} (choose with --eval)." if have else f" Evaluate it: molt eval {run_dir}."
        raise UserError(f"{eval_dir.scores}: not found.{hint}")
    responses = read_jsonl_rows(eval_dir.responses, required=("id",))
    manual = load_manual_scores(eval_dir.manual_scores)["answers"]
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
    elif per_question:  # the answers as a person corrected them, resampled as `molt eval` does
        average_ci = _average_ci(answers)
    else:  # an older scores.json (no per_question: entries aggregating their samples): nothing to resample
        average_ci = None
    return RunRecord(
        name=run_dir.name,
        path=run_dir,
        eval_id=eval_id,
        config=load_config(run_dir, manifest),
        manifest=manifest,
        preflight=read_json(paths.preflight),
        log=read_jsonl_rows(paths.train_log),
        scores=scores,
        answers=answers,
        questions=questions,
        average=average,
        average_ci95=average_ci,
        dimensions=dimensions,
    )
