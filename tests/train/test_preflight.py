"""The preflight: each check is fed the failing case it exists for and must catch it."""

import json

import pytest
from conftest import EXAMPLE, run_molt, set_args

from molting.config import load_run_config
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.train.preflight import check_steps, optimizer_steps, run_preflight

TINY = ["base_model=builtin:tiny"]


def _levels(report, check):
    return [(f["level"], f["message"]) for f in report["findings"] if f["check"] == check]


def test_every_bad_line_is_reported_with_file_and_line(tmp_path):
    data = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "Oi"}, {"role": "assistant", "content": "Olá!"}]}),
        '{"messages": [{"role": "user", "content": "Oi"},',  # 2: bad JSON
        json.dumps({"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}),  # 3
        json.dumps({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "y"}]}),  # 4
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Oi"},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "e aí?"},
                ]
            }
        ),  # 5: ends with the user
    ]
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as info:
        load_dataset(data, "sys")
    problems = info.value.problems
    assert any(p.startswith(f"{data}:2: not valid JSON") for p in problems)
    assert any(p.startswith(f"{data}:3: messages[0].role: unknown role 'bot'") for p in problems)
    assert any(p.startswith(f"{data}:4: messages[0].content: empty") for p in problems)
    assert any(p.startswith(f"{data}:5:") and "must end with the assistant" in p for p in problems)
    assert len(problems) == 4


def test_truncation_at_512_is_an_error(project):
    """A ~339-token prompt in every training example at max_length 512 leaves too little for the answers."""
    persona = (project / "persona.yaml").read_text()
    # Train with the full inference prompt by giving every line its own system message.
    import yaml

    card = yaml.safe_load(persona)
    long_prompt = card["system_prompts"]["inference"]
    rows = [json.loads(line) for line in (project / "data.jsonl").read_text().splitlines() if line.strip()]
    with (project / "data.jsonl").open("w") as f:
        for row in rows:
            row["messages"].insert(0, {"role": "system", "content": long_prompt})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    config = load_run_config(project / "molt.yaml", TINY + ["train.max_length=400"])
    report = run_preflight(config)
    assert not report["ok"]
    errors = [m for level, m in _levels(report, "token_budget") if level == "error"]
    assert errors and all("assistant tokens" in m and "data.jsonl:" in m for m in errors)
    assert report["token_budget"]["assistant_tokens_lost"] > 0
    lost = [e for e in report["examples"] if e["assistant_tokens_lost"]]
    assert len(lost) == len(errors)
    # an example can be cut only in its trailing template newline: truncated, but no answer lost
    assert report["token_budget"]["truncated_examples"] >= len(errors)
    # --allow-truncation turns it into a warning, and the run may go on
    allowed = run_preflight(config, allow_truncation=True)
    assert allowed["ok"]
    assert {level for level, _ in _levels(allowed, "token_budget")} == {"warning"}


def test_answer_budget_arithmetic(project):
    """The full inference prompt plus a question leaves max_length − prompt tokens for the answer."""
    config = load_run_config(project / "molt.yaml", TINY + ["train.max_length=400", "generation.max_new_tokens=256"])
    report = run_preflight(config, allow_truncation=True)
    ib = report["inference_budget"]
    assert ib["answer_budget"] == 400 - ib["inference_prompt_tokens"]
    assert ib["inference_prompt_tokens"] > ib["inference_system_prompt_tokens"] + ib["question_tokens"]
    warnings = [m for level, m in _levels(report, "inference_budget") if level == "warning"]
    assert warnings and "max_new_tokens is 256" in warnings[0]


def test_wrong_end_of_turn_token_is_caught(project):
    """`<|endoftext|>` ending the turns of a model whose EOS is `</s>`: it never learns to stop."""
    bad = (
        "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|endoftext|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    (project / "template.jinja").write_text(bad)
    config = load_run_config(project / "molt.yaml", TINY + ["chat_template=template.jinja"])
    report = run_preflight(config)
    assert not report["ok"]
    errors = [m for level, m in _levels(report, "template") if level == "error"]
    assert any("<|endoftext|>" in m and "not the end-of-turn token '</s>'" in m for m in errors), errors
    assert report["template"]["turns_not_ending_in_eos"] == report["template"]["turns_checked"]


def test_the_right_template_passes_the_round_trip(project):
    report = run_preflight(load_run_config(project / "molt.yaml", TINY))
    t = report["template"]
    assert t["turns_not_ending_in_eos"] == 0 and t["turns_checked"] >= report["dataset"]["conversations"]
    assert t["inference_prompt_is_training_prefix"] is True
    assert t["rendered_example"].count("</s>") >= 3


def test_fifty_steps_warns():
    """79 examples, batch 1, grad_accum 8, 5 epochs = 50 optimizer steps: too few."""
    steps = optimizer_steps(79, 1, 8, 5)
    assert steps["total_steps"] == 50
    findings = check_steps(steps, min_steps=100, warmup_steps=10)
    assert [f.level for f in findings] == ["warning"] and "only 50 optimizer steps" in findings[0].message
    assert optimizer_steps(79, 1, 4, 8)["total_steps"] == 160  # grad_accum 4 and 8 epochs: enough


def test_warmup_longer_than_training_warns():
    findings = check_steps(optimizer_steps(20, 4, 1, 1), min_steps=1, warmup_steps=10)
    assert any("warmup_steps (10) ≥ total steps (5)" in f.message for f in findings)


def test_molt_check_cli_writes_preflight_and_exits_1_on_errors(project, tmp_path):
    runs = tmp_path / "runs"
    ok = run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", runs, "--name", "good")
    assert ok.returncode == 0, ok.stderr
    assert "preflight passed" in ok.stdout
    assert json.loads((runs / "good" / "preflight.json").read_text())["ok"] is True
    bad = run_molt(
        "check", project / "molt.yaml", *set_args(TINY + ["train.max_length=64"]), "--runs-dir", runs, "--name", "bad"
    )
    assert bad.returncode == 1
    assert "preflight failed" in bad.stdout and "Traceback" not in bad.stderr
    assert json.loads((runs / "bad" / "preflight.json").read_text())["ok"] is False


def test_molt_check_leaves_a_trained_runs_preflight_as_it_was_trained(project, tmp_path):
    # the run's report reads preflight.json: a later check at other settings must not rewrite its history
    runs = tmp_path / "runs"
    assert run_molt("check", project / "molt.yaml", *set_args(TINY), "--runs-dir", runs, "--name", "r").returncode == 0
    (runs / "r" / "adapter").mkdir()  # what makes a run trained
    before = (runs / "r" / "preflight.json").read_bytes()
    again = run_molt(
        "check", project / "molt.yaml", *set_args(TINY + ["train.max_length=300"]), "--runs-dir", runs, "--name", "r"
    )
    assert "is a trained run, and its preflight.json is the check it was trained with" in " ".join(again.stdout.split())
    assert (runs / "r" / "preflight.json").read_bytes() == before


def test_example_default_steps_clear_the_floor():
    report = run_preflight(load_run_config(EXAMPLE / "molt.yaml", TINY))
    assert report["steps"]["total_steps"] >= 100
    assert not _levels(report, "steps")
