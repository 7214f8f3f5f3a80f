"""`molt run`: check, train, evaluate (the untrained base too) and report, one stage after another.

Reached through `run_pipeline(config, run_dir)`. Each stage writes its own files in the run directory,
so a failed stage can be re-run alone with its own command.
"""

from pathlib import Path

from molting.config import RunConfig
from molting.evaluate.run import eval_run
from molting.report.html import write_run_html
from molting.report.markdown import write_report
from molting.train.sft import train_run


def run_pipeline(
    config: RunConfig,
    run_dir: Path,
    with_base: bool = True,
    show_progress: bool = True,
    allow_truncation: bool | None = None,
    overwrite: bool = False,
    say=print,
) -> dict:
    say(f"[1/4] check + train  -> {run_dir}")
    manifest = train_run(config, run_dir, show_progress, allow_truncation, overwrite)
    say(
        f"      trained {manifest['train']['optimizer_steps']} steps in {manifest['train']['seconds']} s, "
        f"final loss {manifest['train']['final_loss']}"
    )
    results = {}
    if with_base:
        say("[2/4] eval untrained base")
        results["base"] = eval_run(run_dir, "base", use_adapter=False, show_progress=show_progress)
        say(f"      untrained base average {results['base']['average']:.2f}/10")
    say("[3/4] eval trained adapter")
    results["final"] = eval_run(run_dir, "final", use_adapter=True, show_progress=show_progress)
    say(f"      trained average {results['final']['average']:.2f}/10")
    report = write_report(run_dir)
    write_run_html(run_dir)
    say(f"[4/4] report: {report}")
    return {"manifest": manifest, "evals": results, "report": str(report)}
