"""The `molt` command: one thin command per pipeline stage, each calling one library function.

User mistakes (`UserError`) print their message and exit 2; a preflight that finds errors exits 1.
The commands live in one module per group (project, data, evaluate, report, export); this module only
assembles them.
"""

import sys

import click
from rich.markup import escape

from molting import __version__
from molting.cli import config, data, evaluate, export, project, report
from molting.cli.options import err_console
from molting.errors import UserError, as_os_error, os_error_message


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
      molt eval RUN        answer the suite and score the answers (rubric v2)
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
      molt config schema   JSON Schemas of molt.yaml, persona.yaml, suite.yaml for editors
    """


for command in (
    project.init,
    project.check,
    data.augment,
    project.train,
    evaluate.eval_cmd,
    evaluate.probe,
    evaluate.score,
    evaluate.scores,
    report.report,
    report.compare,
    report.serve,
    project.run,
    export.export,
    project.doctor,
    data.data,
    config.config,
):
    cli.add_command(command)


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
            # a message is plain text: "[gemma]" in `pip install 'molting[gemma]'` is not rich markup
            err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; files already written are complete, nothing half-written was kept")
        sys.exit(130)
    except Exception as e:
        # A full disk, a read-only folder, a file-size limit: the system refused, and the message says so in
        # one line. Anything else is a bug and keeps its traceback.
        refused = as_os_error(e)
        if refused is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(os_error_message(refused))}", highlight=False, soft_wrap=True)
        sys.exit(1)
