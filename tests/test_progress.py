"""molting.progress: plain progress lines where no terminal redraws a bar (CI logs, `| tee`, files)."""

import io
import re
import time

from molting.progress import bar, duration, step


def test_a_bar_in_a_log_prints_start_periodic_lines_with_an_estimate_and_the_end():
    out = io.StringIO()  # not a terminal
    with bar("training", 4, unit="steps", every_s=0.0, stream=out) as progress:
        for n in range(1, 5):
            time.sleep(0.01)
            progress.update(completed=n, note=f"loss {5 - n:.3f}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "training: 0/4 steps (0%), started"
    assert lines[1].startswith("training: 1/4 steps (25%), loss 4.000, ") and "about" in lines[1]
    assert lines[-1].startswith("training: 4/4 steps (100%), loss 1.000, ") and "left" not in lines[-1]
    assert len(lines) == 5  # the end is printed once, not again when the bar stops


def test_a_bar_in_a_log_stays_quiet_between_intervals():
    out = io.StringIO()
    with bar("answering", 100, every_s=3600, stream=out) as progress:
        for _ in range(99):
            progress.advance()
    lines = out.getvalue().splitlines()
    # the start, then nothing for 99 quick steps, then the stop says where it ended
    assert lines[0] == "answering: 0/100 (0%), started"
    assert len(lines) == 2 and lines[1].startswith("answering: 99/100 (99%), ")


def test_disabled_and_empty_bars_print_nothing():
    out = io.StringIO()
    with bar("x", 3, disable=True, stream=out) as progress:
        progress.advance(3)
    with bar("y", 0, stream=out) as progress:
        progress.advance(0)
    assert out.getvalue() == ""


def test_a_step_says_what_it_does_and_how_long_it_took(monkeypatch):
    out = io.StringIO()
    with step("loading the model", stream=out):
        pass
    assert out.getvalue() == "loading the model …\n"  # a fast step gets no second line
    monkeypatch.setattr("molting.progress.QUIET_BELOW_S", 0.0)
    out = io.StringIO()
    with step("converting", stream=out):
        time.sleep(0.01)
    assert re.fullmatch(r"converting …\nconverting: done in 0s\n", out.getvalue())


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (4.2, 62, 3599, 3725)] == ["4s", "1m02s", "59m59s", "1h02m"]


def test_advances_from_worker_threads_are_all_counted():
    # the judge and `molt data distil` advance the bar from a thread pool
    from concurrent.futures import ThreadPoolExecutor

    out = io.StringIO()
    with bar("judging", 400, every_s=3600, stream=out) as progress:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: progress.advance(), range(400)))
    lines = out.getvalue().splitlines()
    assert progress.completed == 400
    assert len(lines) == 2 and lines[1].startswith("judging: 400/400 (100%), ")


def test_a_bar_learns_its_total_late():
    # distil knows how many questions are left only once it has read its cache
    out = io.StringIO()
    with bar("asking", None, unit="questions", every_s=0.0, stream=out) as progress:
        progress.update(completed=0, total=3)
        progress.update(completed=3, total=3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "asking: 0 questions, started"
    assert lines[-1].startswith("asking: 3/3 questions (100%), ")
