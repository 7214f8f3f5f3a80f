"""report.html: self-contained, every answer with its scores and evidence marked, and
model output escaped everywhere. (A real browser opens it in test_dashboard.py.)"""

import re

from conftest import run_molt
from fake_runs import make_run, references

from molting.report.html import highlight, write_compare_html, write_run_html

HOSTILE = "Sou o Cláudio.</s> <script>alert('xss')</script> <img src=x onerror=\"window.__xss=1\"> fim."
LOSSES = [3.0, 2.5, 2.0, 1.5]


def hostile_answers() -> dict[str, list[str]]:
    refs = references()
    return {qid: [HOSTILE if qid == "Q1" else refs[qid]] for qid in refs}


def test_run_report_html_is_self_contained_and_escapes_model_output(tmp_path):
    run = make_run(tmp_path, "hostile", hostile_answers(), LOSSES)
    result = run_molt("report", run)
    assert result.returncode == 0, result.stderr
    assert (run / "report.md").is_file()
    html = (run / "report.html").read_text()
    # the answer is there, as text
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in html
    # and nothing of it is markup: the only <script> or <img> tags are none, and no inline handler exists
    assert "<script" not in html and not re.search(r"<img(?![^>]*class=\"loss\")", html)
    assert "onerror=" not in html.replace("onerror=&#34;", "")
    # the template token is marked as the evidence of the D4 cap, escaped inside the mark
    assert '<mark title="D4 template_tokens">&lt;/s&gt;</mark>' in html
    # self-contained: the loss curve is inline, nothing is fetched from elsewhere
    assert 'src="data:image/png;base64,' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "Loss at end of epoch 1" in html and "builtin:tiny" in html


def test_comparison_html_escapes_both_runs(tmp_path):
    a = make_run(tmp_path, "a", hostile_answers(), LOSSES)
    b = make_run(tmp_path, "b<b>", hostile_answers(), LOSSES)
    html = write_compare_html([a, b], tmp_path / "cmp.html").read_text()
    assert "<script" not in html and "<b>" not in html and "b&lt;b&gt;" in html
    assert html.count("&lt;script&gt;alert") == 2  # Q1's answer of each run
    assert "NO VERDICT (1 sample)" in html


def test_highlight_escapes_before_marking():
    evidence = [{"dim": "D1", "detector": "name_not_on_card", "detail": "Carla, <b>", "cap": 1}]
    out = str(highlight("a Carla <b> & Carla", evidence))
    mark = '<mark title="D1 name_not_on_card">'
    assert out == f"a {mark}Carla</mark> {mark}&lt;b&gt;</mark> &amp; {mark}Carla</mark>"
    missing = [{"dim": "D2", "detector": "missing_fact", "detail": "stack", "cap": 0}]
    assert "<mark" not in str(highlight("the stack is fine", missing))  # a fact id is not a quote


def test_write_run_html_of_a_folder_without_a_run_is_a_user_error(tmp_path):
    import pytest

    from molting.errors import UserError

    with pytest.raises(UserError, match="nothing to report"):
        write_run_html(tmp_path)
