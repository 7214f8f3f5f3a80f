"""`molt compare`: the table of settings and scores, verdicts from confidence intervals and from the paired
bootstrap of per-question differences, an honest NO VERDICT for one sample per question, human scores
overriding automatic ones, and the CLI outputs."""

import json

from conftest import run_molt
from fake_runs import BAD, make_run, read_json, references, write_eval

from molting.evaluate.human_scores import set_human_score
from molting.evaluate.statistics import mean_ci
from molting.io import write_json_atomic
from molting.report.compare import IMPROVEMENT, NO_CHANGE, REGRESSION, compare_runs, to_markdown, verdict_lines

LOSSES_A = [3.0, 2.6, 2.2, 2.0, 1.8, 1.6, 1.5, 1.4]  # two epochs, four logged steps each
LOSSES_B = [3.1, 2.9, 2.7, 2.6, 2.5, 2.4, 2.3, 2.25]


def answers(per_question: list[str]) -> dict[str, list[str]]:
    """The same list of answers (references and/or BAD) for every question; "REF" stands for the
    question's own reference answer."""
    refs = references()
    return {qid: [refs[qid] if a == "REF" else a for a in per_question] for qid in refs}


def test_one_sample_per_question_gives_no_verdict_and_the_table_marks_differences(tmp_path):
    a = make_run(tmp_path, "phase7", answers(["REF"]), LOSSES_A)
    b = make_run(tmp_path, "phase8", answers([BAD]), LOSSES_B, overrides=("train.learning_rate=5e-4",))
    result = compare_runs([a, b])
    assert result["runs"] == ["phase7", "phase8"]
    overall = result["overall"][0]
    assert overall["verdict"] == "NO VERDICT (1 sample)"
    assert overall["average_delta"] < -5  # the point estimate fell a lot, and still no verdict is claimed
    assert overall["paired"]["verdict"] == "NO VERDICT (1 sample)" and overall["paired"]["ci95"][1] < 0
    assert all(q["verdicts"] == ["NO VERDICT (1 sample)"] for q in result["questions"])
    assert "One sample per question cannot support a verdict" in result["notes"][0]
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["Learning rate"]["values"] == [0.002, 0.0005] and rows["Learning rate"]["differs"]
    assert rows["Base model"]["values"] == ["builtin:tiny", "builtin:tiny"] and not rows["Base model"]["differs"]
    assert rows["Loss at end of epoch 2"]["values"] == [1.4, 2.25]
    assert rows["Corrective examples"]["values"] == [15, 15]
    assert rows["System prompt (inference), tokens"]["values"][0] > rows["System prompt (train), tokens"]["values"][0]
    md = to_markdown(result)
    assert "| Learning rate | 0.002 | 0.0005 | ≠ |" in md
    assert "**VERDICT phase8 vs phase7: NO VERDICT (1 sample)" in md
    # the CLI: a terminal table, and --fail-on-regression does not fail on a verdict it cannot make
    cli = run_molt("compare", a, b, "--fail-on-regression")
    assert cli.returncode == 0, cli.stderr
    assert "NO VERDICT (1 sample)" in cli.stdout and "One sample per question cannot support a verdict" in cli.stdout


def test_several_samples_give_a_regression_and_the_cli_fails_on_it(tmp_path):
    a = make_run(tmp_path, "good", answers(["REF", "REF", "REF"]), LOSSES_A)
    b = make_run(tmp_path, "bad", answers([BAD, BAD, "REF"]), LOSSES_B)
    result = compare_runs([a, b])
    assert result["overall"][0]["verdict"] == REGRESSION and result["regression"]
    assert {q["verdicts"][0] for q in result["questions"]} == {NO_CHANGE}  # per question: 3 answers, a wide interval
    assert result["rubric"]["average"][1]["ci95"][1] < result["rubric"]["average"][0]["ci95"][0]
    assert result["questions"][0]["scores"][0]["samples"] == 3
    plot, html = tmp_path / "loss.png", tmp_path / "cmp.html"
    cli = run_molt("compare", a, b, "--json", "--fail-on-regression", "--plot", plot, "--html", html)
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout)["overall"][0]["verdict"] == REGRESSION
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "VERDICT bad vs good: REGRESSION" in html.read_text()
    md = run_molt("compare", a, b, "--md")
    assert md.returncode == 0 and "| Rubric average /10 | 10.00 [10.00, 10.00] |" in md.stdout


def test_improvement_and_no_change(tmp_path):
    worse = make_run(tmp_path, "worse", answers([BAD, BAD, BAD]), LOSSES_A)
    better = make_run(tmp_path, "better", answers(["REF", "REF", "REF"]), LOSSES_A)
    mixed = make_run(tmp_path, "mixed", answers(["REF", BAD, BAD]), LOSSES_A)
    shuffled = make_run(tmp_path, "shuffled", answers([BAD, "REF", BAD]), LOSSES_B)
    result = compare_runs([worse, better, mixed])
    # better: zero spread on both sides, intervals apart; mixed (one good answer in three): per question,
    # three answers cannot tell it from all bad
    assert result["overall"][0]["verdict"] == IMPROVEMENT
    assert all(q["verdicts"] == [IMPROVEMENT, NO_CHANGE] for q in result["questions"])
    same = compare_runs([mixed, shuffled])  # the same answers in another order: nothing changed
    assert same["overall"][0]["verdict"] == NO_CHANGE and same["overall"][0]["average_delta"] == 0
    assert same["overall"][0]["paired"] == {
        "questions": len(references()),
        "mean_delta": 0.0,
        "ci95": [0.0, 0.0],
        "p_value": 1.0,
        "verdict": NO_CHANGE,
    }


def summarised_run(tmp_path, name: str, means: list[float]):
    """A run whose scores.json summarises each question as `molt eval` does with three samples: its mean with
    a wide interval, and the average's interval bootstrapped over the question means."""
    run = make_run(tmp_path, name, answers(["REF", "REF", "REF"]), LOSSES_A)
    path = run / "eval" / "final" / "scores.json"
    scores = read_json(path)
    scores["per_question"] = [
        {
            "id": q,
            "samples": 3,
            "mean": m,
            "ci95": [m - 1.5, m + 1.5],
            "dims": {d: m / 5 for d in "D1 D2 D3 D4 D5".split()},
        }
        for q, m in zip(references(), means, strict=True)
    ]
    scores["average_ci95"] = mean_ci(means)
    write_json_atomic(path, scores)
    return run


def test_the_paired_test_finds_a_small_gain_on_every_question_that_the_intervals_miss(tmp_path):
    n = len(references())
    spread = [2.0 + 7.5 * i / (n - 1) for i in range(n)]  # easy and hard questions: wide intervals
    gains = [0.2, 0.5, 0.3, 0.4, 0.6, 0.25, 0.35, 0.45, 0.3, 0.5][:n]  # small, and on every question
    base = summarised_run(tmp_path, "base", spread)
    better = summarised_run(tmp_path, "better", [m + g for m, g in zip(spread, gains, strict=True)])
    result = compare_runs([base, better])
    overall = result["overall"][0]
    assert overall["verdict"] == NO_CHANGE  # the averages' intervals overlap
    paired = overall["paired"]
    assert paired["verdict"] == IMPROVEMENT and paired["questions"] == n
    assert paired["mean_delta"] == round(sum(gains) / n, 4)
    assert 0 < paired["ci95"][0] < paired["mean_delta"] < paired["ci95"][1] <= max(gains)
    assert paired["p_value"] < 0.01
    assert compare_runs([base, better])["overall"] == result["overall"]  # seeded: the same figures every time
    line = verdict_lines(result)[0]
    assert line.startswith("VERDICT better vs base: NO SIGNIFICANT CHANGE")
    assert f"Paired test over {n} questions: IMPROVEMENT (mean difference +{paired['mean_delta']:.2f}" in line
    assert f"**{line}**" in to_markdown(result)
    html = tmp_path / "cmp.html"
    cli = run_molt("compare", base, better, "--html", html, "--fail-on-regression")
    assert cli.returncode == 0, cli.stderr
    assert f"Paired test over {n} questions: IMPROVEMENT" in cli.stdout.replace("\n", " ")
    assert f"Paired test over {n} questions: IMPROVEMENT" in html.read_text()


def test_the_paired_test_finds_nothing_where_gains_and_losses_cancel(tmp_path):
    n = len(references())
    spread = [2.0 + 7.5 * i / (n - 1) for i in range(n)]
    changes = [0.5 if i % 2 else -0.5 for i in range(n)]
    base = summarised_run(tmp_path, "base", spread)
    other = summarised_run(tmp_path, "other", [m + c for m, c in zip(spread, changes, strict=True)])
    paired = compare_runs([base, other])["overall"][0]["paired"]
    assert paired["verdict"] == NO_CHANGE
    assert paired["ci95"][0] < 0 < paired["ci95"][1] and paired["p_value"] > 0.2


def test_the_scorers_own_intervals_are_used_when_present(tmp_path):
    """scores.json with one aggregated entry per question carrying samples and ci95, and average_ci95."""
    a = make_run(tmp_path, "a", answers(["REF"]), LOSSES_A)
    b = make_run(tmp_path, "b", answers(["REF"]), LOSSES_A)
    for run, lo, hi in ((a, 8.0, 9.0), (b, 6.0, 7.5)):
        path = run / "eval" / "final" / "scores.json"
        scores = read_json(path)
        for q in scores["questions"]:
            q.update({"samples": 5, "ci95": [lo, hi], "total": (lo + hi) / 2})
        scores["average_ci95"] = [lo, hi]
        scores.pop("per_question", None)  # this format summarises on the entries themselves
        write_json_atomic(path, scores)
    result = compare_runs([a, b])
    assert result["overall"][0]["verdict"] == REGRESSION
    assert result["rubric"]["average"][0]["ci95"] == [8.0, 9.0]
    assert all(q["verdicts"] == [REGRESSION] for q in result["questions"])
    assert result["facts"][0]["samples_per_question"] == 5


def test_per_question_summaries_are_used_and_one_sample_never_gets_a_verdict(tmp_path):
    """The sampling evaluator's format: one entry per answer with its answer_id, a `per_question` list
    (samples, mean, bootstrap ci95) and `average_ci95`, which exists even with one answer per question."""
    a = make_run(tmp_path, "a", answers(["REF", "REF"]), LOSSES_A)
    b = make_run(tmp_path, "b", answers(["REF", BAD]), LOSSES_A)
    for run, ci in ((a, [9.5, 10.0]), (b, [2.0, 3.0])):
        path = run / "eval" / "final" / "scores.json"
        scores = read_json(path)
        scores["per_question"] = [
            {"id": q, "samples": 2, "mean": sum(ci) / 2, "ci95": ci, "dims": {d: 1.0 for d in "D1 D2 D3 D4 D5".split()}}
            for q in references()
        ]
        scores["average_ci95"] = ci
        write_json_atomic(path, scores)
    result = compare_runs([a, b])
    assert result["questions"][0]["scores"][1]["ci95"] == [2.0, 3.0]  # the scorer's, not recomputed
    assert all(q["verdicts"] == [REGRESSION] for q in result["questions"])
    assert result["overall"][0]["verdict"] == REGRESSION

    one_a = make_run(tmp_path, "one_a", answers(["REF"]), LOSSES_A)
    one_b = make_run(tmp_path, "one_b", answers([BAD]), LOSSES_A)
    for run, ci in ((one_a, [9.5, 10.0]), (one_b, [2.0, 3.0])):  # an interval over questions, not answers
        path = run / "eval" / "final" / "scores.json"
        write_json_atomic(path, {**read_json(path), "average_ci95": ci})
    assert compare_runs([one_a, one_b])["overall"][0]["verdict"] == "NO VERDICT (1 sample)"


def test_human_scores_replace_automatic_ones(tmp_path):
    a = make_run(tmp_path, "a", answers(["REF"]), LOSSES_A)
    b = make_run(tmp_path, "b", answers(["REF"]), LOSSES_A)
    before = compare_runs([a, b])
    assert before["questions"][0]["scores"][1]["mean"] == 10
    for dim in ("D1", "D2"):
        set_human_score(b / "eval" / "final", "Q1#0", dim, 0)
    after = compare_runs([a, b])
    q1 = after["questions"][0]["scores"][1]
    assert q1["mean"] == 6 and q1["human"] == 1
    assert after["facts"][1]["human_scored_answers"] == 1
    assert after["rubric"]["average"][1]["mean"] == before["rubric"]["average"][1]["mean"] - 0.5


def test_compare_input_mistakes_are_user_errors(tmp_path):
    a = make_run(tmp_path, "a", answers(["REF"]), LOSSES_A)
    write_eval(a, answers(["REF"]), "base")
    result = run_molt("compare", a, tmp_path / "missing")
    assert result.returncode == 2 and "no such run directory" in result.stderr and "Traceback" not in result.stderr
    result = run_molt("compare", a, a, "--eval", "nope")
    assert result.returncode == 2 and "It has: final, base" in result.stderr


def test_help_of_compare_and_serve():
    for command, options in (
        ("compare", ("--eval", "--md", "--json", "--html", "--plot", "--fail-on-regression")),
        ("serve", ("--host", "--port", "--allow-remote")),
    ):
        result = run_molt(command, "--help")
        assert result.returncode == 0 and all(o in result.stdout for o in options), result.stdout


def test_a_question_a_server_left_unanswered_does_not_shift_the_answers(tmp_path):
    """--backend openai records an unanswered question in responses.jsonl but not in scores.json."""
    from molting.report.run_record import load_run

    run = make_run(tmp_path, "a", answers(["REF"]), LOSSES_A)
    path = run / "eval" / "final" / "responses.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    scores = read_json(run / "eval" / "final" / "scores.json")
    for entry in scores["questions"]:
        entry.pop("answer_id", None)  # the format before answer ids were added to entries
    write_json_atomic(run / "eval" / "final" / "scores.json", scores)
    unanswered = {"id": "Q1", "prompt": rows[0]["prompt"], "response": None, "error": "timeout"}
    path.write_text("".join(json.dumps(r) + "\n" for r in [unanswered, *rows]))
    record = load_run(run)
    assert [a.response for a in record.answers] == [r["response"] for r in rows]


def test_a_run_with_no_scored_answer_compares_without_a_verdict(tmp_path):
    refs = references()
    scored = make_run(tmp_path, "scored", {q: [refs[q]] * 3 for q in refs}, [3.0, 2.0])
    empty = make_run(tmp_path, "empty", {}, [3.0, 2.0])  # every answer missing: nothing scored
    result = compare_runs([scored, empty])
    assert result["overall"][0]["average_delta"] is None
    assert result["overall"][0]["verdict"].startswith("NO VERDICT")
    assert "no scored answers" in " ".join(verdict_lines(result))
    assert "empty" in to_markdown(result)
