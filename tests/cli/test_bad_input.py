"""Bad input: one clear message naming file, line and field, exit 2, no traceback, no output. A system that
refuses to write (a full disk, a read-only folder): one plain line, exit 1, the earlier output as it was."""

import contextlib
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_molt, set_args
from fake_runs import make_run, references

from molting.config import load_run_config
from molting.errors import UserError
from molting.io import write_json_atomic
from molting.yaml_source import load_yaml

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


def test_a_bad_data_line_is_named_before_any_model_library_is_imported(project, tmp_path):
    """The card, suite and data are read before torch, transformers or datasets is imported (the device check
    only for a quantised load, the libraries quieted through their variables): a mistake in them is named in
    well under a second, where it took 3 s of imports first."""
    with (project / "data.jsonl").open("a") as f:
        f.write('{"messages": [{"role": "user", "content": "oi"}]}\n')
    code = (
        "import sys\n"
        "from molting.cli import main\n"
        f"sys.argv = ['molt', 'check', {str(project / 'molt.yaml')!r}, '--runs-dir', {str(tmp_path / 'runs')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('imported:', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    _fails_cleanly(result, "the conversation ends with a 'user' message")
    assert "imported: []" in result.stdout, result.stdout


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


# Bad bytes, hostile files and a system that refuses to write: a message, never a traceback. Each command
# runs in a subprocess under the limits a test sets (see _run_limited).

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1  # <linux/prctl.h>, <linux/capability.h>
MEMORY = 4 << 30  # an alias bomb that is not refused dies here (MemoryError), not in the machine's memory


def _limits(file_size: int | None = None):
    def apply():
        if file_size is not None:  # writes past it fail with EFBIG, as they would on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
        if os.geteuid() == 0:  # root ignores a folder's mode unless it gives CAP_DAC_OVERRIDE up before exec
            ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0)

    return apply


def _run_limited(*args, file_size: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`molt ARGS` as conftest's run_molt runs it, under a memory limit, an optional file-size limit, and with
    no power to write where the file modes forbid it (even as root)."""
    return subprocess.run(
        [sys.executable, "-m", "molting", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=timeout,
        preexec_fn=_limits(file_size),
    )


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (temporary ones too) and its bytes: what a failed command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused_by_the_system(result, *needles):
    """Exit 1 with one plain line: a full disk or a read-only folder is not the user's mistake (that is 2)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "Nothing half-written was kept" in result.stderr


@contextlib.contextmanager
def _read_only(folder: Path):
    folder.chmod(0o555)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"], preexec_fn=_limits(), capture_output=True
        )
        if probe.returncode == 0:
            pytest.skip("this user can write into a folder without write permission")
        yield folder
    finally:
        folder.chmod(0o755)


BAD_DATA_LINES = {
    "bytes": (
        b'{"messages": [{"role": "user", "content": "oi \xff"}, {"role": "assistant", "content": "Oi!"}]}',
        "not UTF-8 text (byte 0xff at byte 47 of the line)",
    ),
    "surrogate": (
        b'{"messages": [{"role": "user", "content": "oi \\ud800"}, {"role": "assistant", "content": "Oi!"}]}',
        "messages[0].content: a lone surrogate escape (\\ud800) is no character",
    ),
    "deep": (b"[" * 5000 + b"]" * 5000, "JSON nested too deep"),
}


@pytest.mark.parametrize("command", ["check", "curate"])
@pytest.mark.parametrize("bad", list(BAD_DATA_LINES))
def test_a_data_line_that_is_not_text_or_is_nested_too_deep(project, tmp_path, bad, command):
    line, message = BAD_DATA_LINES[bad]
    data = project / "data.jsonl"
    n = len(data.read_bytes().splitlines()) + 1
    data.write_bytes(data.read_bytes() + line + b"\n")
    if command == "check":
        result = run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "out")
    else:
        card = ["--persona", project / "persona.yaml", "--suite", project / "suite.yaml"]
        result = run_molt("data", "curate", data, *card, "--no-embeddings", "--out-dir", tmp_path / "out")
    _fails_cleanly(result, f"data.jsonl:{n}: {message}")
    assert not (tmp_path / "out").exists()


# Appended to an evaluation's responses.jsonl: each damaged line and what the message says about it.
DAMAGED_RESPONSES = [
    (b"\xff\xfe", "not UTF-8 text (byte 0xff"),
    (b'{"id": "Q1", "resp', "not valid JSON (Unterminated string starting at column 14)"),
    (b"[1, 2]", "expected a JSON object ({...}), got an array"),
    (b'{"id": "Q1", "response": "a\\ud800"}', "response: a lone surrogate escape (\\ud800)"),
    (b"[" * 5000 + b"]" * 5000, "JSON nested too deep"),
    (b'{"response": "Sou o Claudio."}', "id: missing"),
]


@pytest.mark.parametrize("command", ["scores sheet", "scores import", "report", "augment --from-eval"])
def test_a_damaged_responses_file(tmp_path, command):
    run = make_run(tmp_path / "runs", "demo", {q: [r] for q, r in list(references().items())[:3]}, [2.0, 1.5, 1.0])
    out = tmp_path / "corrective"
    args = {
        "scores sheet": ["scores", "sheet", run],
        "scores import": ["scores", "import", run, "--csv", run / "eval" / "final" / "scoring_sheet.csv"],
        "report": ["report", run],
        "augment --from-eval": ["augment", EXAMPLE / "molt.yaml", "--from-eval", run, "--out", out, "--overwrite"],
    }[command]
    earlier = {"scores sheet": ["scores", "sheet", run], "report": ["report", run]}  # good outputs, to be kept
    earlier["scores import"] = earlier["scores sheet"]
    earlier["augment --from-eval"] = args[:-1]
    run_molt(*earlier[command], check=True)
    responses = run / "eval" / "final" / "responses.jsonl"
    first = len(responses.read_bytes().splitlines()) + 1
    responses.write_bytes(responses.read_bytes() + b"".join(line + b"\n" for line, _ in DAMAGED_RESPONSES))
    before = _files(tmp_path)

    result = run_molt(*args)
    _fails_cleanly(
        result,
        *(f"responses.jsonl:{first + i}: {message}" for i, (_, message) in enumerate(DAMAGED_RESPONSES)),
        "responses.jsonl: damaged; re-run the stage that writes it",
    )
    assert _files(tmp_path) == before


def _answers(tmp_path: Path) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"id": "Q1", "response": references()["Q1"]}, ensure_ascii=False) + "\n")
    return path


def test_score_into_a_read_only_folder(tmp_path):
    card = ["--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml", "--no-fluency"]
    folder = tmp_path / "scores"
    run_molt("score", *card, "--responses", _answers(tmp_path), "--out", folder / "scores.json", check=True)
    before = _files(folder)
    with _read_only(folder):
        result = _run_limited("score", *card, "--responses", _answers(tmp_path), "--out", folder / "scores.json")
    _refused_by_the_system(result, f"{folder / 'scores.json'}: Permission denied")
    assert _files(folder) == before


def test_augment_into_a_read_only_folder(tmp_path):
    folder = tmp_path / "corrective"
    run_molt("augment", EXAMPLE / "molt.yaml", "--out", folder, check=True)
    before = _files(folder)
    with _read_only(folder):
        result = _run_limited("augment", EXAMPLE / "molt.yaml", "--out", folder, "--overwrite")
    _refused_by_the_system(result, f"{folder / 'corrective.jsonl'}: Permission denied")
    assert _files(folder) == before


FULL = 512  # bytes a command may write per file: each of these writes more


def test_score_on_a_full_disk(tmp_path):
    card = ["--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml", "--no-fluency"]
    out = tmp_path / "scores" / "scores.json"
    run_molt("score", *card, "--responses", _answers(tmp_path), "--out", out, check=True)
    before = _files(out.parent)
    result = _run_limited("score", *card, "--responses", _answers(tmp_path), "--out", out, file_size=FULL)
    _refused_by_the_system(result, f"{out}: File too large", "ulimit -f")
    assert _files(out.parent) == before


def test_report_on_a_full_disk(tmp_path):
    run = make_run(tmp_path / "runs", "demo", {q: [r] for q, r in list(references().items())[:3]}, [2.0, 1.5, 1.0])
    run_molt("report", run, check=True)
    before = _files(run)
    result = _run_limited("report", run, file_size=FULL)
    _refused_by_the_system(result, "File too large", "ulimit -f")
    assert _files(run) == before


def test_curate_on_a_full_disk(project, tmp_path):
    card = ["--persona", project / "persona.yaml", "--suite", project / "suite.yaml", "--no-embeddings"]
    out = tmp_path / "curated"
    run_molt("data", "curate", project / "data.jsonl", *card, "--out-dir", out, check=True)
    before = _files(out)
    result = _run_limited(
        "data", "curate", project / "data.jsonl", *card, "--out-dir", out, "--overwrite", file_size=FULL
    )
    _refused_by_the_system(result, "File too large", "ulimit -f")
    assert _files(out) == before


def test_export_on_a_full_disk(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    # The merged weights are written by safetensors' Rust code, which reports EFBIG in its own exception type.
    result = _run_limited("export", run, "--to", "merged", file_size=64 << 10)
    _refused_by_the_system(result, "File too large", "ulimit -f")
    assert not (run / "export").exists() or not any((run / "export").iterdir())  # no staging folder left


BILLION_LAUGHS = "\n".join(
    [
        'lol_a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"lol_{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("persona.yaml", "check"),
        ("suite.yaml", "check"),
        ("molt.yaml", "check"),
        ("persona.yaml", "score"),
        ("suite.yaml", "score"),
        ("persona.yaml", "augment"),
        ("molt.yaml", "augment"),
    ],
)
def test_a_yaml_alias_bomb_is_refused(project, tmp_path, name, command):
    path = project / name
    first = len(path.read_text().splitlines()) + 1
    path.write_text(path.read_text() + BILLION_LAUGHS + "\n")
    args = {
        "check": ["check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "out"],
        "score": ["score", "--persona", project / "persona.yaml", "--suite", project / "suite.yaml", "--no-fluency"]
        + ["--responses", _answers(tmp_path), "--out", tmp_path / "out" / "scores.json"],
        "augment": ["augment", project / "molt.yaml", "--out", tmp_path / "out"],
    }[command]
    result = _run_limited(*args)
    # Counted as they come: lol_a to lol_d repeat 8,289 values; lol_e's first *d (7,381 more) passes 10,000.
    _fails_cleanly(result, f"{name}:{first + 4}: with alias *d the aliases repeat over 10,000 values")
    assert not (tmp_path / "out").exists()


def test_yaml_aliases_used_with_measure_still_load(tmp_path):
    path = tmp_path / "aliases.yaml"
    lines = ["defaults: &defaults {area: relationships, must_mention: [a, b], must_not: [c]}", "questions:"]
    lines += [f"  - {{<<: *defaults, id: Q{i}}}" for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    data = load_yaml(path).data
    assert len(data["questions"]) == 300 and data["questions"][299]["must_mention"] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"name: Claudio\nlist: &a [1, *a]\n", "persona.yaml:2: alias *a is inside the node &a it names"),
        (b"name: Claudio\nlanguage: pt\nidentity: {summary: 'x \xff'}\n", "persona.yaml:3: not UTF-8 text (byte 0xff)"),
        (b'name: "Cl\\ud800udio"\n', "persona.yaml:1: name: a lone surrogate escape (\\ud800) is no character"),
        (
            b"deep: " + b"[" * 3000 + b"]" * 3000 + b"\n",
            "persona.yaml:1: invalid YAML: lists or mappings nested too deep",
        ),
    ],
    ids=["recursive alias", "not UTF-8", "lone surrogate", "nested too deep"],
)
def test_a_card_that_is_not_yaml_text(project, tmp_path, text, message):
    (project / "persona.yaml").write_bytes(text)
    _fails_cleanly(run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "r"), message)


def test_a_set_value_that_is_not_yaml(project, tmp_path):
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", "--set", "train.epochs=[", "--runs-dir", tmp_path / "r"),
        "--set 'train.epochs=[': the value is not YAML",
    )


def test_a_key_given_twice_in_the_persona_card(project, tmp_path):
    path = project / "persona.yaml"
    lines = path.read_text().splitlines()
    first = lines.index("language: pt") + 1
    lines.insert(first, "language: en")  # PyYAML would keep this one, silently
    path.write_text("\n".join(lines) + "\n")
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "r"),
        f"persona.yaml:{first + 1}: language: given twice (first at line {first})",
    )


def test_a_key_given_twice_in_the_suite(project, tmp_path):
    path = project / "suite.yaml"
    lines = path.read_text().splitlines()
    first = lines.index('    question: "Quem é o João?"') + 1
    lines.insert(first, '    question: "Quem é a Maria?"')
    path.write_text("\n".join(lines) + "\n")
    _fails_cleanly(
        run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", tmp_path / "r"),
        f"suite.yaml:{first + 1}: questions[0].question: given twice (first at line {first})",
    )


def _card_with_pattern(project: Path, pattern: str) -> int:
    """The card with `pattern` added to its first forbidden claim; returns the pattern's line."""
    path = project / "persona.yaml"
    lines = path.read_text().splitlines()
    at = lines.index("      - 'joao me (criou|gerou|programou)'") + 1
    lines.insert(at, f"      - '{pattern}'")
    path.write_text("\n".join(lines) + "\n")
    return at + 1


def test_a_card_pattern_that_backtracks_catastrophically_is_stopped_and_named(project, tmp_path):
    line = _card_with_pattern(project, "(a|aa)+$")  # 2^n ways to split n a's: a search would never end
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "Q1", "response": "Sou o Cláudio, " + "a" * 60 + "!"}) + "\n")
    card = ["--persona", project / "persona.yaml", "--suite", project / "suite.yaml", "--no-fluency"]
    started = time.monotonic()
    result = _run_limited("score", *card, "--responses", answers, "--out", tmp_path / "scores.json", timeout=60)
    _fails_cleanly(
        result, f"persona.yaml:{line}: forbidden_claims[0].patterns[5]: pattern '(a|aa)+$' took over 2 s on one text"
    )
    assert time.monotonic() - started < 30
    assert not (tmp_path / "scores.json").exists()


def test_a_nested_quantifier_in_a_card_pattern_scores_in_time(project, tmp_path):
    _card_with_pattern(project, "(a+)+$")  # Python's re takes 2^60 steps on the answer below
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "Q1", "response": "Sou o Cláudio, " + "a" * 60 + "!"}) + "\n")
    card = ["--persona", project / "persona.yaml", "--suite", project / "suite.yaml", "--no-fluency"]
    result = _run_limited("score", *card, "--responses", answers, "--out", tmp_path / "scores.json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "scores.json").is_file()
