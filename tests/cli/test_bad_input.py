"""Bad input: one clear message naming file, line and field, exit 2, no traceback, no output."""

import json

import pytest
from conftest import run_molt, set_args

from molting.config import load_run_config
from molting.errors import UserError
from molting.io import write_json_atomic

TINY = ["base_model=builtin:tiny"]


def _fails_cleanly(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_missing_config_file(tmp_path):
    _fails_cleanly(
        run_molt("check", tmp_path / "nope.yaml", "--runs-dir", tmp_path / "runs"), "nope.yaml: file not found"
    )
    assert not (tmp_path / "runs").exists()


def test_bad_yaml_names_the_line(project, tmp_path):
    (project / "molt.yaml").write_text("base_model: builtin:tiny\npersona: [unclosed\ndata: data.jsonl\n")
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", "--runs-dir", tmp_path / "runs"), "molt.yaml:3: invalid YAML"
    )
    assert not (tmp_path / "runs").exists()


def test_unknown_field_names_line_and_allowed_fields(project, tmp_path):
    text = (project / "molt.yaml").read_text().replace("train:\n", "train:\n  epochz: 3\n", 1)
    (project / "molt.yaml").write_text(text)
    line = text.splitlines().index("  epochz: 3") + 1
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", "--runs-dir", tmp_path / "runs"),
        f"molt.yaml:{line}: train.epochz: unknown field",
        "epochs",
    )


def test_wrong_type_names_the_field(project):
    (project / "molt.yaml").write_text((project / "molt.yaml").read_text().replace("  r: 32\n", "  r: sixteen\n"))
    with pytest.raises(UserError, match=r"lora\.r: expected a whole number, got 'sixteen'"):
        load_run_config(project / "molt.yaml")


def test_learning_rate_in_e_notation_is_a_number(project):
    text = (project / "molt.yaml").read_text()
    (project / "molt.yaml").write_text(text.replace("  learning_rate: 2e-3", "  learning_rate: 2e-4"))
    assert load_run_config(project / "molt.yaml").train.learning_rate == 2e-4


def test_a_key_given_twice_is_an_error_not_a_silent_override(project, tmp_path):
    # PyYAML keeps the later of two `train:` blocks: the first one's learning_rate would be dropped unseen
    text = (project / "molt.yaml").read_text() + "train:\n  epochs: 3\n"
    (project / "molt.yaml").write_text(text)
    lines = text.splitlines()
    first, second = lines.index("train:") + 1, len(lines) - 1
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", "--runs-dir", tmp_path / "runs"),
        f"molt.yaml:{second}: train: given twice (first at line {first})",
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", [".nan", "nan", ".inf", "-.inf"])
def test_a_number_that_is_not_finite_is_an_error(project, tmp_path, value):
    text = (project / "molt.yaml").read_text()
    (project / "molt.yaml").write_text(text.replace("  learning_rate: 2e-3", f"  learning_rate: {value}"))
    line = text.splitlines().index("  learning_rate: 2e-3") + 1
    with pytest.raises(UserError, match=rf"molt.yaml:{line}: train.learning_rate: expected a finite number"):
        load_run_config(project / "molt.yaml")
    (project / "molt.yaml").write_text(text)
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args([f"train.learning_rate={value}"])),
        "train.learning_rate: expected a finite number",
    )


def test_unknown_base_model(project, tmp_path):
    _fails_cleanly(
        run_molt(
            "check", project / "molt.yaml", *set_args(["base_model=builtin:huge"]), "--runs-dir", tmp_path / "runs"
        ),
        "builtin:huge",
        "builtin:tiny, builtin:small",
    )


def test_malformed_data_line(project, tmp_path):
    with (project / "data.jsonl").open("a") as f:
        f.write('{"messages": [{"role": "user", "content": "oi"}]}\n')
    n = len((project / "data.jsonl").read_text().splitlines())
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "runs"),
        f"data.jsonl:{n}: the conversation ends with a 'user' message",
    )
    assert not (tmp_path / "runs").exists()


def test_persona_errors_name_the_card_line(project, tmp_path):
    text = (project / "persona.yaml").read_text().replace("category: relationship", "category: family", 1)
    (project / "persona.yaml").write_text(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if "category: family" in x)) + 1
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "runs"),
        f"persona.yaml:{line}:",
        "expected one of 'relationship'",
    )


def test_bad_regex_in_the_card(project, tmp_path):
    text = (project / "persona.yaml").read_text().replace("shows: [", "shows: ['(unclosed', ", 1)
    (project / "persona.yaml").write_text(text)
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "runs"),
        "is not a valid regex",
    )


def test_suite_naming_an_unknown_fact(project, tmp_path):
    text = (project / "suite.yaml").read_text().replace("must_mention: [", "must_mention: [no_such_fact, ", 1)
    (project / "suite.yaml").write_text(text)
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "runs"),
        "suite.yaml:",
        "'no_such_fact' is not a fact id",
    )


def test_bad_set_override(project, tmp_path):
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", "--set", "train.epochs", "--runs-dir", tmp_path / "r"),
        "expected FIELD=VALUE",
    )


def test_atomic_write_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "scores.json"
    write_json_atomic(target, {"average": 5.5})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"average": object()})  # fails while serialising
    assert json.loads(target.read_text()) == {"average": 5.5}
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_cli_help_for_every_command():
    """Every command and subcommand explains itself, found from the CLI itself so a new one cannot be missed
    (in-process through click's runner: one subprocess per command would cost a second each)."""
    import click
    from click.testing import CliRunner

    from molting.cli import cli

    top = run_molt("--help")
    assert top.returncode == 0
    paths = []
    for name, command in cli.commands.items():
        assert name in top.stdout, f"molt --help does not list {name}"
        paths.append([name])
        if isinstance(command, click.Group):
            paths += [[name, sub] for sub in command.commands]
    assert len(paths) >= 20  # init … export, and the data and scores groups' subcommands
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output, path
        assert len(result.output.split("Options:")[0].split("\n")) > 3, f"molt {' '.join(path)} --help says nothing"


def test_chat_template_file_that_does_not_exist(project, tmp_path):
    _fails_cleanly(
        run_molt(
            "check",
            project / "molt.yaml",
            *set_args(TINY + ["chat_template=missing.jinja"]),
            "--runs-dir",
            tmp_path / "runs",
        ),
        "missing.jinja not found",
    )
