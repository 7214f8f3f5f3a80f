"""Screenshots of the dashboard for the README: `python docs/dashboard_screenshot.py RUNS_DIR RUN [RUN_B]`.

Serves a copy of RUNS_DIR with `molt serve`'s app on a free port of 127.0.0.1 and photographs, with
Debian's Chromium driven by Playwright, the runs list (docs/dashboard-runs.png), the scoring page of RUN's
final evaluation with one answer scored by hand as a person would (docs/dashboard-score.png) and, given
RUN_B, the comparison of RUN and RUN_B (docs/dashboard-compare.png). RUNS_DIR itself is not changed.
"""

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from molting.report.dashboard import create_app

DOCS = Path(__file__).resolve().parent


def main(runs_dir: str, run: str, run_b: str | None = None) -> None:
    copy = Path(tempfile.mkdtemp()) / "runs"
    shutil.copytree(runs_dir, copy, ignore=shutil.ignore_patterns("adapter", "checkpoints"))
    os.chdir(copy.parent)  # so the page header shows "runs", as after `molt serve runs`
    runs_dir = "runs"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(runs_dir, port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    shots = [("dashboard-runs.png", "/", 420)]
    if run_b:  # before the scoring page changes a score
        shots.append(("dashboard-compare.png", f"/compare?run={run}&run={run_b}", 1100))
    shots.append(("dashboard-score.png", f"/runs/{run}/score/final", 900))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
            for name, path, height in shots:
                page = browser.new_page(viewport={"width": 1200, "height": height})
                page.goto(app.url)  # the address molt serve prints: its token lets this browser in
                page.goto(url + path)
                if name == "dashboard-score.png":
                    card = page.locator(".answer[data-answer]").first
                    card.locator('select[data-dim="D3"]').select_option("0")
                    card.locator(".scorer .status").filter(has_text="saved").wait_for()
                    card.locator(".note-input").fill("Word salad: no sentence says who João is.")
                    card.locator(".note-input").blur()
                    page.wait_for_timeout(300)
                page.screenshot(path=str(DOCS / name))
                print(f"wrote {DOCS / name}")
            browser.close()
    finally:
        server.should_exit = True
        shutil.rmtree(copy.parent)


if __name__ == "__main__":
    main(*sys.argv[1:])
