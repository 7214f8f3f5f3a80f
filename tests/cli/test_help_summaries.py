"""The command lists of `molt --help` and of each group's --help (molt data, molt scores, molt config) show
every command's summary whole: a short phrase of its own, never the first words of its help cut off with
"...", at a narrow terminal and a wide one."""

import os
import subprocess
import sys

import click
import pytest

from molting.cli import cli

# A phrase that stops on one of these has lost its end.
DANGLING = {"a", "an", "and", "as", "at", "by", "for", "from", "into", "of", "on", "or", "the", "to", "with"}


def groups() -> list[tuple[list[str], click.Group]]:
    """(command path, group) of `molt` and of every group under it."""
    found = [([], cli)]
    for path, group in found:
        found += [([*path, name], c) for name, c in group.commands.items() if isinstance(c, click.Group)]
    return found


def listed_summaries(args: list[str], columns: int) -> dict[str, str]:
    """Command name → its summary as the Commands section of `molt ARGS --help` prints it (wrapped lines
    joined)."""
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "molting", *args, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("Commands:\n", 1)[1].splitlines()
    summaries: dict[str, str] = {}
    name = None
    for line in lines:
        if not line.strip():
            break
        if line.startswith("  ") and not line.startswith("   "):  # "  name  summary"
            name, _, text = line.strip().partition(" ")
            summaries[name] = text.strip()
        else:  # a summary wrapped onto the next line
            summaries[name] += " " + line.strip()
    return summaries


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize(
    ("path", "group"), groups(), ids=lambda v: " ".join(["molt", *v]) if isinstance(v, list) else ""
)
def test_every_listed_summary_is_a_whole_phrase(path, group, columns):
    summaries = listed_summaries(path, columns)
    visible = {name for name, command in group.commands.items() if not command.hidden}
    assert set(summaries) == visible
    for name, text in summaries.items():
        command = group.commands[name]
        assert command.short_help, f"molt {' '.join([*path, name])} has no short_help: click would cut its help"
        assert text == command.short_help, (name, text)
        assert not text.endswith("...") and text.endswith("."), (name, text)
        assert text.rstrip(".").split()[-1].lower() not in DANGLING, (name, text)
        assert len(text) <= 60, f"{name}: {len(text)} characters wrap at 80 columns"
