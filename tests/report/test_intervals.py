"""One interval per run: report.md, report.html (its page context) and `molt compare` read the same
human-corrected answers and give the same 95% interval, the bootstrap `molt eval` writes into scores.json."""

from fake_runs import BAD, make_run, references, write_eval

from molting.evaluate.human_scores import set_human_score
from molting.evaluate.statistics import mean_ci
from molting.report.compare import compare_runs
from molting.report.html import run_context
from molting.report.markdown import _ci, build_report
from molting.report.run_record import read_run

LOSSES = [3.0, 2.5, 2.0, 1.5]


def test_the_interval_is_the_bootstrap_of_molt_eval():
    # A Student t interval of these totals would be [5.03, 10.47]; the percentile bootstrap is narrower.
    assert mean_ci([6, 8, 10, 7]) == [6.5, 9.25]


def test_markdown_html_and_compare_give_one_interval_for_a_run_with_human_scores(tmp_path):
    refs = references()
    run = make_run(tmp_path, "scored", {q: [refs[q], BAD, refs[q]] for q in refs}, LOSSES)
    other = make_run(tmp_path, "other", {q: [refs[q]] * 3 for q in refs}, LOSSES)
    eval_dir = run / "eval" / "final"
    set_human_score(eval_dir, "Q1#0", "D3", 0)  # a person is stricter than the detector on one answer
    set_human_score(eval_dir, "Q1#1", "D1", 2)  # and more lenient on another
    set_human_score(eval_dir, "Q2#2", "D5", 1)

    markdown = read_run(run).evals["final"].scores
    html = run_context(run)["evals"][0]
    compared = compare_runs([run, other])

    md_questions = {q["id"]: q["ci95"] for q in markdown["per_question"]}
    html_questions = {q.id: list(q.ci95) if q.ci95 else None for q in html.questions}
    compare_questions = {q["id"]: q["scores"][0]["ci95"] for q in compared["questions"]}
    assert md_questions["Q1"] is not None and md_questions["Q1"] != [10.0, 10.0]
    assert md_questions == html_questions == compare_questions

    assert markdown["average_ci95"] is not None
    assert markdown["average_ci95"] == list(html.average_ci95) == compared["rubric"]["average"][0]["ci95"]

    report = build_report(read_run(run))
    assert _ci(md_questions["Q1"]) in report and _ci(markdown["average_ci95"]) in report


def test_the_report_gives_the_compare_verdict_of_trained_against_base(tmp_path):
    refs = references()
    run = make_run(tmp_path, "improved", {q: [refs[q]] * 3 for q in refs}, LOSSES)
    write_eval(run, {q: [BAD] * 3 for q in refs}, eval_id="base")
    report = build_report(read_run(run))
    section = report.split("### Trained vs untrained base", 1)[1].split("###", 1)[0]
    assert "Verdict: **IMPROVEMENT**" in section
    assert "| **Average** |" in section and "| **IMPROVEMENT** |" in section
    # the HTML run page (report.html and molt serve) gives the same verdict, from the same numbers
    from molting.report.html import write_run_html

    page = write_run_html(run).read_text()
    assert 'Trained vs untrained base: <span class="v-IMPROVEMENT">IMPROVEMENT</span>' in page
    versus = run_context(run)["versus_base"]
    assert versus["verdict"] == "IMPROVEMENT" and len(versus["questions"]) == len(refs)
    assert all(q["verdict"] in ("IMPROVEMENT", "NO SIGNIFICANT CHANGE") for q in versus["questions"])

    # the same answers the other way round: the "trained" adapter is the one that says it is ChatGPT
    worse = make_run(tmp_path, "worse", {q: [BAD] * 3 for q in refs}, LOSSES)
    write_eval(worse, {q: [refs[q]] * 3 for q in refs}, eval_id="base")
    assert "Verdict: **REGRESSION**" in build_report(read_run(worse))
    assert run_context(worse)["versus_base"]["verdict"] == "REGRESSION"

    # one answer per question cannot give a verdict, however far apart the two averages are
    single = make_run(tmp_path, "single", {q: [refs[q]] for q in refs}, LOSSES)
    write_eval(single, {q: [BAD] for q in refs}, eval_id="base")
    assert "Verdict: **NO VERDICT (1 sample)**" in build_report(read_run(single))
    # a run evaluated once has no comparison to show on its page
    assert run_context(make_run(tmp_path, "alone", {q: [refs[q]] * 3 for q in refs}, LOSSES))["versus_base"] is None


def test_report_html_says_what_the_fluency_pass_read_or_why_it_was_skipped(tmp_path):
    """A run scored with the reference model has a fluency summary without a `skipped` key: report.html (rendered
    with StrictUndefined) must show it, not fail on the missing key, as it did at the end of a real Gemma run."""
    import json

    from molting.report.html import write_run_html

    refs = references()
    run = make_run(tmp_path, "read", {q: [refs[q]] * 3 for q in refs}, LOSSES)
    scores_path = run / "eval" / "final" / "scores.json"
    scores = json.loads(scores_path.read_text())
    summary = {"model": "packaged:gemma-3-270m", "mean_nll": 3.47, "mean_order_score": 0.49}
    summary |= {"thresholds": {"drift": 0.66, "salad": 0.66}, "calibrated_on": "labelled (163 answers)"}
    before_v2 = {k: v for k, v in summary.items() if k != "mean_order_score"} | {"mean_order_ratio": 0.51}
    for fluency, expected in (
        (summary, "mean order score 0.49"),
        (before_v2, "mean order ratio 0.51"),  # a run scored before the order score
        ({"skipped": "--no-fluency"}, "--no-fluency"),
    ):
        scores_path.write_text(json.dumps({**scores, "fluency": fluency}))
        assert expected in write_run_html(run).read_text()
        assert expected in build_report(read_run(run))
