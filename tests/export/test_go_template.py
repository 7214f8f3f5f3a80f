"""Ollama's TEMPLATE rendered by Go's own text/template (the small program in go_template/, built with Debian's
golang-go, which `make setup-dev` installs): for every family base and every suite prompt, the same text as
molting's evaluator (molting.export.go_template) and as the Jinja chat template; and for Qwen3's real template,
which writes the last assistant turn unlike the earlier ones."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLE, _once_per_session, qwen3_template_path, row_base

from molting.models.family_base import FAMILIES

GO_PROGRAM = Path(__file__).parent / "go_template"


@pytest.fixture(scope="session")
def go_renderer(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (make setup-dev installs Debian's golang-go)")
    out = tmp_path_factory.getbasetemp() / "go-template-render"
    with _once_per_session(tmp_path_factory, "go-template"):
        if not out.is_file():
            env = {**os.environ, "GOFLAGS": "-mod=mod", "GOCACHE": str(out.parent / "go-cache"), "GO111MODULE": "on"}
            subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_PROGRAM, check=True, env=env, timeout=300)
    return out


@pytest.mark.parametrize("family", ["tiny", *FAMILIES, "qwen3"])
def test_go_renders_the_template_as_jinja_and_molting(family, go_renderer, tmp_path, family_bases):
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.export.go_template import render as render_molting
    from molting.export.ollama_modelfile import chat_segments, go_template, sample_conversations
    from molting.models.base_model import load_tokenizer
    from molting.models.chat_format import render

    # the family bases are built once per session (family_bases); "qwen3": Qwen3's real template on its vocabulary
    tokenizer = load_tokenizer(f"builtin:{row_base(family)}")
    if family == "qwen3":
        tokenizer.chat_template = qwen3_template_path().read_text(encoding="utf-8")
    persona = load_persona(EXAMPLE / "persona.yaml")
    system = persona.system_prompts.inference.strip()
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": q.question}] for q in suite.questions
    ] + sample_conversations(system)
    template = go_template(chat_segments(tokenizer))
    (tmp_path / "TEMPLATE").write_text(template, encoding="utf-8")
    data = [{"Messages": [{"Role": m["role"], "Content": m["content"]} for m in c]} for c in conversations]
    result = subprocess.run(
        [str(go_renderer), str(tmp_path / "TEMPLATE")], input=json.dumps(data), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    by_go = json.loads(result.stdout)
    for messages, rendered, d in zip(conversations, by_go, data, strict=True):
        jinja = render(tokenizer, messages, add_generation_prompt=True)
        assert rendered == jinja
        assert render_molting(template, d) == rendered
