"""`molt init`: a commented project whose placeholders `molt check` names until filled."""

import json
import re

import yaml
from conftest import run_molt, set_args


def test_init_then_fill_then_check(tmp_path):
    project = tmp_path / "mine"
    result = run_molt("init", project)
    assert result.returncode == 0, result.stderr
    for name in ("molt.yaml", "persona.yaml", "data.jsonl", "suite.yaml"):
        assert (project / name).is_file()
    assert (project / "molt.yaml").read_text().startswith("# Run with: molt run molt.yaml")
    # every field is commented
    assert (project / "persona.yaml").read_text().count("#") >= 10

    unfilled = run_molt(
        "check", project / "molt.yaml", *set_args(["base_model=builtin:tiny"]), "--runs-dir", tmp_path / "runs"
    )
    assert unfilled.returncode == 2 and "placeholder not filled in" in unfilled.stderr
    assert "persona.yaml:" in unfilled.stderr

    # Fill every placeholder the way a user would: real text, valid regexes, real conversations.
    for name in ("persona.yaml", "suite.yaml", "data.jsonl"):
        path = project / name
        text = path.read_text()
        text = re.sub(r"TODO_[a-z_]+", "ada", text)
        text = re.sub(r"TODO: [^\"\n]*", "Ada is a helpful persona who answers in short sentences", text)
        path.write_text(text)
    card = yaml.safe_load((project / "persona.yaml").read_text())
    assert card["facts"][0]["shows"] == ["ada"]
    filled = run_molt(
        "check",
        project / "molt.yaml",
        *set_args(["base_model=builtin:tiny"]),
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "mine",
    )
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert "preflight passed" in filled.stdout


def test_init_never_overwrites(tmp_path):
    assert run_molt("init", tmp_path / "p").returncode == 0
    (tmp_path / "p" / "persona.yaml").write_text("name: mine\n")
    again = run_molt("init", tmp_path / "p")
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert (tmp_path / "p" / "persona.yaml").read_text() == "name: mine\n"


def test_text_that_mentions_todo_is_not_a_placeholder(tmp_path, project):
    """Only a value that starts with molt init's marker is unfilled; real conversations about code (which
    often say TODO) are the user's data and must load."""
    from molting.card.persona import load_persona
    from molting.data.dataset import load_dataset
    from molting.yaml_source import is_placeholder

    assert is_placeholder("TODO: the answer") and is_placeholder("  TODO_regex") and is_placeholder("TODO")
    assert not is_placeholder("Deixei um TODO no NestJS para o João") and not is_placeholder("TODOS os dias")
    data = tmp_path / "data.jsonl"
    code = "Deixei um `// TODO: validar o CPF` no service do NestJS; o João revisa amanhã."
    messages = [{"role": "user", "content": "E o CPF?"}, {"role": "assistant", "content": code}]
    data.write_text(json.dumps({"messages": messages}) + "\n")
    persona = load_persona(project / "persona.yaml")
    (conversation,) = load_dataset(data, persona.system_prompts.train)
    assert conversation.messages[-1]["content"] == code
