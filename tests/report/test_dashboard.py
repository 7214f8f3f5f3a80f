"""`molt serve`: the dashboard served by a real uvicorn server on 127.0.0.1,
driven in Debian's Chromium (headless) by Playwright; concurrent writers on manual_scores.json; the CLI
refusing a non-loopback address without --allow-remote and printing the address with its token; every
request that is not the dashboard's own page refused (another Host, no token, another Origin, a body not
declared JSON), over raw HTTP and in Chromium from a page of another origin and a rebound name.

Chromium comes from the system (`apt-get install chromium`, which `make setup` and .ci/run do):
`playwright install` downloads browsers, which cannot be done here.
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_molt
from fake_runs import BAD, make_run, references

from molting.errors import UserError
from molting.report.dashboard import MAX_BODY_BYTES, check_host, create_app
from molting.report.dashboard_access import SECURITY_HEADERS, TOKEN_HEADER

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
    """The dashboard app under a real uvicorn server in a thread, on a free port of 127.0.0.1. `token_url` is
    the address `molt serve` prints (it lets a browser in); `post` writes as the scoring page does."""

    def __init__(self, runs: Path):
        import uvicorn

        self.port = free_port()
        app = create_app(runs, port=self.port)
        self.token, self.token_url = app.token, app.url
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
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

    def own_page_headers(self) -> dict[str, str]:
        """What the scoring page's fetch() sends besides the body."""
        return {"Content-Type": "application/json", "Origin": self.url, TOKEN_HEADER: self.token}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, str]:
        """(status, headers, text) of one raw HTTP request; `headers` are sent as given (Host included)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host="Host" in (headers or {}))
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return r.status, r.headers, r.read().decode()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        """A page as a browser that has the token gets it."""
        status, _, text = self.request("GET", path, headers={"Cookie": f"molt_token_{self.port}={self.token}"})
        return status, text

    def post(self, path: str, body: bytes) -> int:
        return self.request("POST", path, body, self.own_page_headers())[0]


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
        # evil.example resolves to 127.0.0.1, as a DNS-rebinding page's name does once it has rebound
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--host-resolver-rules=MAP evil.example 127.0.0.1"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.dialogs = []  # any alert() would land here: the hostile answer must never open one
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.console = []  # a script or style sheet the Content-Security-Policy blocked would be reported here
    page.on("console", lambda m: page.console.append(m.text))
    yield page
    context.close()


def manual_scores(runs_dir: Path, run: str) -> dict:
    return json.loads((runs_dir / run / "eval" / "final" / "manual_scores.json").read_text())


def test_runs_list_run_page_and_scoring_persist(server, runs_dir, page):
    page.goto(server.token_url)  # the address molt serve prints: its token sets a cookie, then "/" without it
    assert page.url == server.url + "/"
    rows = page.locator("#runs tr")
    assert rows.count() == 3  # header + two runs
    assert "builtin:tiny" in rows.nth(1).inner_text() and "10.00 (final)" in rows.nth(1).inner_text()
    assert "data.jsonl (127 conversations)" in rows.nth(1).inner_text()

    page.get_by_role("link", name="phase7").click()
    page.wait_for_url("**/runs/phase7")
    assert page.locator("h1").inner_text() == "molting report — phase7"
    # the style sheet is /static/dashboard.css, allowed by the page's Content-Security-Policy
    assert page.locator("header").evaluate("h => getComputedStyle(h).backgroundColor") == "rgb(31, 58, 77)"
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
    origin = pair["origin"]  # where the pair came from, and when (UTC)
    assert {k: origin[k] for k in ("run", "eval", "answer_id")} == {
        "run": "phase7",
        "eval": "final",
        "answer_id": "Q2#0",
    }
    assert abs(datetime.strptime(origin["saved"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)) < (
        timedelta(minutes=5)
    )
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
    assert not [m for m in page.console if "Content Security Policy" in m], page.console


def test_compare_page_and_hostile_answer_shown_as_text(server, page):
    page.goto(server.token_url)
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
            (server if (i + j) % 2 else second, q, d, (i + j) % 3)
            for i, q in enumerate(ids)
            for j, d in enumerate(("D1", "D2", "D3", "D4", "D5"))
        ]

        def post(job):
            to, q, d, v = job
            return to.post(
                "/api/runs/phase8/eval/final/score", json.dumps({"answer_id": q, "dim": d, "value": v}).encode()
            )

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, jobs)) == {200}
        answers = manual_scores(runs_dir, "phase8")["answers"]
        for _, q, d, v in jobs:
            assert answers[q]["dims"][d] == v
    finally:
        second.stop()


def oversized(server: Server, path: str, declared: bool) -> int:
    """The status of a POST whose body is over MAX_BODY_BYTES: declared in Content-Length (answered from the
    header, no body sent), or streamed as a chunk without a length (answered once one byte too many has arrived).
    The client then waits for the answer instead of sending on, as urllib would: a server that refuses a body
    it has not read closes the connection, and the client's next write races that close (broken pipe)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for key, value in server.own_page_headers().items():
            conn.putheader(key, value)
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
        return server.get(path)[0] if body is None else server.post(path, body)

    assert status("/runs/..%2F..%2Fetc") == 404
    assert status("/runs/nope") == 404
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q99", "dim": "D1", "value": 1}') == 404
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D9", "value": 1}') == 400
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D1", "value": 7}') == 400
    assert status("/api/runs/phase7/eval/final/score", b'{"answer_id": "Q1#0", "dim": "D1", "value": true}') == 400
    assert status("/api/runs/phase7/eval/final/score", b"not json") == 400
    assert status("/api/runs/phase7/eval/final/reject", b'{"answer_id": "Q1#0", "chosen": "  "}') == 400
    # bodies no client of the dashboard sends: too large, nested past Python's recursion limit, not Unicode
    assert oversized(server, "/api/runs/phase7/eval/final/score", declared=True) == 413
    assert oversized(server, "/api/runs/phase7/eval/final/score", declared=False) == 413
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
            return server.get(path) if body is None else (server.post(path, body), "")

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
        env={**os.environ, "COLUMNS": "60"},  # the address is printed whole, however narrow the terminal
    )
    try:
        printed = ""
        while "Ctrl-C" not in printed:
            line = proc.stdout.readline()
            assert line, f"molt serve stopped: {printed}{proc.stderr.read()}"
            printed += line
        address = next(w for w in printed.split() if w.startswith("http://"))
        assert address.startswith(f"http://127.0.0.1:{port}/?token=") and len(address.split("=", 1)[1]) >= 40
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "molt serve did not answer"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as no_token:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert no_token.value.code == 403 and "the address `molt serve` printed" in no_token.value.read().decode()
        browser_like = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())  # keeps the cookie
        with browser_like.open(address, timeout=5) as r:
            assert r.status == 200 and r.url == f"http://127.0.0.1:{port}/" and "phase7" in r.read().decode()
        with browser_like.open(f"http://127.0.0.1:{port}/runs/phase7", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(10)
    assert (EXAMPLE / "persona.yaml").is_file()


SCORE = "/api/runs/phase7/eval/final/score"
REJECT = "/api/runs/phase7/eval/final/reject"


def written(runs_dir: Path) -> tuple[bytes | None, ...]:
    """phase7's manual scores and preference pairs as they are on disk (None: no file)."""
    final = runs_dir / "phase7" / "eval" / "final"
    return tuple(
        p.read_bytes() if p.exists() else None for p in (final / "manual_scores.json", final / "preference_pairs.jsonl")
    )


def test_writes_refused_unless_from_the_dashboards_own_page_raw_http(server, runs_dir):
    """Every condition of a write, broken one at a time in an otherwise good request: 400 for a Host that is
    not the dashboard's, 403 for the origin and the token, 415 for a body that is not declared JSON; none
    writes anything. The same request with everything right is saved."""
    own, port = server.own_page_headers(), server.port
    score = json.dumps({"answer_id": "Q4#0", "dim": "D2", "value": 0}).encode()
    reject = json.dumps({"answer_id": "Q4#0", "chosen": "O Molting é um projeto de pesquisa."}).encode()
    without = lambda *keys: {k: v for k, v in own.items() if k not in keys}  # noqa: E731
    cases = {
        "a rebinding page's name": ({**own, "Host": f"evil.example:{port}"}, 400),
        "the dashboard's name at another port": ({**own, "Host": f"127.0.0.1:{port + 1}"}, 400),
        "a name that ends like the dashboard's": ({**own, "Host": f"127.0.0.1.evil.example:{port}"}, 400),
        "no Origin and no Sec-Fetch-Site": (without("Origin"), 403),
        "another site's Origin": ({**own, "Origin": "http://evil.example"}, 403),
        "another local port's Origin": ({**own, "Origin": f"http://127.0.0.1:{free_port()}"}, 403),
        "the same name over https": ({**own, "Origin": f"https://127.0.0.1:{port}"}, 403),
        "an opaque Origin": ({**own, "Origin": "null"}, 403),
        "Sec-Fetch-Site cross-site, no Origin": ({**without("Origin"), "Sec-Fetch-Site": "cross-site"}, 403),
        "Sec-Fetch-Site same-site, no Origin": ({**without("Origin"), "Sec-Fetch-Site": "same-site"}, 403),
        "no token": (without(TOKEN_HEADER), 403),
        "a wrong token": ({**own, TOKEN_HEADER: server.token[:-1] + "x"}, 403),
        "the token in the cookie only": ({**without(TOKEN_HEADER), "Cookie": f"molt_token_{port}={server.token}"}, 403),
        "text/plain (a no-cors fetch)": ({**own, "Content-Type": "text/plain"}, 415),
        "a form's body": ({**own, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        "no Content-Type": (without("Content-Type"), 415),
    }
    before = written(runs_dir)
    for case, (headers, expected) in cases.items():
        for path, body in ((SCORE, score), (REJECT, reject)):
            status, got, text = server.request("POST", path, body, headers)
            assert status == expected, (case, path, status, text)
            assert got["Content-Type"] == "application/json" and json.loads(text)["error"], case
            assert "Access-Control-Allow-Origin" not in got, case
    # a CORS preflight is refused too, and grants nothing
    status, got, _ = server.request(
        "OPTIONS",
        SCORE,
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-molt-token",
        },
    )
    assert status == 403 and not any(k.lower().startswith("access-control") for k in got)
    assert written(runs_dir) == before, "a refused request wrote something"

    assert server.request("POST", SCORE, score, own)[0] == 200
    same_origin_without_origin = {**without("Origin"), "Sec-Fetch-Site": "same-origin"}
    assert server.request("POST", SCORE, score, same_origin_without_origin)[0] == 200
    for name in ("localhost", "[::1]"):  # loopback names of the same server
        assert (
            server.request("POST", SCORE, score, {**own, "Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"})[
                0
            ]
            == 200
        )
    assert manual_scores(runs_dir, "phase7")["answers"]["Q4#0"]["dims"]["D2"] == 0


def test_pages_need_the_token_and_the_dashboards_host_raw_http(server, runs_dir):
    cookie = {"Cookie": f"molt_token_{server.port}={server.token}"}
    assert server.request("GET", "/runs/phase7", headers={**cookie, "Host": f"evil.example:{server.port}"})[0] == 400
    status, _, text = server.request("GET", f"/?token={server.token}", headers={"Host": f"evil.example:{server.port}"})
    assert status == 400 and "DNS-rebinding" in text and server.token not in text
    status, _, text = server.request("GET", "/runs/phase7")
    assert status == 403 and "the address `molt serve` printed" in text and "phase7" not in text.split("<main>")[1]
    assert server.request("GET", "/runs/phase7?token=" + server.token[::-1])[0] == 403
    assert server.request("GET", "/runs/phase7", headers={"Cookie": f"molt_token_{server.port}=guess"})[0] == 403
    assert server.request("GET", "/api/runs/phase7/eval/final/score", headers={})[0] == 403

    # the printed address: its token sets the cookie, and the page is reached again without it in the URL
    status, got, _ = server.request("GET", f"/compare?run=phase7&token={server.token}&run=phase8")
    assert status == 303 and got["location"] == "/compare?run=phase7&run=phase8"
    cookie_set = got["set-cookie"]
    assert cookie_set.startswith(f"molt_token_{server.port}={server.token};")
    assert "HttpOnly" in cookie_set and "SameSite=strict" in cookie_set and "Path=/" in cookie_set
    status, text = server.get("/runs/phase7/score/final")
    assert status == 200 and f'<meta name="molt-token" content="{server.token}">' in text  # for the page's script
    assert server.request("GET", "/", headers={**cookie, "Host": f"localhost:{server.port}"})[0] == 200
    # the token lives in the server's memory only, never in the runs folder
    assert not any(server.token in p.read_text(errors="replace") for p in runs_dir.rglob("*") if p.is_file())


def test_security_headers_on_every_answer_and_no_inline_script(server):
    cookie = {"Cookie": f"molt_token_{server.port}={server.token}"}
    answers = {
        "a page": server.request("GET", "/runs/phase7/score/final", headers=cookie),
        "the token redirect": server.request("GET", f"/?token={server.token}"),
        "a wrong host": server.request("GET", "/", headers={"Host": "evil.example"}),
        "no token": server.request("GET", "/"),
        "not found": server.request("GET", "/runs/nope", headers=cookie),
        "the style sheet": server.request("GET", "/static/dashboard.css"),
        "the script": server.request("GET", "/static/score.js"),
        "a refused write": server.request("POST", SCORE, b"{}", {"Content-Type": "text/plain"}),
        "a bad write": server.request("POST", SCORE, b"{}", server.own_page_headers()),
    }
    for what, (status, headers, _) in answers.items():
        for key, value in SECURITY_HEADERS.items():
            assert headers.get(key) == value, (what, status, key)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert answers["the style sheet"][1]["content-type"].startswith("text/css")
    assert answers["the script"][1]["content-type"].startswith("text/javascript")
    assert "X-Molt-Token" in answers["the script"][2]
    for path in ("/", "/runs/phase7", "/runs/phase7/score/final", "/compare?run=phase7&run=phase8", "/runs/nope"):
        html = server.get(path)[1]
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path  # no inline script, which the CSP would block
        assert not re.search(r"\sstyle=|<style", html), path  # nor inline style


ATTACK = """<!doctype html><title>cute cats</title>
<form id="form" method="post" enctype="text/plain" action="DASHBOARD/api/runs/phase7/eval/final/reject">
<input name='{"answer_id": "Q1#0", "chosen": "O João é meu filho.", "x": "' value='"}'></form>
<script>
const target = "DASHBOARD";
const score = JSON.stringify({answer_id: "Q1#0", dim: "D1", value: 2, note: "written by another site"});
const pair = JSON.stringify({answer_id: "Q1#0", chosen: "Sim, o João é meu filho."});
const results = {};
async function attempt(name, url, init) {
  try {
    const r = await fetch(url, init);
    results[name] = r.type === "opaque" ? "opaque" : r.status + " " + await r.text();
  } catch (e) {
    results[name] = "blocked: " + e.message;
  }
}
(async () => {
  const simple = {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}};
  await attempt("no-cors score", target + "/api/runs/phase7/eval/final/score", {...simple, body: score});
  await attempt("no-cors reject", target + "/api/runs/phase7/eval/final/reject", {...simple, body: pair});
  const json = {"Content-Type": "application/json", "X-Molt-Token": "guess"};
  await attempt("cors json", target + "/api/runs/phase7/eval/final/score",
    {method: "POST", credentials: "include", headers: json, body: score});
  await attempt("read a page", target + "/runs/phase7/score/final", {credentials: "include"});
  window.results = results;
})();
</script>"""


class AttackerSite:
    """A second local server, on another port of 127.0.0.1 (another origin), serving one page."""

    def __init__(self, html: str):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_page_of_another_origin_cannot_write_or_read_in_chromium(server, runs_dir, page):
    """The user has the dashboard open (the browser holds its cookie) and visits a page on another port:
    its no-cors fetches, its JSON fetch (a CORS preflight) and its form post all fail, and no file changes."""
    page.goto(server.token_url)
    before = written(runs_dir)
    attacker = AttackerSite(ATTACK.replace("DASHBOARD", server.url))
    try:
        page.goto(attacker.url)
        page.wait_for_function("() => window.results !== undefined", timeout=20_000)
        results = page.evaluate("() => window.results")
        # the simple (no-cors) requests go out, and their refusals come back opaque or blocked by the answer's
        # Cross-Origin-Resource-Policy; the JSON one stops at its CORS preflight; nothing is read
        assert all(r == "opaque" or r.startswith("blocked") for r in results.values()), results
        assert results["cors json"].startswith("blocked") and results["read a page"].startswith("blocked"), results
        with page.expect_navigation():
            page.locator("#form").evaluate("f => f.submit()")
        assert page.url == server.url + "/api/runs/phase7/eval/final/reject"
        assert "only the dashboard's own pages may write" in page.locator("body").inner_text()
    finally:
        attacker.stop()
    assert written(runs_dir) == before, "a page of another origin changed a score or a preference pair"


def test_a_rebinding_name_and_a_browser_without_the_token_get_nothing_in_chromium(server, page):
    rebound = f"http://evil.example:{server.port}"
    answer = page.goto(f"{rebound}/runs/phase7/score/final?token={server.token}")
    assert answer.status == 400 and "DNS-rebinding" in page.locator("body").inner_text()
    # the rebound page is same-origin with itself, so its own requests go out, and the Host check refuses them
    status = page.evaluate(
        """async (path) => (await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({answer_id: "Q1#0", dim: "D1", value: 2})})).status""",
        "/api/runs/phase7/eval/final/score",
    )
    assert status == 400
    answer = page.goto(server.url + "/runs/phase7")
    assert answer.status == 403 and "the address `molt serve` printed" in page.locator("body").inner_text()
    assert "molting report" not in page.content()


def test_a_right_answer_making_a_forbidden_claim_is_refused_in_the_page(server, runs_dir, page):
    page.goto(server.token_url)
    page.goto(server.url + "/runs/phase7/score/final")
    before = written(runs_dir)
    card = page.locator('.answer[data-answer="Q5#0"]')
    card.locator("details.reject summary").click()
    card.locator(".chosen-input").fill("Não, o João não é meu filho: é meu parceiro de trabalho.")
    card.locator(".reject-button").click()
    status = card.locator(".pair-status")
    status.filter(has_text="not saved").wait_for()
    assert "denies forbidden claim 'joao_family'" in status.inner_text()
    assert "a denial teaches it too" in status.inner_text()
    assert written(runs_dir) == before
