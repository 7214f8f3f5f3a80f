"""The run report (`molt report RUN`): report.md and loss.png, in the shape of the lab logs.

Reached through `write_report(run_dir)`. Reads only files in the run directory (config.yaml,
preflight.json, manifest.json, train_log.jsonl, eval/*/scores.json), so it can be re-made at any time.
Sections: config table, prompt token counts, loss curve and loss by epoch, the rubric table per question
(the trained model beside the untrained base when both were evaluated), how often each detector fired,
every point lost with its evidence, peak memory and duration.
"""

import io
import json
from pathlib import Path

from molting.atomic_write import write_bytes_atomic, write_text_atomic
from molting.errors import UserError
from molting.rubric import DIMENSION_NAMES, DIMENSIONS

# Detectors listed in every report, fired or not, so "0/8 template token leakage" is visible.
ALWAYS_LISTED = (
    "template_tokens",
    "task_planning",
    "prompt_leak",
    "tool_call_text",
    "wrong_language",
    "technology_not_on_card",
    "repetition_loop",
    "truncated",
    "forbidden_claim",
    "no_answer",
)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_train_log(run_dir: Path) -> list[dict]:
    path = run_dir / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _md_text(text: str) -> str:
    """Model output shown as text: on one line, and no HTML (a `</s>` must show, not vanish as a tag)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def _responses(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker=".", linewidth=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(out, buffer.getvalue())


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _evals(run_dir: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((run_dir / "eval").glob("*/scores.json")):
        found[path.parent.name] = _with_human_scores(_read_json(path), path.parent)
    # the trained model first, then the base, then any others
    order = sorted(found, key=lambda k: (k != "final", k != "base", k))
    return {k: found[k] for k in order}


def _with_human_scores(scores: dict, eval_dir: Path) -> dict:
    """Human scores (manual_scores.json) override the automatic ones everywhere the report shows scores;
    their agreement with the automatic scores is kept for the report to print."""
    from molting.manual_scores import effective_scores, human_agreement, load_manual_scores

    manual = load_manual_scores(eval_dir / "manual_scores.json")
    if not manual["answers"]:
        return scores
    out = effective_scores(scores, manual)
    out["human"]["agreement"] = human_agreement(scores, manual)
    return out


def _human_section(scores: dict) -> list[str]:
    human = scores.get("human")
    if not human or not human.get("answers"):
        return []
    rows = []
    for dim, f in human["agreement"].items():
        if f["n"]:
            kappa = f"{f['kappa']:.2f}" if f["kappa"] is not None else "n/a"
            rows.append([dim, f["n"], f"{f['exact']:.0%}", f"{f['within_one']:.0%}", kappa])
    return [
        f"Human scores (manual_scores.json) replace the automatic ones for {human['dims']} scores on "
        f"{human['answers']} answers; the tables above show them (ʰ marks a human score). "
        "Agreement of the automatic scores with the human:",
        "",
        _table(["Dim", "Scored by both", "Exact", "Within one", "Cohen's κ"], rows),
        "",
    ]


def _judge_section(scores: dict) -> list[str]:
    lines = []
    judge = scores.get("judge")
    if judge:
        before = scores.get("rubric_only", {}).get("average")
        lines += [
            f"LLM judge `{judge['model']}` ({judge['rubric']}) on {', '.join(judge['dims'])}: {judge['calls']} calls, "
            f"{judge['unscored']} left unscored. Scores above are combined: {judge['combined']}"
            + (f" (rubric v1 alone: {before:.2f}/10)." if before is not None else "."),
            "",
        ]
    for missing in scores.get("no_answer", []):
        lines += [f"No answer from the server for {missing['id']}: {_md_text(missing['reason'])}", ""]
    return lines


def _rubric_table(scores: dict, questions: dict[str, str]) -> str:
    rows = []
    for q in scores["questions"]:
        rows.append(
            [
                f"{q['id']} {questions.get(q['id'], '')}".strip(),
                *(
                    f"{q['dims'][d]}ʰ" if q.get("dims_source", {}).get(d) == "human" else q["dims"][d]
                    for d in DIMENSIONS
                ),
                f"**{q['total']}/10**",
            ]
        )
    rows.append(
        ["**Average**", *(f"**{scores['dimensions'][d]:.2f}**" for d in DIMENSIONS), f"**{scores['average']:.2f}/10**"]
    )
    return _table(["Question", *DIMENSIONS, "Total"], rows)


def build_report(run_dir: Path) -> str:
    config_text = (run_dir / "config.yaml").read_text(encoding="utf-8") if (run_dir / "config.yaml").is_file() else ""
    manifest = _read_json(run_dir / "manifest.json")
    preflight = _read_json(run_dir / "preflight.json")
    evals = _evals(run_dir)
    if not manifest and not evals:
        raise UserError(
            f"{run_dir}: nothing to report (no manifest.json and no eval/). Run molt train / molt eval first."
        )
    out = [f"# molting report — {run_dir.name}", ""]

    if manifest:
        c = manifest["config"]
        t = manifest["train"]
        lora, train = c["lora"], c["train"]
        corrective = (preflight or {}).get("dataset", {}).get("tags", {}).get("corrective", 0)
        out += [
            "## Config",
            "",
            _table(
                ["Setting", "Value"],
                [
                    ["Base model", f"`{c['base_model']}`"],
                    [
                        "LoRA",
                        f"r={lora['r']} α={lora['alpha']} dropout={t['lora_dropout']} targets={lora['target_modules']}"
                        + (
                            f" + trained in full: {', '.join(lora['modules_to_save'])}"
                            if lora.get("modules_to_save")
                            else ""
                        ),
                    ],
                    ["max_length", train["max_length"]],
                    ["Epochs", train["epochs"]],
                    [
                        "Learning rate",
                        f"{train['learning_rate']:g} ({train['lr_scheduler']}, {train['warmup_steps']} warm-up steps)",
                    ],
                    ["Batch × grad_accum", f"{train['batch_size']} × {train['grad_accum']}"],
                    ["Optimizer steps", t["optimizer_steps"]],
                    ["Dataset", f"{t['examples']} conversations ({corrective} tagged corrective)"],
                    [
                        "Device / dtype",
                        f"{t['device']} / {t['dtype']} weights, mixed precision: {t.get('mixed_precision', 'no')}",
                    ],
                    ["Trainable parameters", f"{t['trainable_parameters']:,} of {t['total_parameters']:,}"],
                ],
            ),
            "",
        ]
        if c["base_model"].startswith("builtin:"):
            out += [
                f"`{c['base_model']}` is built locally: a small Llama trained briefly on the example conversations "
                'with every name swapped, so it can converse but does not know the persona (README, "Builtin '
                'bases"). A base that small memorises rather than generalises, which is why the settings above '
                "(learning rate, rank, epochs, embeddings trained in full) are higher than a real model needs.",
                "",
            ]
    if preflight:
        ib = preflight["inference_budget"]
        tb = preflight["token_budget"]
        out += [
            "## Prompt tokens",
            "",
            _table(
                ["", "Tokens"],
                [
                    ["System prompt (train)", ib["train_system_prompt_tokens"]],
                    ["System prompt (inference)", ib["inference_system_prompt_tokens"]],
                    [
                        f"Inference prompt with the longest question ({ib['longest_question']})",
                        ib["inference_prompt_tokens"],
                    ],
                    [f"Left for the answer within max_length {tb['max_length']}", ib["answer_budget"]],
                    ["Longest training example", tb["max_tokens"]],
                    ["Assistant tokens lost to truncation", tb["assistant_tokens_lost"]],
                ],
            ),
            "",
        ]
    log = read_train_log(run_dir)
    if manifest and log:
        plot_loss(log, run_dir / "loss.png", f"{run_dir.name}: {manifest['config']['base_model']}")
        by_epoch = manifest["train"]["loss_by_epoch"]
        out += [
            "## Loss",
            "",
            "![loss](loss.png)",
            "",
            _table(
                ["Epoch", "Mean loss", "Loss at end"], [[e["epoch"], e["mean_loss"], e["end_loss"]] for e in by_epoch]
            ),
            "",
            f"First logged loss {log[0]['loss']}, final {manifest['train']['final_loss']}, "
            f"mean over training {manifest['train']['train_loss_mean']}.",
            "",
        ]

    questions = {}
    if config_text:
        try:
            from molting.config import load_resolved_config
            from molting.persona import load_persona
            from molting.suite import load_suite

            cfg = load_resolved_config(run_dir)
            suite = load_suite(cfg.suite, load_persona(cfg.persona))
            questions = {q.id: q.question for q in suite.questions}
        except UserError:
            questions = {}
    if evals:
        out += [
            "## Rubric v1",
            "",
            "Dimensions: "
            + "; ".join(f"{d} {n}" for d, n in DIMENSION_NAMES.items())
            + ". 0–2 each, /10 per question.",
            "Scored by deterministic detectors on one greedy answer per question: a difference of a point "
            "or two between runs is within noise.",
            "",
        ]
        if "final" in evals and "base" in evals:
            f, b = evals["final"], evals["base"]
            base_totals = {q["id"]: q["total"] for q in b["questions"]}
            rows = [
                [q["id"], base_totals.get(q["id"], "–"), q["total"], f"{q['total'] - base_totals.get(q['id'], 0):+d}"]
                for q in f["questions"]
            ]
            rows.append(
                ["**Average**", f"{b['average']:.2f}", f"{f['average']:.2f}", f"**{f['average'] - b['average']:+.2f}**"]
            )
            out += [
                "### Trained vs untrained base",
                "",
                _table(["Question", "Untrained base", "Trained", "Δ"], rows),
                "",
            ]
        for eval_id, scores in evals.items():
            out += [f"### {eval_id} ({scores.get('model', '')})", "", _rubric_table(scores, questions), ""]
            out += _human_section(scores) + _judge_section(scores)
            n = scores["answers"]
            fired = scores["detectors_fired"]
            listed = list(ALWAYS_LISTED) + sorted(k for k in fired if k not in ALWAYS_LISTED)
            sim = scores.get("similarity")
            if sim:
                out += [
                    f"Embedding similarity ({sim['model']}, a soft signal, not scored): to the reference answers "
                    f"{sim['reference_mean']}, to the centroid of the persona's training answers "
                    f"{sim['persona_centroid_mean']}.",
                    "",
                ]
            out += ["Detectors fired (answers): " + ", ".join(f"{k} {fired.get(k, 0)}/{n}" for k in listed), ""]
            out += ["<details><summary>Every answer, and every point lost with its evidence</summary>", ""]
            # scores.json has no entry for a question a server left unanswered (--backend openai)
            answers = [
                a for a in _responses(run_dir / "eval" / eval_id / "responses.jsonl") if a.get("response") is not None
            ]
            for i, q in enumerate(scores["questions"]):
                if i < len(answers):
                    text = _md_text(answers[i]["response"])
                    out.append(f"- **{q['id']}** ({q['total']}/10): {text[:400]}{'…' if len(text) > 400 else ''}")
                for e in q["evidence"]:
                    detail = _md_text(e["detail"])
                    out.append(f"  - {e['dim']}≤{e['cap']} `{e['detector']}`: {detail}")
                for dim, verdict in q.get("judge", {}).items():
                    said = verdict["score"] if "score" in verdict else "unscored"
                    out.append(f"  - judge {dim}={said}: {_md_text(verdict.get('reason') or verdict.get('unscored'))}")
            out += ["", "</details>", ""]

    if manifest:
        mem = manifest["memory"]
        out += [
            "## Machine",
            "",
            _table(
                ["", ""],
                [
                    [
                        "Peak memory",
                        f"{mem.get('peak_cuda_allocated_mb', mem['peak_rss_mb'])} MB "
                        + ("(CUDA max allocated)" if "peak_cuda_allocated_mb" in mem else "(peak RSS)"),
                    ],
                    ["Training time", f"{manifest['timings']['train_seconds']} s"],
                    [
                        "Machine",
                        f"{manifest['machine']['processor']}, {manifest['machine']['cpus']} CPUs, "
                        f"{manifest['machine']['ram_gib']} GiB, {manifest['machine']['device']}",
                    ],
                    ["Versions", ", ".join(f"{k} {v}" for k, v in manifest["versions"].items() if v)],
                ],
            ),
            "",
        ]
    return "\n".join(out)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory.")
    path = run_dir / "report.md"
    write_text_atomic(path, build_report(run_dir))
    return path
