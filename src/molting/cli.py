"""The `molt` command: one thin command per pipeline stage, each calling one library function.

User mistakes (`UserError`) print their message and exit 2; a preflight that finds errors exits 1.
"""

import json
import os
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from molting import __version__
from molting.errors import UserError

console = Console()
err_console = Console(stderr=True)

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a config field, e.g. --set train.epochs=2 (repeatable).",
)
name_option = click.option("--name", help="Run name: the run goes to RUNS_DIR/NAME. Default: the config's folder name.")
runs_dir_option = click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding run directories.",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an earlier run of the same name (its evals and report go with it)."
)
truncation_option = click.option(
    "--allow-truncation",
    is_flag=True,
    default=None,
    help="Let examples longer than max_length be cut (a warning instead of an error).",
)


def _quiet_libraries() -> None:
    """Library chatter (per-step dicts, deprecation notices) hides molting's own progress and findings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _run_dir(config_path: str, name: str | None, runs_dir: str) -> Path:
    return Path(runs_dir) / (name or Path(config_path).resolve().parent.name)


def _load_config(config_path: str, overrides: tuple[str, ...]):
    from molting.config import load_run_config

    return load_run_config(config_path, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="molting")
def cli():
    """molting: port an assistant's persona into a small open model, and measure whether it survived.

    \b
    The pipeline, one command per stage:
      molt init DIR        a new persona project to fill in
      molt check CONFIG    preflight: data, token budget, template/EOS, optimizer steps
      molt train CONFIG    LoRA training (runs the preflight first)
      molt eval RUN        answer the suite and score the answers (rubric v1)
      molt score ...       score any model's answers from a JSONL file
      molt report RUN      report.md and loss.png
      molt run CONFIG      all of the above in order
      molt export RUN      merged model, GGUF, Ollama Modelfile (--verify: same answers?)
      molt doctor          versions, CUDA, known bad combinations
    """


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
def init(directory):
    """Write a new persona project (persona.yaml, data.jsonl, suite.yaml, molt.yaml) into DIRECTORY.

    Every value to fill in holds a TODO; `molt check DIRECTORY/molt.yaml` lists those left.
    """
    from molting.init_project import init_project

    for path in init_project(directory):
        console.print(f"wrote {path}")
    console.print(f"Fill in every TODO, then: molt check {Path(directory) / 'molt.yaml'}")


def _print_preflight(report: dict) -> None:
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
    table.add_row("optimizer steps", f"{st['total_steps']} ({st['steps_per_epoch']} per epoch × {st['epochs']} epochs)")
    console.print(table)
    styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
    for f in report["findings"]:
        console.print(f"[{styles[f['level']]}]{f['level']}[/]: {f['message']}", highlight=False)
    console.print("[green]preflight passed[/]" if report["ok"] else "[bold red]preflight failed[/]")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@name_option
@runs_dir_option
@truncation_option
@click.option("--json", "as_json", is_flag=True, help="Print preflight.json instead of the summary.")
def check(config, overrides, name, runs_dir, allow_truncation, as_json):
    """Preflight CONFIG before spending a training run; writes RUNS_DIR/NAME/preflight.json.

    Validates the data (every bad line as file:line), counts tokens with the real tokenizer and chat
    template against max_length, checks that every assistant turn ends with the EOS the model stops on,
    and counts optimizer steps. Loads no model weights. Exits 1 when a check fails, 2 on bad input.
    """
    from molting.preflight import run_preflight
    from molting.train import write_preflight

    _quiet_libraries()
    report = run_preflight(_load_config(config, overrides), allow_truncation)
    run_dir = _run_dir(config, name, runs_dir)
    write_preflight(report, run_dir)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_preflight(report)
        console.print(f"wrote {run_dir / 'preflight.json'}")
    sys.exit(0 if report["ok"] else 1)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@name_option
@runs_dir_option
@truncation_option
@overwrite_option
def train(config, overrides, name, runs_dir, allow_truncation, overwrite):
    """LoRA-train the base in CONFIG on its persona data; writes adapter/, train_log.jsonl, manifest.json.

    Runs the preflight first and stops on any error. Loss is on assistant tokens only.
    """
    from molting.train import train_run

    _quiet_libraries()
    run_dir = _run_dir(config, name, runs_dir)
    manifest = train_run(
        _load_config(config, overrides), run_dir, allow_truncation=allow_truncation, overwrite=overwrite
    )
    t = manifest["train"]
    console.print(
        f"trained {t['optimizer_steps']} steps in {t['seconds']} s; final loss {t['final_loss']}; "
        f"adapter in {run_dir / 'adapter'}"
    )


def _print_scores(scores: dict, title: str) -> None:
    from molting.rubric import DIMENSIONS

    table = Table(title=title)
    table.add_column("Question")
    for d in DIMENSIONS:
        table.add_column(d, justify="right")
    table.add_column("Total", justify="right")
    for q in scores["questions"]:
        table.add_row(q["id"], *(str(q["dims"][d]) for d in DIMENSIONS), f"{q['total']}/10")
    table.add_row(
        "Average", *(f"{scores['dimensions'][d]:.2f}" for d in DIMENSIONS), f"{scores['average']:.2f}/10", style="bold"
    )
    console.print(table)


@cli.command("eval")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--base", "use_base", is_flag=True, help="Evaluate the untrained base instead of the adapter.")
@click.option("--id", "eval_id", help="Name of this evaluation (folder under RUN/eval/). Default: final, or base.")
def eval_cmd(run, use_base, eval_id):
    """Answer the suite with RUN's model and the full inference prompt, then score every answer.

    Writes RUN/eval/ID/responses.jsonl and RUN/eval/ID/scores.json.
    """
    from molting.evaluate import eval_run

    _quiet_libraries()
    if not Path(run).is_dir():
        raise UserError(f"{run}: no such run directory. Train first: molt train CONFIG --name NAME.")
    scores = eval_run(run, eval_id, use_adapter=not use_base)
    _print_scores(scores, f"{run} — {scores['eval_id']} ({scores['model']})")
    console.print(f"wrote {Path(run) / 'eval' / scores['eval_id']}/scores.json")


@cli.command()
@click.option("--persona", required=True, type=click.Path(dir_okay=False), help="Persona card (persona.yaml).")
@click.option("--suite", required=True, type=click.Path(dir_okay=False), help="Evaluation suite (suite.yaml).")
@click.option(
    "--responses",
    required=True,
    type=click.Path(dir_okay=False),
    help='JSONL, one answer a line: {"id": "Q1", "response": "..."}; ids may repeat.',
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the scores (JSON).")
def score(persona, suite, responses, out):
    """Score answers from any model with rubric v1 (deterministic detectors driven by the persona card).

    \b
    Example:
      molt score --persona examples/claudio/persona.yaml --suite examples/claudio/suite.yaml \\
                 --responses answers.jsonl --out scores.json
    """
    from molting.atomic_write import write_json_atomic
    from molting.persona import load_persona
    from molting.rubric import score_responses
    from molting.score_input import load_responses
    from molting.suite import load_suite

    card = load_persona(persona)
    questions = load_suite(suite, card)
    rows = load_responses(responses, questions)
    scores = score_responses(card, questions.by_id, rows)
    write_json_atomic(out, scores)
    _print_scores(scores, f"{responses}")
    console.print(f"wrote {out}")


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
def report(run):
    """Write RUN/report.md and RUN/loss.png from the files in the run directory."""
    from molting.report import write_report

    console.print(f"wrote {write_report(run)}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@name_option
@runs_dir_option
@truncation_option
@overwrite_option
@click.option("--no-base", is_flag=True, help="Skip evaluating the untrained base.")
def run(config, overrides, name, runs_dir, allow_truncation, overwrite, no_base):
    """Check, train, evaluate (the untrained base too) and report CONFIG, in one go.

    \b
    Example (the demo):
      molt run examples/claudio/molt.yaml --name demo
    """
    from molting.pipeline import run_pipeline

    _quiet_libraries()
    run_dir = _run_dir(config, name, runs_dir)
    result = run_pipeline(
        _load_config(config, overrides),
        run_dir,
        with_base=not no_base,
        allow_truncation=allow_truncation,
        overwrite=overwrite,
        say=console.print,
    )
    console.print(f"[bold]Report: {result['report']}[/]")


@cli.command()
@click.option("--model", help="Also check this base model (id, folder or builtin:*) for remote code.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(model, as_json):
    """Versions, CUDA and free VRAM, and known bad combinations with their fix. Runs offline.

    \b
    Checks: the transformers 5 4-bit load spike, stale remote code in the Hugging Face modules
    cache (rope_scaling["type"] vs "rope_type"), trust_remote_code where a native implementation
    exists. Exits 1 if a finding is an error.
    """
    from molting.doctor import diagnose

    _quiet_libraries()
    report = diagnose(model)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        table = Table(title="molt doctor", show_header=False)
        for name, version in report["versions"].items():
            table.add_row(name, version or "not installed")
        cuda = report["cuda"]
        table.add_row(
            "CUDA",
            f"{cuda['device']}, {cuda['free_gb']} of {cuda['total_gb']} GB free"
            if cuda["available"]
            else "not available",
        )
        table.add_row("CPU bf16", "yes" if report["cpu_bf16"] else "no")
        console.print(table)
        styles = {"error": "bold red", "warning": "yellow", "info": "dim", "ok": "green"}
        for f in report["findings"]:
            console.print(f"[{styles[f['level']]}]{f['level']}[/] {f['check']}: {f['message']}", highlight=False)
            if f["fix"]:
                console.print(f"    fix: {f['fix']}", highlight=False)
    sys.exit(1 if any(f["level"] == "error" for f in report["findings"]) else 0)


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["merged", "gguf", "ollama"]),
    help="merged: adapter merged into the base (safetensors, tokenizer, chat template). gguf: llama.cpp's "
    "converter at f16. ollama: the GGUF and a Modelfile (template, system prompt, stops, generation settings).",
)
@click.option(
    "--quant",
    type=click.Choice(["q8_0", "q4_k_m"]),
    help="Also write a quantised GGUF with llama.cpp's quantizer (gguf/ollama; the Ollama folder then uses it).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Answer the suite greedily with the adapter, the merged model and each GGUF; compare tokens and "
    "rubric scores; check end-of-turn stops. Writes RUN/export/TARGET/verify.json; exits 1 if a check fails.",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    help="Longest answer in --verify. Default: the run's generation.max_new_tokens.",
)
def export(run, target, quant, verify, max_new_tokens):
    """Export RUN for local use, under RUN/export/TARGET/.

    \b
    Examples:
      molt export runs/demo --to merged --verify
      molt export runs/demo --to gguf --quant q8_0 --verify
      molt export runs/demo --to ollama      # then: cd runs/demo/export/ollama && ollama create demo -f Modelfile
    """
    from molting.export import export_run

    _quiet_libraries()
    export_run(run, target, quant, say=lambda m: console.print(m, highlight=False))
    console.print(f"exported {target}: {Path(run) / 'export' / target}")
    if not verify:
        return
    from molting.verify_export import verify_export

    report = verify_export(run, target, max_new_tokens)
    _print_verify(report)
    console.print(f"wrote {Path(run) / 'export' / target / 'verify.json'}")
    sys.exit(0 if report["ok"] else 1)


def _print_verify(report: dict) -> None:
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
        mark = "[green]ok[/]" if c["ok"] else "[bold red]FAILED[/]"
        console.print(f"{mark} {c['check']}: {c['detail']}", highlight=False)
    console.print("[green]export verified[/]" if report["ok"] else "[bold red]export verification failed[/]")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except UserError as e:
        for problem in e.problems:
            err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; files already written are complete, nothing half-written was kept")
        sys.exit(130)
