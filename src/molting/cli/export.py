"""`molt export`: the trained run as a merged model, a GGUF or an Ollama model."""

import sys

import click

from molting.cli import tables
from molting.cli.options import console, quiet_libraries
from molting.paths import RunPaths


@click.command(short_help="Merged model, GGUF, Ollama Modelfile for local use.")
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

    quiet_libraries()
    export_run(run, target, quant, say=lambda m: console.print(m, highlight=False))
    console.print(f"exported {target}: {RunPaths(run).export(target)}")
    if not verify:
        return
    from molting.export.verify import verify_export

    report = verify_export(run, target, max_new_tokens)
    tables.print_verify(report)
    console.print(f"wrote {RunPaths(run).export(target) / 'verify.json'}")
    sys.exit(0 if report["ok"] else 1)
