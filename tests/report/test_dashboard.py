"""`molt serve`: the dashboard served by a real uvicorn server on 127.0.0.1,
driven in Debian's Chromium (headless) by Playwright; concurrent writers on manual_scores.json; the CLI
refusing a non-loopback address without --allow-remote.

Chromium comes from the system (`apt-get install chromium`, which `make setup` and .ci/run do):
`playwright install` downloads browsers, which cannot be done here.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_molt
from fake_runs import BAD, make_run, references

from molting.errors import UserError
from molting.report.dashboard import MAX_BODY_BYTES, check_host, create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = "Sou o Cláudio. <script>alert('xss')</script><img src=x onerror=\"window.__xss=1; alert(2)\"> fim."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dashboard-runs")
    refs = references()
    make_run(root, "phase7", {q: [refs[q]] for q in refs}, [3.0, 2.6, 2.2, 1.9, 1.7, 1.5, 1.4, 1.3])
    hostile = {q: [HOSTILE if q == "Q1" else BAD] for q in refs}
    make_run(root, "phase8", hostile, [3.1, 2.9, 2.7, 2.5, 2.4, 2.3, 2.2, 2.1], ("train.learning_rate=5e-4",))
    return root


class Server:
    """The dashboard app under a real uvicorn server in a thread, on a free port of 127.0.0.1."""

    def __init__(self, runs: Path):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(create_app(runs), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(runs_dir):
    s = Server(runs_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (make setup does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.dialogs = []  # any alert() would land here: the hostile answer must never open one
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def manual_scores(runs_dir: Path, run: str) -> dict:
    return json.loads((runs_dir / run / "eval" / "final" / "manual_scores.json").read_text())


def test_runs_list_run_page_and_scoring_persist(server, runs_dir, page):
    page.goto(server.url + "/")
    rows = page.locator("#runs tr")
    assert rows.count() == 3  # header + two runs
    assert "builtin:tiny" in rows.nth(1).inner_text() and "10.00 (final)" in rows.nth(1).inner_text()
    assert "data.jsonl (127 conversations)" in rows.nth(1).inner_text()

    page.get_by_role("link", name="phase7").click()
    page.wait_for_url("**/runs/phase7")
    assert page.locator("h1").inner_text() == "molting report — phase7"
    assert page.locator("img.loss").evaluate("img => img.naturalWidth") > 100  # the loss curve decoded
    assert "Loss at end of epoch 2" in page.locator("table.facts").inner_text()
    assert "10.00/10" in page.locator("table.scores").inner_text()

    page.locator("a.score-link").first.click()
    page.wait_for_url("**/runs/phase7/score/final")
    card = page.locator('.answer[data-answer="Q1#0"]')
    card.locator('select[data-dim="D1"]').select_option("0")
    card.locator(".scorer .status").filter(has_text="saved").wait_for()
    assert manual_scores(runs_dir, "phase7")["answers"]["Q1#0"]["dims"] == {"D1": 0}
    card.locator(".note-input").fill("names João as its father")
    card.locator(".note-input").blur()
    deadline = time.monotonic() + 10
    while manual_scores(runs_dir, "phase7")["answers"]["Q1#0"].get("note") != "names João as its father":
        assert time.monotonic() < deadline, "the note was not saved"
        time.sleep(0.1)

    page.reload()
    card = page.locator('.answer[data-answer="Q1#0"]')
    assert card.locator('select[data-dim="D1"]').input_value() == "0"
    assert card.locator(".note-input").input_value() == "names João as its father"
    assert "8/10" in card.locator(".q").inner_text()  # the human 0 replaced the automatic 2
    saved = manual_scores(runs_dir, "phase7")
    assert saved["version"] == 1 and saved["answers"]["Q1#0"]["updated"].endswith("Z")  # the sheet's format too

    # reject Q2 and write the right answer: a preference pair in TRL's conversational format
    card = page.locator('.answer[data-answer="Q2#0"]')
    card.locator("details.reject summary").click()
    card.locator(".chosen-input").fill("O Molting é uma pesquisa sobre portabilidade de personalidade.")
    card.locator(".reject-button").click()
    card.locator(".pair-status").filter(has_text="saved").wait_for()
    lines = (runs_dir / "phase7" / "eval" / "final" / "preference_pairs.jsonl").read_text().splitlines()
    pair = json.loads(lines[0])
    assert len(lines) == 1 and pair["id"] == "phase7/final/Q2#0" and pair["source"] == "dashboard"
    assert pair["prompt"][0]["role"] == "system" and "Cláudio" in pair["prompt"][0]["content"]
    assert pair["prompt"][1] == {"role": "user", "content": "O que é o Molting?"}
    assert pair["chosen"][0]["content"].startswith("O Molting é uma pesquisa")
    assert pair["rejected"][0]["content"] == references()["Q2"]
    assert page.dialogs == []

    # a note typed just before leaving the page (before its 0.4 s save) is still saved
    page.locator('.answer[data-answer="Q3#0"] .note-input').fill("typed just before closing")
    page.goto("about:blank")
    deadline = time.monotonic() + 10
    while manual_scores(runs_dir, "phase7")["answers"].get("Q3#0", {}).get("note") != "typed just before closing":
        assert time.monotonic() < deadline, "the last note was lost when the page closed"
        time.sleep(0.1)


def test_compare_page_and_hostile_answer_shown_as_text(server, page):
    page.goto(server.url + "/")
    page.get_by_label("compare phase7").check()
    page.get_by_label("compare phase8").check()
    page.get_by_role("button", name="Compare selected runs").click()
    page.wait_for_url("**/compare?**")
    assert page.locator("h1").inner_text() == "Comparison: phase7 → phase8"
    assert "VERDICT phase8 vs phase7: NO VERDICT (1 sample)" in page.locator(".verdict").inner_text()
    assert "One sample per question cannot support a verdict" in page.locator(".note").first.inner_text()
    differs = page.locator("table.facts tr.differs").all_inner_texts()
    assert any(t.startswith("Learning rate") for t in differs)

    # the hostile answer: its characters are on the page as text, and nothing of it ran
    for url in (page.url, server.url + "/runs/phase8", server.url + "/runs/phase8/score/final"):
        page.goto(url)
        answer = page.locator(".answer .text", has_text="<script>alert('xss')</script>")
        assert answer.count() >= 1 and answer.first.is_visible()
        assert "<img src=x onerror=" in answer.first.inner_text()
        assert page.locator(".answer script, .answer img").count() == 0
        assert page.evaluate("() => window.__xss") is None
    assert page.dialogs == []


def test_report_html_opened_in_the_browser_runs_nothing(runs_dir, page, tmp_path):
    from molting.report.html import write_run_html

    report = write_run_html(runs_dir / "phase8")
    page.goto(report.as_uri())
    assert "<script>alert('xss')</script>" in page.locator(".answer .text").first.inner_text()
    assert page.locator("script").count() == 0 and page.locator(".answer img").count() == 0
    assert page.evaluate("() => window.__xss") is None and page.dialogs == []


def test_two_writers_never_lose_or_corrupt_scores(server, runs_dir):
    """Two servers on the same runs (and several requests at once on each) score every dimension of
    every answer of phase8; every change must be in the file, which must stay valid JSON."""
    second = Server(runs_dir)
    try:
        ids = [f"{q}#0" for q in references()]
        # every (answer, dimension) once, alternating between the two servers
        jobs = [
            (server.url if (i + j) % 2 else second.url, q, d, (i + j) % 3)
            for i, q in enumerate(ids)
            for j, d in enumerate(("D1", "D2", "D3", "D4", "D5"))
        ]

        def post(job):
            url, q, d, v = job
            body = json.dumps({"answer_id": q, "dim": d, "value": v}).encode()
            req = urllib.request.Request(
                f"{url}/api/runs/phase8/eval/final/score", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, jobs)) == {200}
        answers = manual_scores(runs_dir, "phase8")["answers"]
        for _, q, d, v in jobs:
            assert answers[q]["dims"][d] == v
    finally:
        second.stop()


def oversized(url: str, path: str, declared: bool) -> int:
    """The status of a POST whose body is over MAX_BODY_BYTES: declared in Content-Length (answered from the
    header, no body sent), or streamed as a chunk without a length (answered once one byte too many has arrived).
    The client then waits for the answer instead of sending on, as urllib would: a server that refuses a body
    it has not read closes the connection, and the client's next write races that close (broken pipe)."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        if declared:
            conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
            conn.endheaders()
        else:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            chunk = b'{"note": "' + b"x" * (MAX_BODY_BYTES - 9)  # MAX_BODY_BYTES + 1 bytes
            conn.send(b"%x\r\n%s" % (len(chunk), chunk))  # not even the chunk's closing CRLF: the server reads all
        return conn.getresponse().status
    finally:
        conn.close()


def test_bad_requests_are_refused(server):
    def status(path: str, body: bytes | None = None) -> int:
        req = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("/runs/..%2F..%2Fetc") == 404
    assert status("/runs/nope") == 404
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q99", "dim": "D1", "value": 1}') == 404
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D9", "value": 1}') == 400
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D1", "value": 7}') == 400
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D1", "value": true}') == 400
    assert status("/api/runs/phase7/eval/final/score", b"not json") == 400
    assert status("/api/runs/phase7/eval/final/reject", b'{"answer_id": "Q1#0", "chosen": "  "}') == 400
    # bodies no client of the dashboard sends: too large, nested past Python's recursion limit, not Unicode
    assert oversized(server.url, "/api/runs/phase7/eval/final/score", declared=True) == 413
    assert oversized(server.url, "/api/runs/phase7/eval/final/score", declared=False) == 413
    assert status("/api/runs/phase7/eval/final/score", b"[" * 100_000) == 400
    lone = b'{"answer_id": "Q1#0", "dim": "D1", "value": 1, "note": "\\ud800"}'
    assert status("/api/runs/phase7/eval/final/score", lone) == 400
    long_note = json.dumps({"answer_id": "Q1#0", "dim": "D1", "value": 1, "note": "n" * 20_000}).encode()
    assert status("/api/runs/phase7/eval/final/score", long_note) == 400


def test_no_request_reaches_a_folder_outside_runs_dir(tmp_path):
    refs = references()
    outside = make_run(tmp_path / "elsewhere", "secret", {q: ["SEGREDO de fora"] for q in refs}, [3.0, 2.0])
    runs = tmp_path / "runs"
    make_run(runs, "a", {q: [refs[q]] for q in refs}, [3.0, 2.0])
    make_run(runs, "b", {q: [BAD] for q in refs}, [3.0, 2.0])
    (runs / "escape").symlink_to(outside, target_is_directory=True)  # a run folder that is a link outside
    make_run(runs, "c", {q: [refs[q]] for q in refs}, [3.0, 2.0])
    shutil.rmtree(runs / "c" / "eval" / "final")
    (runs / "c" / "eval" / "final").symlink_to(outside / "eval" / "final", target_is_directory=True)
    (runs / "broken").mkdir()
    (runs / "broken" / "config.yaml").write_text("just a line of text\n")  # YAML, but not a mapping
    server = Server(runs)
    try:

        def get(path: str, body: bytes | None = None) -> tuple[int, str]:
            req = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/compare?run=a&run=b")[0] == 200
        for eval_param in (str(outside / "eval" / "final"), "../../elsewhere/secret/eval/final", "..", "nope"):
            status, text = get("/compare?run=a&run=b&eval=" + urllib.parse.quote(eval_param, safe=""))
            assert status == 404 and "SEGREDO" not in text, eval_param
        status, listing = get("/")
        assert status == 200 and "/runs/a" in listing and "/runs/escape" not in listing
        assert "/runs/broken" in listing and "expected the run&#39;s settings (a mapping)" in listing  # one broken
        assert get("/runs/escape")[0] == 404
        assert get("/runs/c/score/final")[0] == 404
        score = b'{"answer_id": "Q1", "dim": "D1", "value": 0}'
        assert get("/api/runs/escape/eval/final/score", score)[0] == 404
        assert get("/api/runs/c/eval/final/score", score)[0] == 404
        assert not (outside / "eval" / "final" / "manual_scores.json").exists(), "a write went outside RUNS_DIR"
    finally:
        server.stop()


def test_molt_serve_cli_binds_loopback_and_refuses_other_hosts_without_the_flag(runs_dir):
    refused = run_molt("serve", runs_dir, "--host", "0.0.0.0")
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    with pytest.raises(UserError):
        check_host("192.168.1.5", allow_remote=False)
    assert "WARNING" in check_host("192.168.1.5", allow_remote=True) and check_host("127.0.0.1", False) is None

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "molting", "serve", str(runs_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200 and "phase7" in r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "molt serve did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert (EXAMPLE / "persona.yaml").is_file()
