"""Every table molting prints to a terminal (rich), in one place: the commands pass their typed results here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from molting.cli.options import console
from molting.evaluate.rubric import DIMENSIONS
from molting.report.compare import IMPROVEMENT, REGRESSION, fact_rows, rubric_header, rubric_rows, verdict_lines

if TYPE_CHECKING:  # the commands import these stages when they run them, so `molt --help` stays quick
    from molting.data.chat_import import ImportSummary
    from molting.data.curate import CurateSummary
    from molting.evaluate.rubric import Scores
    from molting.models.doctor import DoctorReport
    from molting.report.compare import CompareResult
    from molting.train.preflight import PreflightReport


def print_preflight(report: PreflightReport) -> None:
    tb, ib, st, tp = report["token_budget"], report["inference_budget"], report["steps"], report["template"]
    table = Table(title=f"molt check — {report['base_model']}", show_header=False)
    table.add_row("conversations", str(report["dataset"]["conversations"]))
    table.add_row(
        "tokens per example",
        f"max {tb['max_tokens']}, mean {tb['mean_tokens']}, p95 {tb['p95_tokens']} (max_length {tb['max_length']})",
    )
    table.add_row(
        "truncated examples", f"{tb['truncated_examples']} ({tb['assistant_tokens_lost']} assistant tokens lost)"
    )
    table.add_row(
        "system prompt tokens",
        f"train {ib['train_system_prompt_tokens']}, inference {ib['inference_system_prompt_tokens']}",
    )
    table.add_row("answer budget", f"{ib['answer_budget']} tokens after a {ib['inference_prompt_tokens']}-token prompt")
    table.add_row(
        "end of turn",
        f"{tp['eos_token']!r}: {tp['turns_checked'] - tp['turns_not_ending_in_eos']}/"
        f"{tp['turns_checked']} assistant turns end with it",
    )
    table.add_row("turn-token rows", token_rows_text(report.get("trainable_tokens")))
    table.add_row("optimizer steps", f"{st['total_steps']} ({st['steps_per_epoch']} per epoch × {st['epochs']} epochs)")
    pref = report.get("preference")
    if pref:
        table.add_row("preference pairs", preference_pairs_text(pref))
    held_out = report.get("eval_data")
    if held_out:
        hb = held_out["token_budget"]
        table.add_row(
            "held-out set (eval_data)",
            f"{held_out['conversations']} conversations, max {hb['max_tokens']} tokens, loss every "
            f"{held_out['eval_steps']} steps ({held_out['evaluations']} times)",
        )
    mem = report.get("memory")
    if mem:
        table.add_row(
            "peak memory (predicted)",
            f"{mem['peak_gb']:.2f} GB (loading {mem['loading_peak_gb']:.2f}, training {mem['training_peak_gb']:.2f}) "
            f"of {mem['budget_gb']:.1f} GB ({mem['budget_from']})",
        )
    console.print(table)
    styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
    for f in report["findings"]:
        console.print(f"[{styles[f['level']]}]{f['level']}[/]: {f['message']}", highlight=False)
    console.print("[green]preflight passed[/]" if report["ok"] else "[bold red]preflight failed[/]")


def preference_pairs_text(pref: dict) -> str:
    """How many pairs a person wrote (the dashboard) and how many molting generated (card, eval)."""
    unmarked = pref["pairs"] - pref["from_people"] - pref["generated"]
    sources = ", ".join(f"{s} {n}" for s, n in sorted(pref["sources"].items()))
    return (
        f"{pref['pairs']}: {pref['from_people']} from people, {pref['generated']} generated"
        + (f", {unmarked} with no known source" if unmarked else "")
        + f" ({sources})"
    )


def token_rows_text(plan: dict | None) -> str:
    """The preflight's finding on the chat template's token rows, and what `lora.trainable_tokens` trains."""
    if not plan:
        return "–"
    if plan.get("embeddings_in_full"):
        return "every row trains (the embedding is in lora.modules_to_save)"
    trained = ", ".join(plan["train_tokens"])
    if plan["checked"] is None:
        checked = "not checked here (the weights are not on this machine; molt train checks the loaded model)"
    else:
        untrained = [c["token"] for c in plan["checked"] if c["untrained"]]
        checked = (
            f"{', '.join(untrained)} look never trained in this base"
            if untrained
            else f"all {len(plan['checked'])} look trained"
        )
    if plan["setting"] == "none":
        return f"{checked}; none trained (lora.trainable_tokens: none)"
    return f"{checked}; trained beside LoRA: {trained}" if trained else checked


def ci_text(ci: list[float] | None) -> str:
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "–"


def print_scores(scores: Scores, title: str) -> None:
    """Per question: the mean of its answers per dimension and in total, with the 95% interval; then the
    probes apart."""
    if scores["average"] is None:
        console.print(f"{title}: no answer was scored, so there is no average.", highlight=False)
        return
    table = Table(title=title)
    for column in ("Question", "Answers", *DIMENSIONS, "Mean", "95% CI"):
        table.add_column(column, justify="left" if column == "Question" else "right")
    for q in scores["per_question"]:
        table.add_row(
            q["id"],
            str(q["samples"]),
            *(f"{q['dims'][d]:g}" for d in DIMENSIONS),
            f"{q['mean']:g}/10",
            ci_text(q["ci95"]),
        )
    table.add_row(
        "Average",
        str(scores["answers"]),
        *(f"{scores['dimensions'][d]:.2f}" for d in DIMENSIONS),
        f"{scores['average']:.2f}/10",
        ci_text(scores.get("average_ci95")),
        style="bold",
    )
    console.print(table)
    if scores.get("per_probe"):
        probes = Table(title="Probes (not in the average)")
        for column in ("Probe", "Answers", "Passed", "Mean", "95% CI"):
            probes.add_column(column, justify="left" if column == "Probe" else "right")
        for p in scores["per_probe"]:
            probes.add_row(p["id"], str(p["samples"]), f"{p['pass_rate']:.0%}", f"{p['mean']:g}/10", ci_text(p["ci95"]))
        probes.add_row(
            "All probes",
            "",
            f"{scores['probes_pass_rate']:.0%}",
            f"{scores['probes_average']:.2f}/10",
            ci_text(scores.get("probes_average_ci95")),
            style="bold",
        )
        console.print(probes)


def print_verify(report: dict) -> None:
    names = list(report["models"])
    table = Table(title=f"molt export --verify ({report['decoding']})")
    table.add_column("Question")
    for name in names:
        table.add_column(name, justify="right")
    for q in report["questions"]:
        cells = []
        for name in names:
            a = q["answers"][name]
            if name == "adapter":
                cells.append(f"{a['score']}/10, {len(a['tokens'])} tok")
            elif a["identical"]:
                cells.append(f"{a['score']}/10, identical")
            else:
                cells.append(f"{a['score']}/10, differs at {a['first_difference']}")
        table.add_row(q["id"], *cells)
    table.add_row("Average", *(f"{report['models'][n]['average_score']:.2f}" for n in names), style="bold")
    console.print(table)
    for c in report["checks"]:
        mark = "[green]ok[/]" if c["ok"] else "[bold red]FAILED[/]" if c.get("gating", True) else "[yellow]note[/]"
        console.print(f"{mark} {c['check']}: {c['detail']}", highlight=False)
    failed = {c.get("of", "export") for c in report["checks"] if c.get("gating", True) and not c["ok"]}
    if not failed:
        console.print("[green]export verified[/]")
    elif failed == {"answers"}:
        console.print(
            "[bold red]export verification failed[/]: the export's own checks hold, but its answers fail "
            "the checks above. Where the adapter's own answers do too, the model needs more "
            "training (more steps or data), not another export.",
            highlight=False,
        )
    else:
        console.print("[bold red]export verification failed[/]: the export does not match the trained model.")


def print_summary(title: str, rows: list[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False)
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)


def print_doctor(report: DoctorReport) -> None:
    table = Table(title="molt doctor", show_header=False)
    for name, version in report["versions"].items():
        table.add_row(name, version or "not installed")
    cuda = report["cuda"]
    table.add_row(
        "CUDA",
        f"{cuda['device']}, {cuda['free_gb']} of {cuda['total_gb']} GB free" if cuda["available"] else "not available",
    )
    table.add_row("CPU bf16", "yes" if report["cpu_bf16"] else "no")
    console.print(table)
    styles = {"error": "bold red", "warning": "yellow", "info": "dim", "ok": "green"}
    for f in report["findings"]:
        console.print(f"[{styles[f['level']]}]{f['level']}[/] {f['check']}: {f['message']}", highlight=False)
        if f["fix"]:
            console.print(f"    fix: {f['fix']}", highlight=False)


def print_logprob_report(report: dict, run: str) -> None:
    table = Table(title=f"{run} — {report['eval_id']} ({report['model']}): log p(right) - log p(wrong)")
    for column in ("Claim", "Probes", "Mean margin", "Per token", "Margin > 0"):
        table.add_column(column, justify="left" if column == "Claim" else "right")
    rows = [(cid, c) for cid, c in report["claims"].items()]
    rows += [("all", report["summary"]), ("held out", report["summary"]["held_out"])]
    for name, c in rows:
        if c["probes"]:
            table.add_row(
                name,
                str(c["probes"]),
                f"{c['mean_margin']:+.2f}",
                f"{c['mean_margin_per_token']:+.2f}",
                f"{c['positive_fraction']:.0%}",
            )
    console.print(table)


def print_agreement(figures: dict, title: str) -> None:
    table = Table(title=title)
    for column in ("Dim", "Scored by both", "Exact", "Within one", "Cohen's kappa", "Quadratic-weighted kappa"):
        table.add_column(column, justify="right")
    for dim, f in figures.items():
        if not f["n"]:
            table.add_row(dim, "0", "–", "–", "–", "–")
            continue
        kappas = [f"{f[k]:.3f}" if f[k] is not None else "n/a" for k in ("kappa", "kappa_quadratic")]
        table.add_row(dim, str(f["n"]), f"{f['exact']:.0%}", f"{f['within_one']:.0%}", *kappas)
    console.print(table)


def print_import_summary(summary: ImportSummary, source: str) -> None:
    rows = [
        ("format", summary["format"]),
        ("records read", summary["records"]),
        ("conversations kept", summary["conversations_kept"]),
        (
            "examples written",
            f"{summary['examples_written']} (budget {summary['budget']['limit']} {summary['budget']['unit']})",
        ),
        ("conversations split", summary["conversations_split"]),
    ]
    rows += [(f"skipped: {k}", v) for k, v in summary["skipped"].items()]
    rows += [(f"turns left out: {k}", v) for k, v in summary["turns_skipped"].items()]
    rows += [(f"parts left out: {k}", v) for k, v in summary["parts_skipped"].items()]
    rows += [(f"answers tagged: {k}", v) for k, v in summary["flagged"].items()]
    print_summary(f"molt data import — {source}", rows)
    for position in summary["malformed"]:
        console.print(f"[yellow]skipped malformed[/] {position}", highlight=False)


def print_curate_summary(summary: CurateSummary, data_file: str) -> None:
    balance, lengths = summary["balance"], summary["lengths"]
    rows = [
        ("conversations", summary["conversations"]),
        ("exact duplicates removed", summary["exact_duplicates"]),
        ("near duplicates removed", summary["near_duplicates"]),
        ("train / held out", f"{summary['train']} / {summary['held_out']}"),
        ("facts taught (examples)", ", ".join(f"{k} {v}" for k, v in balance["facts"].items())),
        ("facts no example teaches", ", ".join(balance["untaught_facts"]) or "none"),
        ("traits shown (examples)", ", ".join(f"{k} {v}" for k, v in balance["traits"].items())),
    ]
    rows += [
        (
            f"area {name}",
            f"{a['examples']} examples"
            + (f"; untaught: {', '.join(a['untaught_facts'])}" if a["untaught_facts"] else ""),
        )
        for name, a in balance["areas"].items()
    ]
    rows.append(
        (
            f"length ({lengths['unit']})",
            f"max {lengths['max']}, mean {lengths['mean']}"
            + (f", budget {lengths['budget']}" if lengths["budget"] else "")
            + "; "
            + ", ".join(f"{b['range']}: {b['count']}" for b in lengths["bins"]),
        )
    )
    rows.append(("suite questions leaking", len(summary["leaks"])))
    print_summary(f"molt data curate — {data_file}", rows)
    for leak in summary["leaks"]:
        style = "yellow" if summary["leaks_dropped"] else "bold red"
        console.print(
            f"[{style}]leak[/] {leak['id']} ({leak['kind']}) {leak['match']}: line {leak['line']} "
            f"{leak['user_turn']!r}",
            highlight=False,
        )
    for r in summary["removed"]:
        console.print(f"[dim]removed line {r['line']}: {r['reason']}[/]", highlight=False)
    console.print(f"wrote {summary['outputs']['train']}, held_out.jsonl, removed.jsonl, curate.json")


def print_distil_summary(summary: dict, model: str) -> None:
    print_summary(
        f"molt data distil — {model}",
        [
            ("questions", summary["questions"]),
            ("from an earlier run", summary["resumed"]),
            ("kept", summary["kept"]),
            ("rejected by the rubric", len(summary["rejected"])),
            ("failed (no answer)", len(summary["failed"])),
        ],
    )
    for r in summary["rejected"]:
        console.print(f"[yellow]rejected[/] {r['id']}: {'; '.join(r['rejected'])}", highlight=False)
    for f in summary["failed"]:
        console.print(f"[red]failed[/] {f['id']}: {f['reason']}", highlight=False)


def compare_tables(result: CompareResult) -> list[Table]:
    facts = Table(title=f"molt compare — eval {result['eval_id']}")
    facts.add_column("Metric")
    for r in result["runs"]:
        facts.add_column(r, overflow="fold")
    facts.add_column("≠")
    for row in fact_rows(result):
        facts.add_row(*row, style="bold yellow" if row[-1] else None)
    rubric = Table(title="Rubric v1 (mean [95% CI] where several samples)")
    for i, h in enumerate(rubric_header(result)):
        rubric.add_column(h, justify="left" if i == 0 else "right")
    styles = {REGRESSION: "bold red", IMPROVEMENT: "bold green"}
    for row in rubric_rows(result):
        rubric.add_row(*row, style=next((s for v, s in styles.items() if v in row), None))
    return [facts, rubric]


def print_compare(result: CompareResult) -> None:
    for table in compare_tables(result):
        console.print(table)
    styles = {REGRESSION: "bold red", IMPROVEMENT: "bold green"}
    for line, o in zip(verdict_lines(result), result["overall"], strict=True):
        console.print(line, style=styles.get(o["verdict"], "bold"), highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
