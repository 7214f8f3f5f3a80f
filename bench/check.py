"""Preflight speed: `molt check` on a 10,000-conversation dataset (target: under 30 seconds).

Run: .venv/bin/python bench/check.py [--conversations 10000] [--base builtin:small]
The dataset is the example's conversations repeated to the size asked; the preflight is the real one
(tokenizer, chat template, budget, EOS round trip, steps), timed from loading the config to the report.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import EXAMPLE, emit

from molting.config import load_run_config
from molting.train.preflight import run_preflight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--base", default="builtin:small")
    args = parser.parse_args()
    lines = [line for line in (EXAMPLE / "data.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        shutil.copytree(EXAMPLE, project)
        big = [lines[i % len(lines)] for i in range(args.conversations)]
        (project / "data.jsonl").write_text("\n".join(big) + "\n", encoding="utf-8")
        load_run_config(project / "molt.yaml", [f"base_model={args.base}"])  # builds the base outside the timing
        from molting.models.base_model import load_tokenizer

        load_tokenizer(args.base)
        started = time.perf_counter()
        report = run_preflight(load_run_config(project / "molt.yaml", [f"base_model={args.base}"]))
        seconds = time.perf_counter() - started
    emit(
        "check",
        [
            {
                "conversations": report["dataset"]["conversations"],
                "tokens": report["token_budget"]["total_tokens"],
                "seconds": round(seconds, 2),
                "conversations_per_s": round(args.conversations / seconds, 1),
                "target_s": 30,
                "meets_target": seconds < 30,
            }
        ],
    )


if __name__ == "__main__":
    main()
