"""`molt eval`, `molt probe`, `molt score` and `molt scores …`: answers and their scores."""

import json
import sys
from pathlib import Path

import click

from molting.cli import tables
from molting.cli.options import console, err_console, eval_id_option, name_option, quiet_libraries, runs_dir_option
from molting.errors import UserError
from molting.paths import RunPaths, run_dir_for


@click.command("eval", short_help="Answer the suite and the probes, and score them.")
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
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="With --backend openai: seconds to wait for one answer (a CPU server may need minutes).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="With --backend openai: requests in flight at once (1 for a server that answers one at a time).",
)
@click.option("--judge-url", help="LLM judge endpoint (OpenAI-compatible); overrides judge.url of the config.")
@click.option("--judge-model", help="LLM judge model name; overrides judge.model of the config.")
@click.option(
    "--judge-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds per judge call; overrides judge.timeout of the config.",
)
@click.option(
    "--judge-concurrency",
    type=click.IntRange(min=1),
    help="Judge calls in flight at once; overrides judge.concurrency of the config (1 for a one-at-a-time server).",
)
@click.option("--no-judge", is_flag=True, help="Skip the LLM judge even if the config sets one.")
@click.option(
    "--no-fluency",
    is_flag=True,
    help="Skip the fluency pass (a reference model reading every answer for word salad; fluency.model in the "
    "config, packaged:gemma-3-270m by default). Invented words are still caught.",
)
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
@click.option(
    "--min-average",
    type=click.FloatRange(0, 10),
    metavar="SCORE",
    help="Exit 1 when the suite's average is below this score (/10), for CI jobs; the scores are written anyway.",
)
@click.option(
    "--min",
    "minimums",
    multiple=True,
    metavar="DIM=SCORE",
    help="Exit 1 when a dimension's average (/2) is below SCORE, e.g. --min D2=1.5 (repeatable).",
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
    timeout,
    concurrency,
    judge_url,
    judge_model,
    judge_timeout,
    judge_concurrency,
    no_judge,
    no_fluency,
    samples,
    temperature,
    probes,
    overrides,
    min_average,
    minimums,
    name,
    runs_dir,
):
    """Answer the suite (and the card's probes) and score every answer: rubric v2, and the LLM judge when
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
      molt eval runs/demo --min-average 7 --min D1=1.8     # exit 1 below either (CI)
    """
    from molting.evaluate.thresholds import parse_minimum, shortfalls
    from molting.openai_client import Endpoint

    minimum_by_dim = dict(parse_minimum(m) for m in minimums)

    endpoint = None
    if backend == "openai":
        if not url or not model_name:
            raise UserError("--backend openai needs --url (the server's base URL) and --model (the model name).")
        try:
            endpoint = Endpoint(url, model_name, api_key_env or None, timeout_s=timeout)
        except ValueError as e:
            raise UserError(f"--url: {e}") from None
    from molting.evaluate.server_answers import run_dir_for_config, split_overrides

    config_overrides, generation_overrides = split_overrides(overrides, backend)
    if endpoint is not None and Path(run).is_file():
        run = run_dir_for_config(run, config_overrides, run_dir_for(run, name, runs_dir))
    elif url or model_name:
        raise UserError("--url and --model choose the server for --backend openai; add --backend openai.")
    if not Path(run).is_dir():
        raise UserError(
            f"{run}: no such run directory. Train first (molt train CONFIG --name NAME), or evaluate a model on a "
            "server straight from a config: molt eval CONFIG --backend openai --url URL --model NAME."
        )
    quiet_libraries()  # after the argument checks: a mistake is reported without loading the libraries
    from molting.evaluate.judge import judge_for_run
    from molting.evaluate.run import eval_run

    judge = judge_for_run(run, judge_url, judge_model, no_judge, judge_timeout, judge_concurrency)
    scores = eval_run(
        run,
        eval_id,
        use_adapter=not use_base,
        samples=samples,
        temperature=temperature,
        probes=probes,
        overrides=generation_overrides,
        say=lambda text: console.print(text, highlight=False),
        judge=judge,
        endpoint=endpoint,
        concurrency=concurrency,
        fluency=not no_fluency,
    )
    tables.print_scores(scores, f"{run} — {scores['eval_id']} ({scores['model']})")
    for missing in scores.get("no_answer", []):
        err_console.print(f"[yellow]no answer[/] for {missing['id']}: {missing['reason']}", highlight=False)
    if scores.get("judge"):
        from molting.evaluate.judge import response_format_note

        j = scores["judge"]
        note = response_format_note(j)
        console.print(
            f"judge {j['model']}: {j['calls']} calls, {j['unscored']} dimension(s) left unscored"
            + (f"; {note}" if note else ""),
            highlight=False,
        )
    console.print(f"wrote {RunPaths(run).eval(scores['eval_id']).scores}")
    missed = shortfalls(scores, min_average, minimum_by_dim)
    if missed:
        err_console.print(f"[red]below the minimum:[/] {'; '.join(missed)}", highlight=False)
        sys.exit(1)


@click.command(short_help="Log-probability margins of right over wrong answers.")
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
    from molting.evaluate.run import probe_run

    quiet_libraries()
    if not Path(run).is_dir():
        raise UserError(f"{run}: no such run directory. Train first: molt train CONFIG --name NAME.")
    report = probe_run(run, eval_id, use_adapter=not use_base)
    tables.print_logprob_report(report, run)
    console.print(f"wrote {RunPaths(run).eval(report['eval_id']).logprob}")


@click.command(short_help="Score any model's answers from a JSONL file.")
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
@click.option(
    "--judge-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per judge call (default 60)."
)
@click.option(
    "--judge-concurrency",
    type=click.IntRange(min=1),
    help="Judge calls in flight at once (default 4; 1 for a server that answers one at a time).",
)
@click.option(
    "--fluency-model",
    default="packaged:gemma-3-270m",
    show_default=True,
    help="Reference model that reads every answer for word salad (any base_model value; the default needs the "
    "molting[gemma] extra).",
)
@click.option(
    "--fluency-calibration",
    type=click.Path(dir_okay=False),
    help="Thresholds for another --fluency-model (python bench/agreement.py --calibrate --model M --out FILE).",
)
@click.option("--no-fluency", is_flag=True, help="Skip the fluency pass; invented words are still caught.")
def score(
    persona,
    suite,
    responses,
    out,
    judge_url,
    judge_model,
    judge_timeout,
    judge_concurrency,
    fluency_model,
    fluency_calibration,
    no_fluency,
):
    """Score answers from any model with rubric v2 (deterministic detectors driven by the persona card).

    \b
    Example:
      molt score --persona examples/claudio/persona.yaml --suite examples/claudio/suite.yaml \\
                 --responses answers.jsonl --out scores.json
    """
    from molting.evaluate.score_files import score_file

    scores = score_file(
        persona,
        suite,
        responses,
        out,
        judge_url,
        judge_model,
        judge_timeout,
        judge_concurrency,
        fluency_model=None if no_fluency else fluency_model,
        fluency_calibration=fluency_calibration,
    )
    tables.print_scores(scores, f"{responses}")
    console.print(f"wrote {out}")


@click.group(short_help="Human scores: scoring sheet, import, agreement.")
def scores():
    """Human scores: a scoring sheet for people, its import, and agreement with the automatic scores.

    \b
      molt scores sheet RUN              write RUN/eval/final/scoring_sheet.csv
      molt scores import RUN --csv FILE  validate it and merge it into manual_scores.json
      molt scores agreement RUN          exact, within-one, Cohen's kappa (plain, quadratic-weighted)
    Human scores override the automatic ones in report.md.
    """


@scores.command("sheet", short_help="Write a CSV scoring sheet for people.")
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
    from molting.evaluate.human_scores import write_sheet

    console.print(f"wrote {write_sheet(run, eval_id, out)}")


@scores.command("import", short_help="Merge a filled scoring sheet into the run.")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="The filled scoring sheet.")
@eval_id_option
def scores_import(run, csv_path, eval_id):
    """Validate a filled scoring sheet and merge it into RUN/eval/ID/manual_scores.json.

    Unknown answer ids, scores other than 0, 1 or 2 and duplicate rows are errors (file:line); nothing is
    written then. Blank cells leave earlier human scores as they are. Optional columns D1_note … D5_note
    hold a note per dimension.
    """
    from molting.evaluate.human_scores import import_sheet

    result = import_sheet(run, csv_path, eval_id)
    console.print(f"imported {result['scores']} scores for {result['answers']} answers into {result['path']}")


@scores.command("agreement", short_help="Agreement of automatic and human scores.")
@click.argument("run", type=click.Path(file_okay=False))
@eval_id_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def scores_agreement(run, eval_id, as_json):
    """Agreement of the automatic scores (rubric, and the judge where it scored) with the human ones:
    exact, within-one, and Cohen's kappa unweighted and quadratic-weighted (the scores are ordinal: a 0
    against a 2 costs four times a 1 against a 2) per dimension, over the answers both scored."""
    from molting.evaluate.human_scores import run_agreement

    figures = run_agreement(run, eval_id)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    tables.print_agreement(figures, f"{run} — {eval_id}: automatic vs human")
