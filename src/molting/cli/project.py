"""`molt init`, `molt check`, `molt train`, `molt run` and `molt doctor`: a project from its config."""

import json
import sys
from pathlib import Path

import click

from molting.cli import tables
from molting.cli.options import (
    console,
    load_config,
    name_option,
    overwrite_option,
    quiet_libraries,
    runs_dir_option,
    set_option,
    truncation_option,
)
from molting.paths import RunPaths, run_dir_for


@click.command(short_help="Write a new persona project to fill in.")
@click.argument("directory", type=click.Path(file_okay=False))
def init(directory):
    """Write a new persona project (persona.yaml, data.jsonl, suite.yaml, molt.yaml) into DIRECTORY.

    Every value to fill in holds a TODO; `molt check DIRECTORY/molt.yaml` lists those left.
    """
    from molting.card.init_project import init_project

    for path in init_project(directory):
        console.print(f"wrote {path}")
    console.print(f"Fill in every TODO, then: molt check {Path(directory) / 'molt.yaml'}")


@click.command(short_help="Preflight a config: data, tokens, EOS, steps, memory.")
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
    GPU or RAM (or check.memory_gb), saying what would make it fit, and finds the chat template's token rows
    the base never trained. Loads no model (of the weights, only the embedding matrix, when it is on this
    machine). A trained run's preflight.json is left as it was trained. Exits 1 when a check fails, 2 on
    bad input.
    """
    from molting.train.preflight import run_preflight
    from molting.train.sft import write_preflight

    quiet_libraries()
    report = run_preflight(load_config(config, overrides), allow_truncation)
    run_dir = run_dir_for(config, name, runs_dir)
    # a trained run's preflight.json records the settings it was trained with; its report reads it
    trained = RunPaths(run_dir).adapter.exists()
    if not trained:
        write_preflight(report, run_dir)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        tables.print_preflight(report)
        if trained:
            console.print(
                f"not written: {run_dir} is a trained run, and its preflight.json is the check it was trained "
                "with. Pass --name to keep this one.",
                highlight=False,
            )
        else:
            console.print(f"wrote {RunPaths(run_dir).preflight}")
    sys.exit(0 if report["ok"] else 1)


@click.command(short_help="LoRA-train the base on the persona data.")
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
    quiet_libraries()
    run_dir = run_dir_for(config, name, runs_dir)
    manifest = train_run(
        load_config(config, overrides),
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
        f"adapter in {RunPaths(run_dir).adapter}"
    )


@click.command(short_help="Check, train, evaluate and report in one go.")
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

    quiet_libraries()
    run_dir = run_dir_for(config, name, runs_dir)
    result = run_pipeline(
        load_config(config, overrides),
        run_dir,
        with_base=not no_base,
        allow_truncation=allow_truncation,
        overwrite=overwrite,
        say=console.print,
    )
    console.print(f"[bold]Report: {result['report']}[/]")


@click.command(short_help="Versions, CUDA, free VRAM and known bad combinations.")
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

    quiet_libraries()
    report = diagnose(model)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        tables.print_doctor(report)
    sys.exit(1 if any(f["level"] == "error" for f in report["findings"]) else 0)
