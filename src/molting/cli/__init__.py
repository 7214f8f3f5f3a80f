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
      molt check CONFIG    preflight: data, token budget, template/EOS, optimizer steps, memory
      molt augment CONFIG  corrective data: positive restatements, preference pairs
      molt train CONFIG    LoRA training (runs the preflight first)
      molt eval RUN        answer the suite and score the answers (rubric v1)
      molt probe RUN       log-probability margins of right over forbidden continuations
      molt score ...       score any model's answers from a JSONL file
      molt scores ...      human scores: sheet, import, agreement
      molt report RUN      report.md, report.html and loss.png
      molt compare A B     runs side by side, with a verdict per question and overall
      molt serve [RUNS]    local dashboard: browse, compare, score answers by hand
      molt run CONFIG      all of the above in order
      molt export RUN      merged model, GGUF, Ollama Modelfile (--verify: same answers?)
      molt doctor          versions, CUDA, known bad combinations
      molt data ...        import chat exports, distil a model, curate the data
    """


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
def init(directory):
    """Write a new persona project (persona.yaml, data.jsonl, suite.yaml, molt.yaml) into DIRECTORY.

    Every value to fill in holds a TODO; `molt check DIRECTORY/molt.yaml` lists those left.
    """
    from molting.card.init_project import init_project

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
    counts optimizer steps, and predicts the peak memory of loading and training against this machine's
    GPU or RAM (or check.memory_gb), saying what would make it fit. Loads no model weights. Exits 1 when
    a check fails, 2 on bad input.
    """
    from molting.train.preflight import run_preflight
    from molting.train.sft import write_preflight

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
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its newest complete checkpoint (same config; see train.save_steps).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train with N processes (DDP) on this machine: runs this command under torchrun, one process per GPU.",
)
def train(config, overrides, name, runs_dir, allow_truncation, overwrite, resume, nproc):
    """LoRA-train the base in CONFIG on its persona data; writes adapter/, train_log.jsonl, manifest.json.

    Runs the preflight first and stops on any error. Loss is on assistant tokens only. Checkpoints every
    train.save_steps steps; after a crash, --resume continues from the newest complete one. Also runs
    under `torchrun` / `accelerate launch` (every rank trains, rank 0 writes the run files).
    """
    from molting.train.sft import process_rank, train_run

    if nproc > 1:
        from molting.train.launch import torchrun

        sys.exit(torchrun(nproc, sys.argv[1:]))
    _quiet_libraries()
    run_dir = _run_dir(config, name, runs_dir)
    manifest = train_run(
        _load_config(config, overrides),
        run_dir,
        allow_truncation=allow_truncation,
        overwrite=overwrite,
        resume=resume,
    )
    t = manifest["train"]
    rank, world_size = process_rank()
    if world_size > 1:  # every rank says what it did: the evidence that all of them trained
        click.echo(
            f"rank {rank} of {world_size}: {t['optimizer_steps']} optimizer steps, "
            f"{t['batches_per_epoch']} batches per epoch in this rank's share"
        )
    if rank != 0:
        return
    if t.get("resumed_from_step"):
        console.print(f"resumed from the checkpoint at step {t['resumed_from_step']}")
    elif resume:
        console.print("no complete checkpoint to resume from: trained from the start")
    console.print(
        f"trained {t['optimizer_steps']} steps in {t['seconds']} s; final loss {t['final_loss']}; "
        f"adapter in {run_dir / 'adapter'}"
    )


def _ci(ci: list[float] | None) -> str:
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "–"


def _print_scores(scores: dict, title: str) -> None:
    """Per question: the mean of its answers per dimension and in total, with the 95% interval; then the
    probes apart."""
    from molting.evaluate.rubric import DIMENSIONS

    table = Table(title=title)
    for column in ("Question", "Answers", *DIMENSIONS, "Mean", "95% CI"):
        table.add_column(column, justify="left" if column == "Question" else "right")
    for q in scores["per_question"]:
        table.add_row(
            q["id"], str(q["samples"]), *(f"{q['dims'][d]:g}" for d in DIMENSIONS), f"{q['mean']:g}/10", _ci(q["ci95"])
        )
    table.add_row(
        "Average",
        str(scores["answers"]),
        *(f"{scores['dimensions'][d]:.2f}" for d in DIMENSIONS),
        f"{scores['average']:.2f}/10",
        _ci(scores.get("average_ci95")),
        style="bold",
    )
    console.print(table)
    if scores.get("per_probe"):
        probes = Table(title="Probes (not in the average)")
        for column in ("Probe", "Answers", "Passed", "Mean", "95% CI"):
            probes.add_column(column, justify="left" if column == "Probe" else "right")
        for p in scores["per_probe"]:
            probes.add_row(p["id"], str(p["samples"]), f"{p['pass_rate']:.0%}", f"{p['mean']:g}/10", _ci(p["ci95"]))
        probes.add_row(
            "All probes",
            "",
            f"{scores['probes_pass_rate']:.0%}",
            f"{scores['probes_average']:.2f}/10",
            _ci(scores.get("probes_average_ci95")),
            style="bold",
        )
        console.print(probes)


@cli.command("eval")
@click.argument("run", type=click.Path())
@click.option("--base", "use_base", is_flag=True, help="Evaluate the untrained base instead of the adapter.")
@click.option(
    "--id", "eval_id", help="Name of this evaluation (folder under RUN/eval/). Default: final, base, or openai-MODEL."
)
@click.option(
    "--backend",
    type=click.Choice(["local", "openai"]),
    default="local",
    show_default=True,
    help="Where answers come from: the run's model (local), or an OpenAI-compatible server (openai).",
)
@click.option("--url", help="With --backend openai: the server's base URL, e.g. http://127.0.0.1:8080/v1.")
@click.option("--model", "model_name", help="With --backend openai: the model name as the server knows it.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="With --backend openai: environment variable holding the server's API key (unset: no key sent).",
)
@click.option("--judge-url", help="LLM judge endpoint (OpenAI-compatible); overrides judge.url of the config.")
@click.option("--judge-model", help="LLM judge model name; overrides judge.model of the config.")
@click.option("--no-judge", is_flag=True, help="Skip the LLM judge even if the config sets one.")
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    help="Answers per question, paraphrase and probe (default: the config's generation.samples, 1). "
    "More than 1 needs a temperature above 0.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    help="Sampling temperature (default: the config's generation.temperature; 0 is greedy).",
)
@click.option(
    "--probes/--no-probes",
    default=True,
    show_default=True,
    help="Also ask the probes generated from the persona card (identity, relationships, knowledge "
    "boundary, language, out of scope); scored apart from the suite's average.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="generation.FIELD=VALUE overrides a generation setting for this evaluation, e.g. --set "
    "generation.max_new_tokens=64; with a CONFIG and --backend openai, any config field (repeatable).",
)
@name_option
@runs_dir_option
def eval_cmd(
    run,
    use_base,
    eval_id,
    backend,
    url,
    model_name,
    api_key_env,
    judge_url,
    judge_model,
    no_judge,
    samples,
    temperature,
    probes,
    overrides,
    name,
    runs_dir,
):
    """Answer the suite (and the card's probes) and score every answer: rubric v1, and the LLM judge when
    one is configured; per question the mean and a 95% bootstrap interval, and the run's average with its own.

    RUN is a run directory; with --backend openai it may also be a CONFIG (molt.yaml): the run directory
    RUNS_DIR/NAME is then created from it, no training needed (--name and --runs-dir apply only then).
    Writes RUN/eval/ID/responses.jsonl and RUN/eval/ID/scores.json. Interrupted (Ctrl-C, kill -9), the
    same command continues where it stopped: finished answers are kept in RUN/eval/ID/responses.partial.jsonl.

    \b
    Examples:
      molt eval runs/demo
      molt eval runs/demo --samples 5 --temperature 0.7
      molt eval runs/demo --judge-url http://127.0.0.1:8080/v1 --judge-model qwen2.5-7b-instruct
      molt eval examples/claudio/molt.yaml --backend openai --url http://localhost:11434/v1 --model llama3.1
    """
    from molting.openai_client import Endpoint

    endpoint = None
    if backend == "openai":
        if not url or not model_name:
            raise UserError("--backend openai needs --url (the server's base URL) and --model (the model name).")
        try:
            endpoint = Endpoint(url, model_name, api_key_env or None)
        except ValueError as e:
            raise UserError(f"--url: {e}") from None
        if Path(run).is_file():
            from molting.evaluate.server_answers import run_dir_for_config

            run = run_dir_for_config(run, list(overrides), _run_dir(run, name, runs_dir))
    elif url or model_name:
        raise UserError("--url and --model choose the server for --backend openai; add --backend openai.")
    if not Path(run).is_dir():
        raise UserError(
            f"{run}: no such run directory. Train first (molt train CONFIG --name NAME), or evaluate a model on a "
            "server straight from a config: molt eval CONFIG --backend openai --url URL --model NAME."
        )
    _quiet_libraries()  # after the argument checks: a mistake is reported without loading the libraries
    from molting.evaluate.run import eval_run
    from molting.evaluate.judge import judge_for_run

    judge = judge_for_run(run, judge_url, judge_model, no_judge)
    from_config = [o for o in overrides if not o.strip().startswith("generation.")] if backend == "openai" else []
    scores = eval_run(
        run,
        eval_id,
        use_adapter=not use_base,
        samples=samples,
        temperature=temperature,
        probes=probes,
        overrides=[o for o in overrides if o not in from_config],  # the rest went into the new run's config
        say=lambda text: console.print(text, highlight=False),
        judge=judge,
        endpoint=endpoint,
    )
    _print_scores(scores, f"{run} — {scores['eval_id']} ({scores['model']})")
    for missing in scores.get("no_answer", []):
        err_console.print(f"[yellow]no answer[/] for {missing['id']}: {missing['reason']}", highlight=False)
    if scores.get("judge"):
        j = scores["judge"]
        console.print(f"judge {j['model']}: {j['calls']} calls, {j['unscored']} dimension(s) left unscored")
    console.print(f"wrote {Path(run) / 'eval' / scores['eval_id']}/scores.json")


@cli.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for corrective.jsonl and pairs.jsonl. Default: the persona card's folder.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the paraphrase draw: same card and seed, same files."
)
@click.option("--per-fact", default=8, show_default=True, help="Restatement examples drawn per fact.")
@click.option(
    "--from-eval",
    "from_eval",
    type=click.Path(file_okay=False),
    help="Also harvest pairs from this run's evaluations: its failed answers (rejected) against the suite's "
    "reference (chosen), and pairs saved by the dashboard.",
)
@click.option("--overwrite", is_flag=True, help="Replace corrective.jsonl and pairs.jsonl if they exist.")
def augment(source, out, seed, per_fact, from_eval, overwrite):
    """Corrective data from a persona card (SOURCE: persona.yaml, or a molt.yaml naming one): positive
    restatements of its facts for SFT, and preference pairs against its forbidden claims for DPO.

    \b
    Writes OUT/corrective.jsonl (SFT conversations tagged corrective, never a negated forbidden claim:
    training on "não é meu filho" teaches "meu filho") and OUT/pairs.jsonl (prompt/chosen/rejected, from
    the card's non-held-out log-prob probes, and with --from-eval from a run's failed answers).
    Example:
      molt augment examples/claudio/molt.yaml --out corrective/
      molt augment examples/claudio/molt.yaml --from-eval runs/demo --out corrective/ --overwrite
    Then set train.method: sft+dpo (or orpo) and preference_data: corrective/pairs.jsonl in molt.yaml.
    """
    from molting.data.augment import augment as run_augment
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.yaml_source import load_yaml

    doc = load_yaml(source)
    suite = None
    if isinstance(doc.data, dict) and "base_model" in doc.data:  # a run config: its persona and suite
        config = _load_config(source, ())
        persona_path, suite_path = config.persona, config.suite
    else:
        persona_path, suite_path = source, None
    persona = load_persona(persona_path)
    if from_eval:
        if suite_path is None:
            from molting.config import load_resolved_config

            suite_path = load_resolved_config(Path(from_eval)).suite
        suite = load_suite(suite_path, persona)
    result = run_augment(
        persona,
        Path(out) if out else Path(persona_path).parent,
        seed,
        per_fact,
        Path(from_eval) if from_eval else None,
        suite,
        overwrite,
    )
    for note in result["notes"]:
        console.print(note, highlight=False)
    for d in result["dropped"]:
        console.print(f"[yellow]dropped[/] {d.get('id') or d.get('answer')!r}: makes {', '.join(d['claims'])}")
    if result["claims_without_probes"]:
        console.print(
            f"[yellow]no pairs[/] for {', '.join(result['claims_without_probes'])}: add `probes` to these "
            "forbidden claims in the card."
        )
    console.print(f"wrote {result['sft']} ({result['sft_examples']} SFT examples)")
    console.print(f"wrote {result['pairs']} ({result['pair_count']} pairs: {result['pair_sources']})")


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--base", "use_base", is_flag=True, help="Probe the untrained base instead of the adapter.")
@click.option("--id", "eval_id", help="Name of this evaluation (folder under RUN/eval/). Default: final, or base.")
def probe(run, use_base, eval_id):
    """Log-probability probes: for each probe of each forbidden claim in the persona card, how much more
    likely RUN's model finds the right continuation than the forbidden one (teacher-forced, no sampling).

    \b
    Writes RUN/eval/ID/logprob.json: per probe, per claim and per run, the margin
    log p(right) - log p(wrong) in total and per token, and the fraction of probes with margin > 0.
    Example:
      molt probe runs/demo            # the trained adapter
      molt probe runs/demo --base     # the untrained base, for comparison
    """
    from molting.evaluate.logprob_probes import probe_run

    _quiet_libraries()
    if not Path(run).is_dir():
        raise UserError(f"{run}: no such run directory. Train first: molt train CONFIG --name NAME.")
    report = probe_run(run, eval_id, use_adapter=not use_base)
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
    console.print(f"wrote {Path(run) / 'eval' / report['eval_id']}/logprob.json")


@cli.command()
@click.option("--persona", required=True, type=click.Path(dir_okay=False), help="Persona card (persona.yaml).")
@click.option("--suite", required=True, type=click.Path(dir_okay=False), help="Evaluation suite (suite.yaml).")
@click.option(
    "--responses",
    required=True,
    type=click.Path(dir_okay=False),
    help='JSONL, one answer a line: {"id": "Q1", "response": "..."}; ids may repeat (samples), and may be '
    "probe ids (probe.identity_joao, …), so a molt eval responses.jsonl can be scored again.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the scores (JSON).")
@click.option(
    "--judge-url", help="Also score with an LLM judge at this OpenAI-compatible endpoint (needs --judge-model)."
)
@click.option("--judge-model", help="The judge model name as its server knows it.")
def score(persona, suite, responses, out, judge_url, judge_model):
    """Score answers from any model with rubric v1 (deterministic detectors driven by the persona card).

    \b
    Example:
      molt score --persona examples/claudio/persona.yaml --suite examples/claudio/suite.yaml \\
                 --responses answers.jsonl --out scores.json
    """
    from molting.io import write_json_atomic
    from molting.card.persona import load_persona
    from molting.card.probe_questions import generate_probes
    from molting.evaluate.rubric import score_responses
    from molting.evaluate.score_files import load_responses
    from molting.card.suite import load_suite

    card = load_persona(persona)
    questions = load_suite(suite, card)
    probes = {p.id: p for p in generate_probes(card)}
    rows = load_responses(responses, questions, probes)
    scores = score_responses(card, questions.by_id, rows, probes)
    if judge_url or judge_model:
        from molting.config import JudgeSettings
        from molting.evaluate.judge import apply_judge
        from molting.evaluate.rubric import refresh_question_summary

        try:
            judge = JudgeSettings(url=judge_url, model=judge_model)
        except ValueError as e:
            raise UserError(f"--judge-url/--judge-model: {e}") from None
        if not judge.enabled:
            raise UserError("--judge-model needs --judge-url (the judge's endpoint).")
        # verdicts cached beside the output, so scoring the same file again costs no judge calls; the judge
        # scores the suite's answers (probes keep rubric v1 and their own checks)
        suite_rows = [r for r in rows if r["id"] in questions.by_id]
        apply_judge(scores, suite_rows, card, questions.by_id, judge, Path(out).parent / "judge_cache")
        refresh_question_summary(scores)
    write_json_atomic(out, scores)
    _print_scores(scores, f"{responses}")
    console.print(f"wrote {out}")


@cli.group()
def scores():
    """Human scores: a scoring sheet for people, its import, and agreement with the automatic scores.

    \b
      molt scores sheet RUN              write RUN/eval/final/scoring_sheet.csv
      molt scores import RUN --csv FILE  validate it and merge it into manual_scores.json
      molt scores agreement RUN          exact, within-one and Cohen's kappa per dimension
    Human scores override the automatic ones in report.md.
    """


eval_id_option = click.option(
    "--id", "eval_id", default="final", show_default=True, help="Which evaluation (folder under RUN/eval/)."
)


@scores.command("sheet")
@click.argument("run", type=click.Path(file_okay=False))
@eval_id_option
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Where to write the CSV. Default: RUN/eval/ID/scoring_sheet.csv."
)
def scores_sheet(run, eval_id, out):
    """Write a CSV scoring sheet: answer_id, question, answer, D1–D5 (0, 1 or 2), note.

    Cells a person already scored (manual_scores.json) come filled in. Open it in a spreadsheet, score,
    save as CSV and import it with `molt scores import`.
    """
    from molting.evaluate.manual_scores import write_sheet

    console.print(f"wrote {write_sheet(run, eval_id, out)}")


@scores.command("import")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="The filled scoring sheet.")
@eval_id_option
def scores_import(run, csv_path, eval_id):
    """Validate a filled scoring sheet and merge it into RUN/eval/ID/manual_scores.json.

    Unknown answer ids, scores other than 0, 1 or 2 and duplicate rows are errors (file:line); nothing is
    written then. Blank cells leave earlier human scores as they are. Optional columns D1_note … D5_note
    hold a note per dimension.
    """
    from molting.evaluate.manual_scores import import_sheet

    result = import_sheet(run, csv_path, eval_id)
    console.print(f"imported {result['scores']} scores for {result['answers']} answers into {result['path']}")


@scores.command("agreement")
@click.argument("run", type=click.Path(file_okay=False))
@eval_id_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def scores_agreement(run, eval_id, as_json):
    """Agreement of the automatic scores (rubric, and the judge where it scored) with the human ones:
    exact, within-one and Cohen's kappa per dimension, over the answers both scored."""
    from molting.evaluate.manual_scores import run_agreement

    figures = run_agreement(run, eval_id)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table(title=f"{run} — {eval_id}: automatic vs human")
    for column in ("Dim", "Scored by both", "Exact", "Within one", "Cohen's kappa"):
        table.add_column(column, justify="right")
    for dim, f in figures.items():
        if not f["n"]:
            table.add_row(dim, "0", "–", "–", "–")
            continue
        kappa = f"{f['kappa']:.3f}" if f["kappa"] is not None else "n/a"
        table.add_row(dim, str(f["n"]), f"{f['exact']:.0%}", f"{f['within_one']:.0%}", kappa)
    console.print(table)


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
def report(run):
    """Write RUN/report.md, RUN/report.html (self-contained) and RUN/loss.png from the run directory."""
    from molting.report.html import write_run_html
    from molting.report.markdown import write_report

    console.print(f"wrote {write_report(run)}")
    console.print(f"wrote {write_run_html(run)}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--eval", "eval_id", default="final", show_default=True, help="Which evaluation of each run (eval/ID).")
@click.option("--md", "as_md", is_flag=True, help="Print the comparison as Markdown (for a lab log or a PR).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write a self-contained HTML report.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Also write all loss curves to one PNG.")
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when a run's overall verdict is REGRESSION (for CI).")
def compare(runs, eval_id, as_md, as_json, html_out, plot_out, fail_on_regression):
    """Compare RUN_A RUN_B [RUN_C ...]: config, tokens, data, loss per epoch, rubric, memory and time.

    The first run is the baseline. Each other run gets a verdict per question and overall: IMPROVEMENT
    or REGRESSION when the 95% confidence intervals do not overlap, NO SIGNIFICANT CHANGE when they do,
    and NO VERDICT when there is one answer per question (one sample cannot tell a change from noise).
    Human scores in eval/ID/manual_scores.json replace the automatic ones they cover.

    \b
    Example:
      molt compare runs/phase7 runs/phase8 --md --fail-on-regression
    """
    from molting.report.compare import compare_runs, plot_loss_curves, to_markdown, to_rich_tables, verdict_lines

    result = compare_runs(list(runs), eval_id)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    elif as_md:
        click.echo(to_markdown(result), nl=False)
    else:
        for table in to_rich_tables(result):
            console.print(table)
        styles = {"REGRESSION": "bold red", "IMPROVEMENT": "bold green"}
        for line, o in zip(verdict_lines(result), result["overall"], strict=True):
            console.print(line, style=styles.get(o["verdict"], "bold"), highlight=False)
        for note in result["notes"]:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
    # Files are announced on stderr so --json/--md output stays clean for pipes.
    if html_out:
        from molting.report.html import write_compare_html

        err_console.print(f"wrote {write_compare_html(list(runs), html_out, eval_id)}")
    if plot_out:
        err_console.print(f"wrote {plot_loss_curves(list(runs), plot_out)}")
    if fail_on_regression and result["regression"]:
        sys.exit(1)


@cli.command()
@click.argument("runs_dir", default="runs", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8321, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than 127.0.0.1. The dashboard has no login: anyone who reaches it can change scores.",
)
def serve(runs_dir, host, port, allow_remote):
    """Local web dashboard over RUNS_DIR (default: runs): runs, run pages, comparisons, and a page to
    score answers by hand (saved to eval/ID/manual_scores.json as you go) and to write the right answer
    for a rejected one (eval/ID/preference_pairs.jsonl).

    \b
    Example:
      molt serve runs            # then open http://127.0.0.1:8321/
    """
    from molting.report.dashboard import check_host
    from molting.report.dashboard import serve as serve_dashboard

    warning = check_host(host, allow_remote)
    if warning:
        err_console.print(f"[bold red]{warning}[/]", highlight=False)
    serve_dashboard(runs_dir, host, port, say=console.print)


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
    from molting.models.doctor import diagnose

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
    from molting.export.export import export_run

    _quiet_libraries()
    export_run(run, target, quant, say=lambda m: console.print(m, highlight=False))
    console.print(f"exported {target}: {Path(run) / 'export' / target}")
    if not verify:
        return
    from molting.export.verify import verify_export

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
        mark = "[green]ok[/]" if c["ok"] else "[bold red]FAILED[/]" if c.get("gating", True) else "[yellow]note[/]"
        console.print(f"{mark} {c['check']}: {c['detail']}", highlight=False)
    console.print("[green]export verified[/]" if report["ok"] else "[bold red]export verification failed[/]")


@cli.group()
def data():
    """Training data from where a persona lives: import chat exports, distil a model, curate the result.

    \b
      molt data import EXPORT --out data.jsonl    chat exports and JSONL datasets into data.jsonl
      molt data distil --url URL --model M ...    ask the source model, write its answers as data
      molt data curate --config molt.yaml         dedupe, split, balance, length and leakage report
    """


def _print_summary(title: str, rows: list[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False)
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)


@data.command("import")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the data (JSONL).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openai", "sharegpt", "chatgpt", "claude", "prompt_completion"]),
    help="Format of SOURCE. Default: detected from its first record.",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Keep conversations created on or after this day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Keep conversations created on or before this day.")
@click.option(
    "--language", type=click.Choice(["pt", "en", "es"]), help="Keep conversations in this language (function words)."
)
@click.option("--keyword", "keywords", multiple=True, help="Keep conversations mentioning this (repeatable: any).")
@click.option(
    "--min-answer-chars",
    default=0,
    show_default=True,
    help="Drop exchanges whose answer is shorter; the conversation is split there.",
)
@click.option(
    "--system",
    type=click.Choice(["drop", "keep", "card"]),
    default="drop",
    show_default=True,
    help="The source's system prompts: drop them (training adds the card's), keep them, or write the card's.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="molt.yaml: split to its max_length in tokens of its base's tokenizer, and its persona for --system card.",
)
@set_option
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card for --system card (without --config).")
@click.option(
    "--max-chars", default=6000, show_default=True, help="Budget per example in characters when no --config is given."
)
@click.option("--skip-malformed", is_flag=True, help="Count and skip malformed records instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_import(
    source,
    out,
    fmt,
    since,
    until,
    language,
    keywords,
    min_answer_chars,
    system,
    config,
    overrides,
    persona,
    max_chars,
    skip_malformed,
    overwrite,
    as_json,
):
    """Import the conversations in SOURCE (a chat export or a JSONL dataset) into molting's data.jsonl.

    \b
    Formats: OpenAI messages JSONL, ShareGPT, the ChatGPT export's conversations.json (the branch you
    last saw), the Claude export's conversations.json, prompt/completion JSONL.
    Every skipped conversation and turn is counted by reason; a malformed record stops the import with
    its position (file:line, or conversation index and id) unless --skip-malformed.

    \b
    Example:
      molt data import ~/Downloads/conversations.json --out my-persona/imported.jsonl \\
           --language pt --since 2026-01-01 --min-answer-chars 80 --config my-persona/molt.yaml
    """
    from molting.data.chat_import import ImportOptions, import_conversations

    tokenizer = max_length = card_prompt = None
    if config:
        from molting.models.base_model import load_tokenizer
        from molting.card.persona import load_persona

        _quiet_libraries()
        cfg = _load_config(config, overrides)
        tokenizer, max_length = load_tokenizer(cfg.base_model, cfg.chat_template), cfg.train.max_length
        card_prompt = load_persona(cfg.persona).system_prompts.train
    elif persona:
        from molting.card.persona import load_persona

        card_prompt = load_persona(persona).system_prompts.train
    options = ImportOptions(
        format=fmt,
        since=since.date() if since else None,
        until=until.date() if until else None,
        language=language,
        keywords=list(keywords),
        min_answer_chars=min_answer_chars,
        system=system,
        card_system_prompt=card_prompt,
        max_chars=max_chars,
        tokenizer=tokenizer,
        max_length=max_length,
        skip_malformed=skip_malformed,
    )
    with err_console.status(f"importing {source}"):
        summary = import_conversations(source, out, options, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
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
    _print_summary(f"molt data import — {source}", rows)
    for position in summary["malformed"]:
        console.print(f"[yellow]skipped malformed[/] {position}", highlight=False)
    console.print(f"wrote {out}")


def _card(config: str | None, persona: str | None, option_hint: str):
    from molting.card.persona import load_persona

    if config:
        return load_persona(_load_config(config, ()).persona)
    if persona:
        return load_persona(persona)
    raise UserError(f"{option_hint} needs the persona card: pass --config molt.yaml or --persona persona.yaml.")


@data.command("distil")
@click.option("--config", type=click.Path(dir_okay=False), help="molt.yaml whose persona card to use.")
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card (instead of --config).")
@click.option(
    "--questions",
    type=click.Path(dir_okay=False),
    help="Questions to ask: .txt (one a line) or .jsonl ({question, id}). Default: generated from the card.",
)
@click.option("--paraphrases", default=2, show_default=True, help="Generated phrasings per card item.")
@click.option("--seed", default=0, show_default=True, help="Picks the generated phrasings; also sent to the endpoint.")
@click.option("--list-questions", is_flag=True, help="Print the questions and exit without asking anything.")
@click.option("--url", help="OpenAI-compatible endpoint up to /v1, e.g. http://127.0.0.1:8080/v1.")
@click.option("--model", help="Model name as the endpoint knows it.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (never passed on the command line).",
)
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at once.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for one answer.")
@click.option("--retries", default=3, show_default=True, help="Retries per question, with exponential backoff.")
@click.option("--temperature", default=0.7, show_default=True, help="Sampling temperature of the source model.")
@click.option("--max-tokens", default=512, show_default=True, help="Longest answer; one cut off there is rejected.")
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the training conversations (JSONL).")
@click.option(
    "--cache", "cache_dir", type=click.Path(file_okay=False), help="Reply cache. Default: OUT's stem + .cache"
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (cached replies are still reused).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_distil(
    config,
    persona,
    questions,
    paraphrases,
    seed,
    list_questions,
    url,
    model,
    api_key_env,
    concurrency,
    timeout,
    retries,
    temperature,
    max_tokens,
    out,
    cache_dir,
    overwrite,
    as_json,
):
    """Ask the source model (any OpenAI-compatible endpoint) the persona's questions with the card's full
    inference prompt, and write its answers as training conversations (tagged "distilled").

    \b
    Answers the rubric's detectors flag (a forbidden claim, template tokens, tool-call text, the wrong
    language, another identity, cut off at --max-tokens) are kept out and listed in OUT's .report.json.
    Interrupted? Run the same command again: finished questions are kept in OUT.partial and replies in
    the cache, so nothing is asked twice. Exits 1 when some questions got no answer (re-run to retry).

    \b
    Example:
      export OPENAI_API_KEY=...   # or --api-key-env MY_VAR; a local llama.cpp server needs none
      molt data distil --config my-persona/molt.yaml --url https://api.openai.com/v1 --model gpt-4o \\
           --paraphrases 3 --out my-persona/distilled.jsonl
    """
    from molting.data.distil import distil, generate_questions, load_questions
    from molting.openai_client import Endpoint

    card = _card(config, persona, "molt data distil")
    asked = load_questions(questions) if questions else generate_questions(card, paraphrases, seed)
    if list_questions:
        for q in asked:
            click.echo(f"{q.id}\t{q.source}\t{q.question}")
        return
    missing = [name for name, value in (("--url", url), ("--model", model), ("--out", out)) if not value]
    if missing:
        raise UserError(f"molt data distil: {', '.join(missing)} required (or --list-questions to only list them).")
    try:
        endpoint = Endpoint(url, model, api_key_env=api_key_env, timeout_s=timeout, max_retries=retries)
    except ValueError as e:
        raise UserError(f"--url: {e}") from None
    from rich.progress import Progress

    with Progress(console=err_console, disable=as_json) as progress:
        task = progress.add_task("asking", total=None)
        summary = distil(
            card,
            asked,
            endpoint,
            out,
            concurrency=concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            cache_dir=cache_dir,
            overwrite=overwrite,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print_summary(
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
        console.print(f"wrote {summary['out']} and {summary['report']}")
    if summary["failed"]:
        err_console.print(
            f"{len(summary['failed'])} question(s) got no answer; run the same command again to retry them."
        )
        sys.exit(1)


@data.command("curate")
@click.argument("data_file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="molt.yaml: its data, persona and suite, and its base's tokenizer and max_length for the length histogram.",
)
@set_option
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card (without --config).")
@click.option("--suite", type=click.Path(dir_okay=False), help="Evaluation suite (without --config).")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Where train.jsonl, held_out.jsonl, removed.jsonl and curate.json go. Default: DATA's folder/curated.",
)
@click.option("--held-out", default=0.1, show_default=True, help="Fraction of conversations held out.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/held-out split.")
@click.option(
    "--near-duplicate",
    default=0.95,
    show_default=True,
    help="Embedding cosine similarity at or above which two conversations count as one.",
)
@click.option("--no-embeddings", is_flag=True, help="Skip the embedding model: exact duplicates and text leaks only.")
@click.option(
    "--leak-threshold",
    default=0.92,
    show_default=True,
    help="Similarity at or above which a training question is a near-verbatim suite question.",
)
@click.option("--drop-leaks", is_flag=True, help="Remove training examples that leak a suite question.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier curate in --out-dir.")
@click.option("--json", "as_json", is_flag=True, help="Print curate.json instead of the summary.")
def data_curate(
    data_file,
    config,
    overrides,
    persona,
    suite,
    out_dir,
    held_out,
    seed,
    near_duplicate,
    no_embeddings,
    leak_threshold,
    drop_leaks,
    overwrite,
    as_json,
):
    """Deduplicate DATA (default: the config's data), split it into train and held-out by conversation,
    and report what it teaches: facts and suite areas no example covers, lengths against the token budget,
    and suite questions leaking into the training questions.

    \b
    Exits 1 when a suite question leaks into train.jsonl (use --drop-leaks to remove those examples).

    \b
    Example:
      molt data curate --config my-persona/molt.yaml my-persona/imported.jsonl --out-dir my-persona/curated
    """
    from molting.data.curate import CurateOptions, curate
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite

    tokenizer = max_length = None
    if config:
        from molting.models.base_model import load_tokenizer

        _quiet_libraries()
        cfg = _load_config(config, overrides)
        persona, suite = persona or cfg.persona, suite or cfg.suite
        data_file = data_file or cfg.data
        tokenizer, max_length = load_tokenizer(cfg.base_model, cfg.chat_template), cfg.train.max_length
    missing = [n for n, v in (("DATA", data_file), ("--persona", persona), ("--suite", suite)) if not v]
    if missing:
        raise UserError(f"molt data curate: give {', '.join(missing)}, or --config molt.yaml.")
    card = load_persona(persona)
    options = CurateOptions(
        held_out=held_out,
        seed=seed,
        near_duplicate=None if no_embeddings else near_duplicate,
        leak_threshold=leak_threshold,
        drop_leaks=drop_leaks,
    )
    out_dir = out_dir or Path(data_file).parent / "curated"
    with err_console.status(f"curating {data_file}" + ("" if no_embeddings else " (embedding every conversation)")):
        summary = curate(
            data_file, card, load_suite(suite, card), out_dir, options, tokenizer, max_length, overwrite=overwrite
        )
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
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
        _print_summary(f"molt data curate — {data_file}", rows)
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
    sys.exit(1 if summary["leaks"] and not summary["leaks_dropped"] else 0)


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
