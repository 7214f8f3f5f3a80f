"""eval_data: the held-out loss during SFT, from the preflight to train_log.jsonl, loss.png, report.md, report.html
and `molt compare`. One real training on builtin:tiny (20 steps) with a held-out file of three conversations."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE, FAST, run_molt, set_args
from fake_runs import make_run, references, write_eval

from molting.card.persona import load_persona
from molting.config import load_run_config
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.evaluate.run import assistant_token_loss
from molting.models.base_model import load_model, load_tokenizer
from molting.models.chat_format import tokenize_conversation

TRAIN_LINES = 40  # 10 optimizer steps per epoch at batch 4
HELD_OUT_LINES = 3  # the example's last three conversations: one held-out batch
HELD_OUT = ["eval_data=held_out.jsonl", "data=train.jsonl"]


def split_project(root: Path) -> Path:
    """The example project with data.jsonl split into train.jsonl (its first 40 lines) and held_out.jsonl
    (its last 3), as `molt data curate` would leave them."""
    project = root / "claudio"
    shutil.copytree(EXAMPLE, project)
    lines = (EXAMPLE / "data.jsonl").read_text(encoding="utf-8").splitlines()
    (project / "train.jsonl").write_text("\n".join(lines[:TRAIN_LINES]) + "\n", encoding="utf-8")
    (project / "held_out.jsonl").write_text("\n".join(lines[-HELD_OUT_LINES:]) + "\n", encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory, molting_cache) -> Path:
    from molting.train.sft import train_run

    project = split_project(tmp_path_factory.mktemp("held-out"))
    config = load_run_config(project / "molt.yaml", FAST + HELD_OUT + ["train.epochs=2", "train.eval_steps=7"])
    run_dir = project.parent / "runs" / "held-out"
    train_run(config, run_dir, show_progress=False)
    return run_dir


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_eval_loss_lines_at_every_eval_steps_and_the_last_step(held_out_run):
    log = read_log(held_out_run)
    held_out = [r for r in log if "eval_loss" in r]
    assert [r["step"] for r in held_out] == [7, 14, 20]  # every 7 steps, and the last of 20
    assert all(math.isfinite(r["eval_loss"]) and r["eval_loss"] > 0 for r in held_out)
    assert all("loss" not in r for r in held_out)  # a line of its own: the training-loss lines stay as they were
    assert [r["step"] for r in log if "loss" in r] == [1, 5, 10, 15, 20]

    preflight = json.loads((held_out_run / "preflight.json").read_text())
    assert preflight["eval_data"]["conversations"] == HELD_OUT_LINES
    assert preflight["eval_data"]["eval_steps"] == 7 and preflight["eval_data"]["evaluations"] == 3
    manifest = json.loads((held_out_run / "manifest.json").read_text())
    summary = manifest["train"]["eval_loss"]
    assert summary["evaluations"] == 3 and summary["final"] == held_out[-1]["eval_loss"]
    assert summary["best"] == min(r["eval_loss"] for r in held_out)
    assert manifest["train"]["final_loss"] == [r for r in log if "loss" in r][-1]["loss"]
    assert [e["end_eval_loss"] for e in manifest["train"]["loss_by_epoch"]] == [
        held_out[0]["eval_loss"],  # step 7 is epoch 0.7: the last held-out loss of epoch 1
        held_out[-1]["eval_loss"],
    ]
    assert manifest["inputs"]["eval_data"]["path"].endswith("held_out.jsonl")


def test_eval_loss_is_the_loss_on_the_assistant_tokens_only(held_out_run):
    """The last held-out loss is computed by the trained adapter: recomputed here over the held-out
    conversations' assistant tokens it matches, and over every token it would not."""
    from peft import PeftModel

    manifest = json.loads((held_out_run / "manifest.json").read_text())
    final = manifest["train"]["eval_loss"]["final"]
    config = load_run_config(held_out_run / "config.yaml")
    conversations = load_dataset(config.eval_data, load_persona(config.persona).system_prompts.train)
    tokenizer = load_tokenizer("builtin:tiny")
    model = PeftModel.from_pretrained(load_model("builtin:tiny"), str(held_out_run / "adapter"))
    model.eval()
    bf16 = manifest["train"]["mixed_precision"] == "bf16"  # as the trainer ran it
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        assistant_only = assistant_token_loss(model, tokenizer, conversations)
        every_token = 0.0, 0
        for conv in conversations:  # the same conversations with nothing masked
            ids = torch.tensor([tokenize_conversation(tokenizer, conv.messages).input_ids])
            with torch.no_grad():
                loss = model(input_ids=ids, labels=ids).loss.item()
            every_token = every_token[0] + loss * (ids.shape[1] - 1), every_token[1] + ids.shape[1] - 1
    whole = every_token[0] / every_token[1]
    tolerance = 0.01  # rounding to 4 places, and bf16 autocast in both (they agreed to 1e-4 when written)
    assert abs(final - assistant_only) < tolerance, (final, assistant_only, whole)
    assert abs(final - whole) > 5 * tolerance, (final, assistant_only, whole)


ORANGE = (255, 127, 14)  # matplotlib's second colour: the held-out line


def orange_pixels(png: Path) -> int:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return int((np.abs(pixels - np.array(ORANGE)).max(axis=-1) < 30).sum())


def test_report_md_loss_png_and_report_html_show_the_held_out_loss(held_out_run, tmp_path):
    from molting.report.html import write_run_html
    from molting.report.markdown import plot_loss, write_report

    write_report(held_out_run)
    report = (held_out_run / "report.md").read_text()
    manifest = json.loads((held_out_run / "manifest.json").read_text())
    summary = manifest["train"]["eval_loss"]
    assert "| Epoch | Mean loss | Loss at end | Held-out loss at end |" in report
    assert "Held-out loss (the assistant tokens of `held_out.jsonl`, not trained on; 3 evaluations)" in report
    assert f"final {summary['final']}, lowest {summary['best']} at step {summary['best_step']}" in report
    assert orange_pixels(held_out_run / "loss.png") > 50
    without = tmp_path / "without.png"
    plot_loss([r for r in read_log(held_out_run) if "eval_loss" not in r], without, "no eval_data")
    assert orange_pixels(without) == 0  # the check above can fail: a plot without the line has no orange

    write_run_html(held_out_run)
    html = (held_out_run / "report.html").read_text()
    assert "Final held-out loss" in html and "Held-out loss at end of epoch 2" in html


def test_compare_shows_the_held_out_loss_of_the_run_that_has_one(held_out_run, tmp_path):
    from molting.report.compare import compare_runs, to_markdown

    refs = {qid: [text] for qid, text in references().items()}
    write_eval(held_out_run, refs)
    other = make_run(tmp_path, "no-held-out", refs, [3.0, 2.5, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3])
    result = compare_runs([other, held_out_run])
    rows = {r["metric"]: r["values"] for r in result["rows"]}
    summary = json.loads((held_out_run / "manifest.json").read_text())["train"]["eval_loss"]
    assert rows["Final held-out loss"] == [None, summary["final"]]
    assert rows["Lowest held-out loss"] == [None, summary["best"]]
    assert rows["Held-out set (eval_data)"] == [None, "held_out.jsonl"]
    assert rows["Held-out loss at end of epoch 2"] == [None, summary["final"]]
    assert "| Final held-out loss | – |" in to_markdown(result)


def test_held_out_preflight_defaults_to_once_per_epoch_and_flags_overlap(tmp_path):
    from molting.train.preflight import run_preflight

    project = split_project(tmp_path)
    lines = (project / "held_out.jsonl").read_text().splitlines()
    first_training_line = (project / "train.jsonl").read_text().splitlines()[0]
    (project / "held_out.jsonl").write_text("\n".join([*lines, first_training_line]) + "\n")
    report = run_preflight(load_run_config(project / "molt.yaml", FAST + HELD_OUT + ["train.epochs=3"]))
    held_out = report["eval_data"]
    assert report["steps"]["steps_per_epoch"] == 10
    assert held_out["eval_steps"] == 10 and held_out["evaluations"] == 3  # steps 10, 20, 30
    assert held_out["conversations"] == 4 and held_out["also_in_training"] == 1
    warnings = [f["message"] for f in report["findings"] if f["level"] == "warning" and f["check"] == "eval_data"]
    assert any(f"held_out.jsonl:4: the same conversation as {project / 'train.jsonl'}:1" in m for m in warnings)
    assert report["ok"]

    # a held-out answer cut by max_length only shortens what the loss measures: a warning, not an error
    report = run_preflight(
        load_run_config(project / "molt.yaml", FAST + HELD_OUT + ["train.max_length=96"]), allow_truncation=True
    )
    cut = [f for f in report["findings"] if f["check"] == "eval_data" and "max_length 96" in f["message"]]
    assert cut and all(f["level"] == "warning" for f in cut)
    assert report["eval_data"]["token_budget"]["assistant_tokens_lost"] > 0


def test_a_bad_eval_file_is_named_with_its_line_by_molt_check(tmp_path):
    project = split_project(tmp_path)
    lines = (project / "held_out.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"messages": [{"role": "user", "content": "Oi?"}]})  # no answer
    (project / "held_out.jsonl").write_text("\n".join(lines) + "\n")
    result = run_molt("check", project / "molt.yaml", *set_args(FAST + HELD_OUT))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{project / 'held_out.jsonl'}:2: the conversation ends with a 'user' message" in result.stderr
    assert "Traceback" not in result.stderr

    missing = run_molt("check", project / "molt.yaml", *set_args(FAST + ["eval_data=nowhere.jsonl"]))
    assert missing.returncode == 2
    assert "nowhere.jsonl: file not found. Check `eval_data` in molt.yaml" in missing.stderr


def test_eval_data_with_orpo_and_a_bad_eval_steps_are_config_errors(tmp_path):
    project = split_project(tmp_path)
    config = project / "molt.yaml"
    config.write_text(config.read_text() + "eval_data: held_out.jsonl\n")
    line = len(config.read_text().splitlines())
    with pytest.raises(UserError) as error:
        load_run_config(config, ["train.method=orpo", "preference_data=pairs.jsonl"])
    assert f"{config}:{line}: eval_data: train.method orpo" in str(error.value)
    with pytest.raises(UserError, match="eval_steps must be at least 1"):
        load_run_config(config, ["train.eval_steps=0"])
