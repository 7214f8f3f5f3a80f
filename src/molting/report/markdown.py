"""The run report (`molt report RUN`): report.md and loss.png: config, training, scores per question and
the evidence for every point lost, as a person reviewing a run reads them.

Reached through `write_report(run_dir)`. Reads the run directory through molting.report.run_record
(config.yaml, preflight.json, manifest.json, train_log.jsonl, eval/*/scores.json and responses.jsonl, with
human scores applied), so it can be re-made at any time.
Sections: config table, prompt token counts, loss curve and loss by epoch, the rubric table per question
(mean of its answers, with a 95% interval when there are several; the trained model beside the untrained
base when both were evaluated), the probes apart, how often each detector fired, every point lost with its
evidence, peak memory and duration.
"""

import io
import math
from pathlib import Path

from molting.errors import UserError
from molting.evaluate.judge import response_format_note
from molting.evaluate.rubric import DIMENSION_NAMES, DIMENSIONS
from molting.io import write_bytes_atomic, write_text_atomic
from molting.paths import RunPaths
from molting.report.compare import fmt_value, verdict
from molting.report.run_record import RunFiles, read_run

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


def _md_text(text: str) -> str:
    """Model output shown as text: on one line, and no HTML (a `</s>` must show, not vanish as a tag)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def plot_loss(rows: list[dict], out: Path, title: str) -> None:
    """The training loss against epoch, and the held-out loss (eval_data) beside it when the run has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    train = [r for r in rows if "loss" in r]
    held_out = [r for r in rows if "eval_loss" in r]
    ax.plot([r["epoch"] for r in train], [r["loss"] for r in train], marker=".", linewidth=1.2, label="training")
    if held_out:
        ax.plot(
            [r["epoch"] for r in held_out],
            [r["eval_loss"] for r in held_out],
            marker="o",
            linewidth=1.2,
            label="held-out (eval_data)",
        )
        ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(out, buffer.getvalue())


def _held_out_sentence(held_out: dict, config: dict) -> str:
    """The held-out loss in words: where it ended, and where it was lowest when that was earlier."""
    text = (
        f"Held-out loss (the assistant tokens of `{Path(config['eval_data']).name}`, not trained on; "
        f"{held_out['evaluations']} evaluations): first {held_out['first']}, final {held_out['final']}, "
        f"lowest {held_out['best']} at step {held_out['best_step']} (epoch {held_out['best_epoch']:g})."
    )
    if held_out["final"] > held_out["best"]:
        text += (
            f" It rose by {held_out['final'] - held_out['best']:.4g} after its lowest point: the later steps fit the "
            "training data at the held-out data's expense, the sign of overfitting. Consider fewer epochs (the "
            f"lowest came in epoch {max(1, math.ceil(held_out['best_epoch'] - 1e-9))})."
        )
    return text


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ci(ci: list[float] | None) -> str:
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "–"


def _verdict(base_ci: list[float] | None, other_ci: list[float] | None, base_n: int, other_n: int) -> str:
    return verdict(tuple(base_ci) if base_ci else None, tuple(other_ci) if other_ci else None, base_n, other_n)


VERDICT_RULE = (
    "as `molt compare` decides it: the trained adapter's 95% interval wholly above the base's is an IMPROVEMENT, "
    "wholly below a REGRESSION, overlapping NO SIGNIFICANT CHANGE; one answer per question gives NO VERDICT"
)


def trained_vs_base(final: dict | None, base: dict | None) -> dict | None:
    """The trained adapter's scores against the untrained base's, per question and overall, with the
    compare verdict of each; None unless both evaluations exist and have an average. For report.md and
    the HTML run page."""
    if not final or not base or final.get("average") is None or base.get("average") is None:
        return None
    base_by_id = {q["id"]: q for q in _per_question(base)}
    questions = []
    for q in _per_question(final):
        bq = base_by_id.get(q["id"])
        questions.append(
            {
                "id": q["id"],
                "base_mean": bq["mean"] if bq else None,
                "base_ci95": bq.get("ci95") if bq else None,
                "mean": q["mean"],
                "ci95": q.get("ci95"),
                "delta": round(q["mean"] - bq["mean"], 3) if bq else None,
                "verdict": _verdict(bq.get("ci95"), q.get("ci95"), bq["samples"], q["samples"]) if bq else "–",
            }
        )
    return {
        "questions": questions,
        "base_average": base["average"],
        "base_ci95": base.get("average_ci95"),
        "average": final["average"],
        "ci95": final.get("average_ci95"),
        "delta": round(final["average"] - base["average"], 3),
        "verdict": _verdict(
            base.get("average_ci95"),
            final.get("average_ci95"),
            min((q["samples"] for q in _per_question(base)), default=1),
            min((q["samples"] for q in _per_question(final)), default=1),
        ),
    }


def _per_question(scores: dict) -> list[dict]:
    """Per-question summaries; a scores.json from before samples existed has one answer per question."""
    if "per_question" in scores:
        return scores["per_question"]
    return [
        {"id": q["id"], "samples": 1, "mean": q["total"], "ci95": None, "dims": q["dims"]} for q in scores["questions"]
    ]


def _human_section(scores: dict) -> list[str]:
    human = scores.get("human")
    if not human or not human.get("answers"):
        return []
    rows = []
    for dim, f in human["agreement"].items():
        if f["n"]:
            kappas = [f.get(k) for k in ("kappa", "kappa_quadratic")]  # scores.json files of older runs lack the second
            shown = [f"{k:.2f}" if k is not None else "n/a" for k in kappas]
            rows.append([dim, f["n"], f"{f['exact']:.0%}", f"{f['within_one']:.0%}", *shown])
    return [
        f"Human scores (manual_scores.json) replace the automatic ones for {human['dims']} scores on "
        f"{human['answers']} answers; the tables above show them (ʰ marks a human score). "
        "Agreement of the automatic scores with the human:",
        "",
        _table(["Dim", "Scored by both", "Exact", "Within one", "Cohen's κ", "Quadratic-weighted κ"], rows),
        "",
    ]


def _judge_section(scores: dict) -> list[str]:
    lines = []
    judge = scores.get("judge")
    if judge:
        before = scores.get("rubric_only", {}).get("average")
        lines += [
            f"LLM judge `{judge['model']}` ({judge['rubric']}) on {', '.join(judge['dims'])}: {judge['calls']} calls, "
            f"{judge['unscored']} left unscored"
            + (f"; {_md_text(note)}" if (note := response_format_note(judge)) else "")
            + f". Scores above are combined: {judge['combined']}"
            + (f" (rubric v2 alone: {before:.2f}/10)." if before is not None else "."),
            "",
        ]
    for missing in scores.get("no_answer", []):
        lines += [f"No answer from the server for {missing['id']}: {_md_text(missing['reason'])}", ""]
    return lines


def _fluency_lines(fluency: dict | None) -> list[str]:
    """The fluency pass in a sentence: the reference model, the mean figures and the threshold, or why it was
    skipped (molting.evaluate.fluency)."""
    if not fluency:
        return []
    if "skipped" in fluency:
        return [f"Fluency: not read by a reference model ({fluency['skipped']}); invented words still count.", ""]
    # scores.json written before the order score (signal v2) has the mean order ratio instead
    order = (
        f"mean order score {fluency['mean_order_score']}"
        if "mean_order_score" in fluency
        else f"mean order ratio {fluency.get('mean_order_ratio')}"
    )
    return [
        f"Fluency read by {fluency['model']}: mean NLL {fluency['mean_nll']} per token, {order} "
        f"(word salad at ≥ {fluency['thresholds']['salad']}; thresholds calibrated on {fluency['calibrated_on']}).",
        "",
    ]


def _rubric_table(scores: dict, questions: dict[str, str]) -> str:
    """One row per question: the mean of its answers per dimension and in total, with the 95% interval
    when the question was answered more than once."""
    if scores.get("average") is None:  # every answer missing: no score, which is not 0/10
        missing = len(scores.get("no_answer", []))
        return (
            f"**No answer was scored** ({missing} question(s) without an answer): this evaluation has no average "
            "and no score per dimension."
        )
    per_question = _per_question(scores)
    with_ci = any(q["ci95"] for q in per_question) or scores.get("average_ci95")
    rows = []
    human = {}  # question id -> dimensions a person scored on some answer of it (marked ʰ)
    for a in scores["questions"]:
        human.setdefault(a["id"], set()).update(d for d, src in a.get("dims_source", {}).items() if src == "human")
    for q in per_question:
        row = [
            _md_text(f"{q['id']} {questions.get(q['id'], '')}".strip()),
            *(f"{q['dims'][d]:g}" + ("ʰ" if d in human.get(q["id"], ()) else "") for d in DIMENSIONS),
            f"**{q['mean']:g}/10**",
        ]
        rows.append(row + ([q["samples"], _ci(q["ci95"])] if with_ci else []))
    average = [
        "**Average**",
        *(f"**{scores['dimensions'][d]:.2f}**" for d in DIMENSIONS),
        f"**{scores['average']:.2f}/10**",
    ]
    rows.append(average + ([scores["answers"], f"**{_ci(scores.get('average_ci95'))}**"] if with_ci else []))
    return _table(["Question", *DIMENSIONS, "Total", *(["Answers", "95% CI"] if with_ci else [])], rows)


def _probe_table(scores: dict, probe_questions: dict[str, str]) -> str:
    rows = [
        [
            _md_text(f"{p['id']} {probe_questions.get(p['id'], '')}".strip()),
            p["kind"],
            p["samples"],
            f"{p['pass_rate']:.0%}",
            f"{p['mean']:g}/10",
            _ci(p["ci95"]),
        ]
        for p in scores["per_probe"]
    ]
    rows.append(
        [
            "**All probes**",
            "",
            "",
            f"**{scores['probes_pass_rate']:.0%}**",
            f"**{scores['probes_average']:.2f}/10**",
            _ci(scores.get("probes_average_ci95")),
        ]
    )
    return _table(["Probe", "Kind", "Answers", "Passed", "Mean", "95% CI"], rows)


def _sampling_note(evals: dict[str, dict]) -> str:
    counts = {s.get("samples", 1) for s in evals.values()}
    if counts == {1}:
        return (
            "Scored by deterministic detectors on one answer per question (and paraphrase): a difference of a "
            "point or two between runs is within noise. `molt eval --samples N --temperature T` gives each "
            "question a 95% confidence interval."
        )
    return (
        "Scored by deterministic detectors. Each question's mean is over all its answers (samples and "
        "paraphrases), with a 95% percentile bootstrap interval; the average's interval resamples questions and, "
        "within each, its answers (2000 resamples, fixed seed). Intervals that overlap do not show a difference."
    )


def build_report(run: RunFiles) -> str:
    run_dir, config_text, manifest, preflight = run.path, run.config_text, run.manifest, run.preflight
    evals = {eval_id: e.scores for eval_id, e in run.evals.items()}
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
                        )
                        + (
                            f" + token rows: {', '.join(f'`{x}`' for x in rows)}"
                            if (rows := (t.get("trainable_tokens") or {}).get("train_tokens"))
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
    full_log = run.log
    log = [r for r in full_log if r.get("stage", "sft") == "sft"]  # a DPO stage has its own section
    if manifest and log:
        plot_loss(log, RunPaths(run_dir).loss_png, f"{run_dir.name}: {manifest['config']['base_model']}")
        by_epoch = manifest["train"]["loss_by_epoch"]
        held_out = manifest["train"].get("eval_loss")
        header = ["Epoch", "Mean loss", "Loss at end"] + (["Held-out loss at end"] if held_out else [])
        rows = [
            [e["epoch"], e["mean_loss"], e["end_loss"]] + ([fmt_value(e.get("end_eval_loss"))] if held_out else [])
            for e in by_epoch
        ]
        first_loss = next(r["loss"] for r in log if "loss" in r)
        out += [
            "## Loss",
            "",
            "![loss](loss.png)",
            "",
            _table(header, rows),
            "",
            f"First logged loss {first_loss}, final {manifest['train']['final_loss']}, "
            f"mean over training {manifest['train']['train_loss_mean']}.",
            "",
        ]
        if held_out:
            out += [_held_out_sentence(held_out, manifest["config"]), ""]
    preference = (manifest or {}).get("preference")
    if preference:
        orpo = preference["method"] == "orpo"
        rows = [r for r in full_log if r.get("stage") == ("orpo" if orpo else "dpo")]
        keys = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]
        keys += ["nll_loss", "log_odds_ratio"] if orpo else []
        out += [
            f"## Preference stage ({preference['method']}, {preference['trainer']})",
            "",
            f"{preference['pairs']} pairs, {preference['optimizer_steps']} optimizer steps in "
            f"{preference['seconds']} s, "
            + (
                f"lambda (preference.beta) {preference['beta']}, with {preference['conversations']} conversations "
                "as pairs whose rejected answer is the chosen one (NLL term only). The rewards are over all "
                "of them."
                if orpo
                else f"beta {preference['beta']}, rpo_alpha {preference['rpo_alpha']} "
                f"(loss {' + '.join(preference['loss_type'])})."
            ),
            "",
            _table(["Step", *keys], [[r["step"], *(r.get(k, "") for k in keys)] for r in rows]),
            "",
        ]

    questions = {}
    if config_text:
        try:
            from molting.card.persona import load_persona
            from molting.card.suite import load_suite
            from molting.config import load_resolved_config

            cfg = load_resolved_config(run_dir)
            suite = load_suite(cfg.suite, load_persona(cfg.persona))
            questions = {q.id: q.question for q in suite.questions}
        except UserError:
            questions = {}
    if evals:
        out += [
            "## Rubric v2",
            "",
            "Dimensions: "
            + "; ".join(f"{d} {n}" for d, n in DIMENSION_NAMES.items())
            + ". 0–2 each, /10 per question.",
            _sampling_note(evals),
            "",
        ]
        versus = trained_vs_base(evals.get("final"), evals.get("base"))
        if versus:
            rows = [
                [
                    _md_text(r["id"]),
                    f"{r['base_mean']:g} {_ci(r['base_ci95'])}" if r["base_mean"] is not None else "–",
                    f"{r['mean']:g} {_ci(r['ci95'])}",
                    f"{r['delta']:+g}" if r["delta"] is not None else "–",
                    r["verdict"],
                ]
                for r in versus["questions"]
            ]
            rows.append(
                [
                    "**Average**",
                    f"{versus['base_average']:.2f} {_ci(versus['base_ci95'])}",
                    f"{versus['average']:.2f} {_ci(versus['ci95'])}",
                    f"**{versus['delta']:+.2f}**",
                    f"**{versus['verdict']}**",
                ]
            )
            out += [
                "### Trained vs untrained base",
                "",
                f"Verdict: **{versus['verdict']}** ({VERDICT_RULE}).",
                "",
                _table(["Question", "Untrained base", "Trained", "Δ", "Verdict"], rows),
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
            out += _fluency_lines(scores.get("fluency"))
            out += ["Detectors fired (answers): " + ", ".join(f"{k} {fired.get(k, 0)}/{n}" for k in listed), ""]
            if scores.get("per_probe"):
                probe_questions = {
                    r["id"]: r["prompt"] for r in run.evals[eval_id].responses if r.get("kind") == "probe"
                }
                out += [
                    "Probes generated from the persona card (identity, relationships, knowledge boundary, language, "
                    "out of scope), kept out of the average. An answer passes when none of the detectors that make "
                    "it wrong for that probe fired:",
                    "",
                    _probe_table(scores, probe_questions),
                    "",
                ]
            out += ["<details><summary>Every answer, and every point lost with its evidence</summary>", ""]
            # scores.json has no entry for a question a server left unanswered (--backend openai)
            answers = [a for a in run.evals[eval_id].responses if a.get("response") is not None]
            by_answer_id = {r.get("answer_id", r["id"]): r for r in answers}
            answer_count: dict[str, int] = {}  # one answer to a question is labelled by the question's id alone
            for q in scores["questions"] + scores.get("probes", []):
                answer_count[q["id"]] = answer_count.get(q["id"], 0) + 1
            for i, q in enumerate(scores["questions"] + scores.get("probes", [])):
                # scores.json files from before answer ids existed list answers in file order
                answer = by_answer_id.get(q.get("answer_id")) or (answers[i] if i < len(answers) else None)
                label = q.get("answer_id", q["id"]) if answer_count[q["id"]] > 1 else q["id"]
                if answer:
                    text = _md_text(answer["response"])
                    out.append(f"- **{label}** ({q['total']}/10): {text[:400]}{'…' if len(text) > 400 else ''}")
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
    run = read_run(run_dir)
    path = RunPaths(run.path).report_md
    write_text_atomic(path, build_report(run))
    return path
