"""`molt report`, `molt compare` and `molt serve`: reading runs."""

import json
import sys

import click

from molting.cli import tables
from molting.cli.options import console, err_console


@click.command(short_help="Write report.md, report.html and loss.png.")
@click.argument("run", type=click.Path(file_okay=False))
def report(run):
    """Write RUN/report.md, RUN/report.html (self-contained) and RUN/loss.png from the run directory."""
    from molting.report.html import write_run_html
    from molting.report.markdown import write_report

    console.print(f"wrote {write_report(run)}")
    console.print(f"wrote {write_run_html(run)}")


@click.command(short_help="Compare runs, with a verdict per question and overall.")
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
    Beside the overall verdict, a paired test: a seeded bootstrap of the per-question differences, with
    the 95% interval of their mean and a p-value. Human scores in eval/ID/manual_scores.json replace the
    automatic ones they cover.

    \b
    Example:
      molt compare runs/baseline runs/candidate --md --fail-on-regression
    """
    from molting.report.compare import compare_runs, plot_loss_curves, to_markdown

    result = compare_runs(list(runs), eval_id)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    elif as_md:
        click.echo(to_markdown(result), nl=False)
    else:
        tables.print_compare(result)
    # Files are announced on stderr so --json/--md output stays clean for pipes.
    if html_out:
        from molting.report.html import write_compare_html

        err_console.print(f"wrote {write_compare_html(list(runs), html_out, eval_id)}")
    if plot_out:
        err_console.print(f"wrote {plot_loss_curves(list(runs), plot_out)}")
    if fail_on_regression and result["regression"]:
        sys.exit(1)


@click.command(short_help="Local web dashboard over the runs.")
@click.argument("runs_dir", default="runs", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8321, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --host other than 127.0.0.1. Plain HTTP, no TLS: anyone who sees the traffic reads every answer "
    "and the token that lets them change scores.",
)
def serve(runs_dir, host, port, allow_remote):
    """Local web dashboard over RUNS_DIR (default: runs): runs, run pages, comparisons, and a page to
    score answers by hand (saved to eval/ID/manual_scores.json as you go) and to write the right answer
    for a rejected one (eval/ID/preference_pairs.jsonl). It prints the address to open, with a token
    that changes at every start: pages need it, and only the dashboard's own pages can write.

    \b
    Example:
      molt serve runs            # then open the printed http://127.0.0.1:8321/?token=...
    """
    from molting.report.dashboard import check_host
    from molting.report.dashboard import serve as serve_dashboard

    warning = check_host(host, allow_remote)
    if warning:
        err_console.print(f"[bold red]{warning}[/]", highlight=False)
    serve_dashboard(
        runs_dir, host, port, say=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)
    )
