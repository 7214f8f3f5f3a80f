"""What every command shares: the consoles, the common options, quieting the libraries, loading a config."""

import os
import warnings

import click
from rich.console import Console

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
    "--overwrite",
    is_flag=True,
    help="Replace an earlier run of the same name once the new one is complete (its evals, report and exports go "
    "with it; until then the old run stays whole).",
)
truncation_option = click.option(
    "--allow-truncation",
    is_flag=True,
    default=None,
    help="Let examples longer than max_length be cut (a warning instead of an error).",
)


def quiet_libraries() -> None:
    """Library chatter (per-step dicts, deprecation notices) hides molting's own progress and findings.

    Said through the variables the libraries read when they are imported, so a command that stops on a bad
    card or data line never imports them (about 2.6 s of the 3.1 a `molt check` took to name a bad line); a library
    already imported (molting used in-process) is told directly. A variable the user set is left as it is."""
    import sys

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars follow the hub's
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        transformers = sys.modules["transformers"]
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def load_config(config_path: str, overrides: tuple[str, ...]):
    from molting.config import load_run_config

    return load_run_config(config_path, list(overrides))


eval_id_option = click.option(
    "--id", "eval_id", default="final", show_default=True, help="Which evaluation (folder under RUN/eval/)."
)
