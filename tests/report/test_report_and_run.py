"""`molt report` and `molt run`: the report's sections, and the chain of every stage."""

import json
import shutil

import yaml
from conftest import EXAMPLE, FAST, run_molt, set_args
from fake_runs import make_run, references

from molting.evaluate.run import eval_run
from molting.report.markdown import build_report, write_report
from molting.report.run_record import read_run


def test_report_has_the_logs_sections(trained_run):
    eval_run(trained_run, "final", use_adapter=True, show_progress=False)
    eval_run(trained_run, "base", use_adapter=False, show_progress=False)
    text = write_report(trained_run).read_text()
    for heading in (
        "## Config",
        "## Prompt tokens",
        "## Loss",
        "## Rubric v2",
        "### Trained vs untrained base",
        "## Machine",
    ):
        assert heading in text, heading
    assert "| Base model | `builtin:tiny` |" in text
    assert "| max_length | 1024 |" in text
    assert "| Q1 Quem é o João? |" in text
    assert "template_tokens " in text and "/8" in text
    assert "Peak memory" in text
    png = (trained_run / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    final = json.loads((trained_run / "eval" / "final" / "scores.json").read_text())
    assert f"**{final['average']:.2f}/10**" in text


def test_report_of_an_empty_folder_is_a_user_error(tmp_path):
    result = run_molt("report", tmp_path)
    assert result.returncode == 2 and "nothing to report" in result.stderr


def test_molt_run_chains_every_stage(project, tmp_path):
    runs = tmp_path / "runs"
    result = run_molt(
        "run", project / "molt.yaml", *set_args(FAST + ["train.epochs=0.5"]), "--runs-dir", runs, "--name", "chain"
    )
    assert result.returncode == 0, result.stderr
    run = runs / "chain"
    for name in (
        "config.yaml",
        "manifest.json",
        "preflight.json",
        "train_log.jsonl",
        "report.md",
        "loss.png",
        "adapter/adapter_model.safetensors",
        "eval/base/scores.json",
        "eval/final/scores.json",
    ):
        assert (run / name).is_file(), name
    assert "[4/4] report" in result.stdout and "Trained vs untrained base" in (run / "report.md").read_text()


def test_model_output_in_the_report_is_text_not_html(trained_run):
    from conftest import EXAMPLE

    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.evaluate.rubric import score_responses
    from molting.io import write_json_atomic, write_jsonl_atomic

    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    rows = [{"id": "Q1", "response": "O João é dev.</s><script>alert(1)</script> | fim"}]
    write_jsonl_atomic(trained_run / "eval" / "crafted" / "responses.jsonl", rows)
    write_json_atomic(trained_run / "eval" / "crafted" / "scores.json", score_responses(persona, suite.by_id, rows))
    text = write_report(trained_run).read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "`template_tokens`: &lt;/s&gt;" in text


def test_suite_text_is_escaped_in_report_md(tmp_path):
    # a question is the suite author's text, and Markdown viewers render raw HTML: escaped in its cell
    project = tmp_path / "p"
    shutil.copytree(EXAMPLE, project)
    suite = yaml.safe_load((project / "suite.yaml").read_text(encoding="utf-8"))
    suite["questions"][0]["question"] = "Quem é <script>alert(1)</script> o João | e a Softtor?"
    (project / "suite.yaml").write_text(yaml.safe_dump(suite, allow_unicode=True), encoding="utf-8")
    refs = references()
    run = make_run(tmp_path, "esc", {q: [refs[q]] * 2 for q in refs}, [3.0, 2.0], (f"suite={project / 'suite.yaml'}",))
    report = build_report(read_run(run))
    assert "<script>" not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt; o João \\| e a Softtor?" in report
