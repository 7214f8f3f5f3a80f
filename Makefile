# molting — the README's commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup setup-dev chromium golang demo demo-real test test-slow bench docs lint format clean

# llama-cpp-python (for `molt export`) is built from source, CPU only, without the parts molting does not
# use (multimodal, examples, tools, tests); pip caches the wheel, so only the first setup on a machine pays.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

# torch is installed first and alone: pip takes the pinned CPU build (torch==2.13.0), so nothing
# later resolves torch to a multi-GB CUDA build. `setup` is what molting itself needs (the demo);
# `setup-dev` adds what the tests need: the dev tools, llama-cpp-python for `molt export` (with llama.cpp's
# GGUF converter extracted from the same pinned sources into the venv, molting.export.llama_cpp_tools, so tests
# need no network) and Debian's Chromium for the dashboard's browser tests.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[gemma]'
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet -e '.[dev,export,gemma]'
	$(BIN)/python -m molting.export.llama_cpp_tools  # the converter, and the family bases' vocabularies and templates
	touch $(DEV_STAMP)

# Playwright drives the system browser (`playwright install` would download its own, which these
# machines cannot do).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

setup: $(STAMP)

# Go's own text/template renders the Ollama TEMPLATEs molting writes in tests/export/test_go_template.py.
golang:
	@command -v go >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; }

setup-dev: $(DEV_STAMP) chromium golang

demo: setup
	$(BIN)/molt run examples/claudio/molt.yaml --name demo --overwrite

# The example persona on a real pretrained model, google/gemma-3-270m (the molting[gemma] extra; the Gemma
# terms of use apply to its weights). Far slower than `make demo` on a CPU: see docs/train.md.
demo-real: setup
	$(BIN)/molt run examples/claudio/molt-gemma.yaml --name demo-real --overwrite

# Two workers (pytest-xdist), one per core, each test file kept on one worker (its module fixtures build on
# each other); the 15 slowest tests are listed at the end.
test: setup-dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

test-slow: setup-dev
	$(BIN)/python -m pytest -q -m slow

# Speed and quality figures on builtin:small; copy them into bench/RESULTS.md when defaults change.
bench: setup
	$(BIN)/python bench/train.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/check.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/corrective.py

# docs/configuration.md and docs/cli.md, and the command output in README.md and docs/*.md, come from the
# code (docs/generate.py); `make lint` fails when one is stale.
docs: setup
	$(BIN)/python docs/generate.py

lint: setup-dev
	$(BIN)/ruff check src tests bench docs/*.py
	$(BIN)/ruff format --check src tests bench docs/*.py
	$(BIN)/python docs/generate.py --check
	$(BIN)/mypy

format: setup-dev
	$(BIN)/ruff format src tests bench docs/*.py
	$(BIN)/ruff check --fix src tests bench docs/*.py

clean:
	rm -rf $(VENV) runs .pytest_cache
