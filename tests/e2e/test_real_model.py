"""The whole pipeline on a real pretrained model, google/gemma-3-270m (`packaged:gemma-3-270m`), offline.

check, train (LoRA, assistant-only loss), eval of the base and of the adapter with several samples per question
and the card's probes, log-prob probes, the report with its trained-vs-base verdict, `molt export --to gguf
--verify` through llama.cpp's converter and llama-cpp-python, and `molt serve` listing the run. Training is
cut to 8 optimizer steps so the test takes about ten minutes on 2 cores; the example config's full run is
`make demo-real`. Slow: `make test-slow`.

Nothing here depends on what a barely trained model happens to say: the assertions are about files, counts,
the end-of-turn set-up, and the checks that compare the exported weights with the adapter's.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import EXAMPLE, run_molt, set_args

from molting.report.compare import IMPROVEMENT, NO_CHANGE, REGRESSION

SHORT = [
    "train.epochs=0.25",  # 8 optimizer steps of the example's 127 conversations at batch size 4
    "check.min_steps=1",
    "generation.samples=2",
    "generation.max_new_tokens=48",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(opener, url: str) -> str:
    with opener.open(url, timeout=30) as response:
        return response.read().decode()


@pytest.mark.slow
def test_real_model_through_every_stage(tmp_path, gemma_base):
    runs = tmp_path / "runs"
    started = time.monotonic()
    run_molt("run", EXAMPLE / "molt-gemma.yaml", *set_args(SHORT), "--runs-dir", runs, "--name", "gemma", check=True)
    print(f"molt run on packaged:gemma-3-270m took {time.monotonic() - started:.0f} s")
    run = runs / "gemma"

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["base_model"] == "packaged:gemma-3-270m"
    assert manifest["train"]["optimizer_steps"] == 8
    assert manifest["train"]["total_parameters"] > 260_000_000
    preflight = json.loads((run / "preflight.json").read_text())
    assert not [f for f in preflight["findings"] if f["level"] == "error"]
    generation = json.loads((gemma_base / "generation_config.json").read_text())  # what generation stops on
    eos = generation["eos_token_id"]
    assert 106 in (eos if isinstance(eos, list) else [eos]), "<end_of_turn> (106) must stop generation"

    for eval_id in ("base", "final"):
        scores = json.loads((run / "eval" / eval_id / "scores.json").read_text())
        assert {q["samples"] for q in scores["per_question"]} == {2}
        assert scores["average_ci95"] is not None
        assert scores.get("per_probe"), "the card's probes were asked"
        responses = [json.loads(line) for line in (run / "eval" / eval_id / "responses.jsonl").open()]
        assert all("<end_of_turn>" not in r["response"] for r in responses), "the end-of-turn token leaked"
    report = (run / "report.md").read_text()
    section = report.split("### Trained vs untrained base", 1)[1].split("\n### ", 1)[0]
    assert any(f"Verdict: **{v}**" in section for v in (IMPROVEMENT, NO_CHANGE, REGRESSION)), section

    # --verify exits 1 when a check fails; the checks on the weights and the prompt tokens are asserted here,
    # those on what a barely trained model says (does it stop, does it write template text) are only printed
    exported = run_molt("export", run, "--to", "gguf", "--verify")
    verify = json.loads((run / "export" / "gguf" / "verify.json").read_text())
    print(json.dumps(verify["checks"], indent=1, ensure_ascii=False))
    # (merged == adapter, f16 matches the adapter's first tokens, and no second <bos>: Gemma's template writes
    # one, llama.cpp must not add another)
    weights = [c for c in verify["checks"] if c["of"] == "export" and c["gating"]]
    assert len(weights) == 3 and all(c["ok"] for c in weights), exported.stdout + exported.stderr
    assert list((run / "export" / "gguf").glob("*.gguf"))

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "molting", "serve", str(runs), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = ""
        while "Ctrl-C" not in printed:  # the address with the server's token comes first
            line = server.stdout.readline()
            assert line, f"molt serve stopped: {printed}{server.stderr.read()}"
            printed += line
        address = next(w for w in printed.split() if w.startswith(f"http://127.0.0.1:{port}/?token="))
        browser_like = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())  # keeps the cookie
        deadline = time.monotonic() + 60
        while True:
            try:
                listing = _get(browser_like, address)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "molt serve did not start"
                time.sleep(0.5)
        assert "gemma" in listing and "packaged:gemma-3-270m" in listing
        assert "molting report — gemma" in _get(browser_like, f"http://127.0.0.1:{port}/runs/gemma")
    finally:
        server.terminate()
        server.wait(10)
