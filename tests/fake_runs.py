"""Run directories written for the compare, report.html and dashboard tests without training: real files
in the real formats, made by molting's own functions (the resolved config, the preflight on builtin:tiny,
`loss_by_epoch`, rubric v1 scoring of the given answers). Only the answers and the loss values are chosen
by the test, so that a test knows what the comparison must say."""

import json
from pathlib import Path

from conftest import EXAMPLE, FAST

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.config import load_run_config
from molting.evaluate.rubric import score_responses
from molting.io import write_json_atomic, write_jsonl_atomic
from molting.train.manifest import machine, versions
from molting.train.sft import loss_by_epoch, save_resolved_config

_PREFLIGHT: dict = {}


def preflight_report() -> dict:
    """The real preflight of the example on builtin:tiny, computed once per test session."""
    if not _PREFLIGHT:
        from molting.train.preflight import run_preflight

        _PREFLIGHT.update(run_preflight(load_run_config(EXAMPLE / "molt.yaml", FAST), None))
    return _PREFLIGHT


def suite_questions():
    persona = load_persona(EXAMPLE / "persona.yaml")
    return persona, load_suite(EXAMPLE / "suite.yaml", persona)


def make_run(
    root: Path,
    name: str,
    answers: dict[str, list[str]],
    losses: list[float],
    overrides: tuple[str, ...] = (),
    eval_id: str = "final",
) -> Path:
    """A run directory with `answers` (question id → one or more answers) evaluated as `eval_id` and a
    training log whose loss goes through `losses`, one logged step per quarter epoch."""
    run_dir = root / name
    config = load_run_config(EXAMPLE / "molt.yaml", FAST + list(overrides))
    save_resolved_config(config, run_dir)
    write_json_atomic(run_dir / "preflight.json", preflight_report())
    log = [
        {"step": i + 1, "epoch": round((i + 1) / 4, 4), "loss": loss, "lr": 1e-4, "elapsed_s": float(i)}
        for i, loss in enumerate(losses)
    ]
    write_jsonl_atomic(run_dir / "train_log.jsonl", log)
    manifest = {
        "run": name,
        "config": config.to_dict(),
        "train": {
            "device": "cpu",
            "dtype": "float32",
            "lora_dropout": 0.0,
            "examples": 127,
            "optimizer_steps": len(losses),
            "trainable_parameters": 1000,
            "total_parameters": 10000,
            "train_loss_mean": round(sum(losses) / len(losses), 4),
            "final_loss": losses[-1],
            "loss_by_epoch": loss_by_epoch(log),
            "seconds": 12.5,
        },
        "timings": {"started": 1795303205.0, "train_seconds": 12.5, "total_seconds": 13.0},
        "memory": {"peak_rss_mb": 900.0},
        "versions": versions(),
        "machine": machine(),
        "git_commit": None,
    }
    write_json_atomic(run_dir / "manifest.json", manifest)
    write_eval(run_dir, answers, eval_id)
    return run_dir


def write_eval(run_dir: Path, answers: dict[str, list[str]], eval_id: str = "final") -> Path:
    """eval/<id>/responses.jsonl and scores.json as `molt eval` writes them; the k-th answer to a question
    has the answer id Q1#k (the shared answer-id format)."""
    persona, suite = suite_questions()
    rows = []
    for qid, texts in answers.items():
        for i, text in enumerate(texts):
            row = {"id": qid, "answer_id": f"{qid}#{i}", "prompt": suite.by_id[qid].question, "response": text}
            rows.append({**row, "finish_reason": "stop"})
    scores = score_responses(persona, suite.by_id, rows)
    out = run_dir / "eval" / eval_id
    write_jsonl_atomic(out / "responses.jsonl", rows)
    write_json_atomic(out / "scores.json", {**scores, "eval_id": eval_id, "model": "adapter"})
    return out


def references() -> dict[str, str]:
    _, suite = suite_questions()
    return {q.id: q.reference for q in suite.questions}


BAD = "Eu sou o ChatGPT, um assistente da OpenAI. Vou começar criando um plano</s>"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
