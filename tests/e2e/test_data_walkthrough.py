"""The README's walkthrough, run for real: a ChatGPT data export → `molt data import` → `molt data curate`
→ `molt check` → `molt train` on builtin:tiny. The export is written here from the example persona's
conversations (each a ChatGPT message tree with an edited branch), plus one English conversation the
language filter must drop. Slow (it trains); `make test-slow` runs it. Also: `--help` of the data commands."""

import json
import shutil

import pytest
from conftest import EXAMPLE, FAST, run_molt, set_args


def chatgpt_export_from(data_path, target):
    conversations = []
    for i, line in enumerate(data_path.read_text().splitlines()):
        messages = json.loads(line)["messages"]
        mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        parent = "root"
        for j, m in enumerate(messages):
            nid = f"n{j}"
            mapping[nid] = {
                "id": nid,
                "message": {
                    "author": {"role": m["role"]},
                    "content": {"content_type": "text", "parts": [m["content"]]},
                },
                "parent": parent,
                "children": [],
            }
            mapping[parent]["children"].append(nid)
            if j == 0:  # an abandoned first draft of the question, on its own branch
                mapping["old"] = {
                    "id": "old",
                    "message": {"author": {"role": "user"}, "content": {"parts": ["RAMO-ABANDONADO"]}},
                    "parent": parent,
                    "children": [],
                }
                mapping[parent]["children"].append("old")
            parent = nid
        conversations.append({"id": f"c{i}", "create_time": 1767225600 + i, "mapping": mapping, "current_node": parent})
    english = {
        "root": {"id": "root", "message": None, "parent": None, "children": ["q"]},
        "q": {
            "message": {"author": {"role": "user"}, "content": {"parts": ["What is the weather like today?"]}},
            "parent": "root",
        },
        "a": {
            "message": {
                "author": {"role": "assistant"},
                "content": {"parts": ["It is sunny and warm, a good day to walk."]},
            },
            "parent": "q",
        },
    }
    conversations.append({"id": "en", "create_time": 1767225600, "mapping": english, "current_node": "a"})
    target.write_text(json.dumps(conversations, ensure_ascii=False))
    return len(conversations)


def test_data_commands_have_help():
    top = run_molt("data", "--help")
    assert top.returncode == 0
    for command in ("import", "distil", "curate"):
        assert command in top.stdout
        result = run_molt("data", command, "--help")
        assert result.returncode == 0 and "Usage: " in result.stdout and "Example:" in result.stdout, command


@pytest.mark.slow
def test_chat_export_to_trained_run(tmp_path):
    project = tmp_path / "persona"
    shutil.copytree(EXAMPLE, project)
    (project / "data.jsonl").unlink()  # the data will come from the export
    export = tmp_path / "conversations.json"
    n = chatgpt_export_from(EXAMPLE / "data.jsonl", export)
    config = project / "molt.yaml"
    tiny = ["--set", "base_model=builtin:tiny"]

    result = run_molt(
        *("data", "import", export, "--out", project / "imported.jsonl", "--language", "pt", "--config", config),
        *tiny,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == n and summary["skipped"] == {"language_en": 1}
    assert summary["examples_written"] == n - 1 and "RAMO-ABANDONADO" not in (project / "imported.jsonl").read_text()

    result = run_molt(
        *("data", "curate", project / "imported.jsonl", "--config", config, *tiny, "--out-dir", project / "curated")
    )
    assert result.returncode in (0, 1), result.stderr  # 1 when a suite question leaks; the table says which
    assert "facts no example teaches" in result.stdout

    data_set = ["--set", "data=curated/train.jsonl"]
    result = run_molt("check", config, *data_set, *set_args(FAST), "--runs-dir", tmp_path / "runs", "--name", "p")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_molt("train", config, *data_set, *set_args(FAST), "--runs-dir", tmp_path / "runs", "--name", "p")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "runs" / "p" / "adapter" / "adapter_model.safetensors").is_file()
