"""`molt score`: score the answers of any model, read from JSONL lines `{"id": "Q1", "response": "..."}`
(optional `answer_id`), with rubric v2 and optionally the LLM judge.

Every bad line is reported as file:line; ids must be questions of the suite. An optional
`finish_reason` ("stop" or "length") lets the scorer tell a truncated answer for certain.
"""

from pathlib import Path

from molting.card.persona import load_persona
from molting.card.probe_questions import generate_probes
from molting.card.suite import Suite, load_suite
from molting.config import JudgeSettings
from molting.errors import UserError
from molting.evaluate.fluency import fluency_for_rows
from molting.evaluate.judge import apply_judge
from molting.evaluate.rubric import Scores, answer_ids, refresh_question_summary, score_responses
from molting.io import read_jsonl, write_json_atomic


def load_responses(path: str | Path, suite: Suite, probes: dict | None = None) -> list[dict]:
    """Rows to score; ids must be suite questions or, when given, probe ids (molting.card.probe_questions)."""
    probes = probes or {}
    path = Path(path)
    parsed, problems = read_jsonl(path)
    rows, seen_answer_ids = [], set()
    for n, obj in parsed:
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            problems.append(f'{where}: expected an object like {{"id": "Q1", "response": "..."}}.')
            continue
        if obj.get("id") not in suite.by_id and obj.get("id") not in probes:
            problems.append(
                f"{where}: id: {obj.get('id')!r} is not a question of the suite (known: {', '.join(suite.by_id)})."
            )
        if "answer_id" in obj:
            if not isinstance(obj["answer_id"], str):
                problems.append(f"{where}: answer_id: expected text like Q1#0.")
            elif obj["answer_id"] in seen_answer_ids:
                problems.append(f"{where}: answer_id: {obj['answer_id']!r} appears twice; answer ids must be unique.")
            else:
                seen_answer_ids.add(obj["answer_id"])
        if not isinstance(obj.get("response"), str):
            problems.append(f"{where}: response: expected text, got {type(obj.get('response')).__name__}.")
        if obj.get("finish_reason") not in (None, "stop", "length"):
            problems.append(f'{where}: finish_reason: expected "stop" or "length".')
        rows.append(obj)
    if problems:
        raise UserError(problems)
    if not rows:
        raise UserError(f"{path}: no answers in the file.")
    return rows


def score_file(
    persona_path: str | Path,
    suite_path: str | Path,
    responses_path: str | Path,
    out: str | Path,
    judge_url: str | None = None,
    judge_model: str | None = None,
    judge_timeout: float | None = None,
    judge_concurrency: int | None = None,
    fluency_model: str | None = None,
    fluency_calibration: str | Path | None = None,
    show_progress: bool = True,
) -> Scores:
    """Score every answer in `responses_path` against the card and the suite, write the scores to `out`
    (scores.json's shape) and return them. With a judge, its verdicts are cached beside `out`, so scoring
    the same file again costs no judge calls; `judge_timeout` and `judge_concurrency` override the judge's
    defaults (60 s, 4 calls at once), for a small server that answers one call at a time. `fluency_model`:
    the reference model that reads every answer for word salad (molting.evaluate.fluency); None skips it."""
    card = load_persona(persona_path)
    questions = load_suite(suite_path, card)
    probes = {p.id: p for p in generate_probes(card)}
    rows = load_responses(responses_path, questions, probes)
    check = None
    if fluency_model:
        by_id = {**questions.by_id, **probes}
        check = fluency_for_rows(
            rows,
            answer_ids(rows),
            [by_id[r["id"]].question for r in rows],
            card.identity.summary,
            card.language,
            fluency_model,
            fluency_calibration,
            show_progress=show_progress,
        )
    scores = score_responses(card, questions.by_id, rows, probes, fluency=check, fluency_skipped="--no-fluency")
    if judge_url or judge_model:
        try:
            limits = {"timeout": judge_timeout, "concurrency": judge_concurrency}
            judge = JudgeSettings(
                url=judge_url, model=judge_model, **{k: v for k, v in limits.items() if v is not None}
            )
        except ValueError as e:
            raise UserError(f"--judge-url/--judge-model/--judge-timeout/--judge-concurrency: {e}") from None
        if not judge.enabled:
            raise UserError("--judge-model needs --judge-url (the judge's endpoint).")
        # the judge scores the suite's answers; probes keep rubric v2 and their own checks
        suite_rows = [r for r in rows if r["id"] in questions.by_id]
        apply_judge(scores, suite_rows, card, questions.by_id, judge, Path(out).parent / "judge_cache")
        refresh_question_summary(scores)
    write_json_atomic(out, scores)
    return scores
