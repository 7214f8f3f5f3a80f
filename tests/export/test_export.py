"""`molt export`: a short builtin:tiny run exported to all three targets and verified, for real: PEFT merges,
llama.cpp's converter writes the GGUF, llama.cpp's quantizer quantises it, llama-cpp-python answers with it,
and the Modelfile's TEMPLATE is rendered by molting's Go-template evaluator (Ollama itself is not installed
here, so that is the one stand-in: the evaluator's own Go semantics are tested below)."""

import json
import shutil

import pytest
from conftest import run_molt

from molting.export.go_template import render
from molting.export.ollama_modelfile import (
    TemplateNotPortable,
    chat_segments,
    go_template,
    parse_modelfile,
    sample_conversations,
    template_mismatches,
)


def test_go_template_subset_follows_go_semantics():
    data = {"Messages": [{"Role": "user", "Content": "a"}, {"Role": "assistant", "Content": "b"}]}
    template = (
        '{{ range $i, $m := .Messages }}[{{ $m.Role }}:{{ $m.Content }}]{{ if eq $m.Role "user" }}U'
        '{{ else if eq $m.Role "assistant" }}A{{ else }}?{{ end }}'
        '{{ if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "user") }}LAST{{ end }}{{ end }}'
    )
    assert render(template, data) == "[user:a]U[assistant:b]ALAST"
    assert render("x{{ if not (eq (len .Messages) 2) }}no{{ else }}two{{ end }}", data) == "xtwo"
    # a variable declared outside a range and assigned inside it keeps the assignment across iterations
    prev = '{{ $p := "none" }}{{ range $i, $m := .Messages }}{{ $p }}>{{ $m.Role }};{{ $p = $m.Role }}{{ end }}{{ $p }}'
    assert render(prev, data) == "none>user;user>assistant;assistant"
    for unsupported in (
        "{{ $q = 1 }}",
        "{{- .Prompt }}",
        "{{ .Messages | len }}",
        "{{ if true }}x",
        '{{ printf "%s" .X }}',
    ):
        with pytest.raises(ValueError):
            render(unsupported, data)


def test_modelfile_template_renders_as_the_chat_template():
    from molting.models.base_model import load_tokenizer

    tokenizer = load_tokenizer("builtin:tiny")
    template = go_template(chat_segments(tokenizer))
    conversations = sample_conversations("Você é o Cláudio.\nResponda em português.")
    assert template_mismatches(template, tokenizer, conversations) == []
    rendered = render(template, {"Messages": [{"Role": "user", "Content": "Oi"}]})
    assert rendered == "<|user|>\nOi</s>\n<|assistant|>\n"  # the Zephyr template, generation prompt last

    # A template that slips in a default system prompt when there is none (Qwen2.5's does) is written with that
    # default in the first turn's place, and renders identically with and without a system message.
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|system|>\nDefault</s>\n{% endif %}"
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    template = go_template(chat_segments(tokenizer))
    assert template_mismatches(template, tokenizer, conversations) == []
    assert render(template, {"Messages": [{"Role": "user", "Content": "Oi"}]}).startswith("<|system|>\nDefault</s>")

    # One that reorders turns cannot be one Go TEMPLATE: refused, not approximated.
    tokenizer.chat_template = (
        "{% for m in messages|reverse %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    with pytest.raises(TemplateNotPortable):
        go_template(chat_segments(tokenizer))


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """The shared trained run, copied (exporting writes into the run directory); the tests below build on
    each other's exports, as a user exporting to several targets does."""
    target = tmp_path_factory.mktemp("export") / "tiny"
    shutil.copytree(trained_run, target, ignore=shutil.ignore_patterns("export", "eval"))
    return target


def test_export_all_targets_and_verify(run_copy):
    from gguf import GGUFReader
    from safetensors import safe_open

    from molting.card.persona import load_persona
    from molting.config import load_resolved_config

    result = run_molt("export", run_copy, "--to", "ollama", "--quant", "q8_0", "--verify", "--max-new-tokens", 64)
    ollama = run_copy / "export" / "ollama"
    report = json.loads((ollama / "verify.json").read_text())
    # exits 0 exactly when every gating check holds
    assert result.returncode == (0 if report["ok"] else 1), result.stdout + result.stderr
    assert ("export verified" in result.stdout) == report["ok"]

    # merged: safetensors, tokenizer, chat template, every end-of-turn id in generation_config
    merged = run_copy / "export" / "merged"
    tokenizer_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "</s>"
    assert (merged / "chat_template.jinja").read_text().startswith("{% for message in messages %}")
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == 2
    with safe_open(merged / "model.safetensors", "pt") as f:
        merged_tensors = list(f.keys())
    assert not any("lora" in name for name in merged_tensors)

    # gguf: readable by the gguf package, llama architecture, every tensor, the right EOS and template
    f16 = GGUFReader(str(run_copy / "export" / "gguf" / "tiny-f16.gguf"))
    assert f16.fields["general.architecture"].contents() == "llama"
    assert len(f16.tensors) == len(merged_tensors)
    assert f16.fields["tokenizer.ggml.eos_token_id"].contents() == 2
    assert f16.fields["tokenizer.ggml.tokens"].contents()[2] == "</s>"
    assert f16.fields["tokenizer.chat_template"].contents() == (merged / "chat_template.jinja").read_text()
    assert f16.fields["tokenizer.ggml.add_bos_token"].contents() is False  # trained without BOS
    assert {t.tensor_type.name for t in f16.tensors} == {"F16", "F32"}  # norms stay f32
    q8 = GGUFReader(str(run_copy / "export" / "gguf" / "tiny-q8_0.gguf"))
    assert "Q8_0" in {t.tensor_type.name for t in q8.tensors}

    # ollama: the quantised GGUF beside a Modelfile whose fields come from the run
    modelfile = parse_modelfile((ollama / "Modelfile").read_text())
    assert modelfile["FROM"] == "./tiny-q8_0.gguf" and (ollama / "tiny-q8_0.gguf").is_file()
    config = load_resolved_config(run_copy)
    assert modelfile["SYSTEM"] == load_persona(config.persona).system_prompts.inference.strip()
    params = modelfile["PARAMETER"]
    assert params["stop"] == ["</s>"]
    assert float(params["temperature"][0]) == config.generation.temperature
    assert float(params["top_p"][0]) == config.generation.top_p
    assert float(params["repeat_penalty"][0]) == config.generation.repetition_penalty
    assert int(params["num_predict"][0]) == config.generation.max_new_tokens
    messages = [{"Role": "system", "Content": "S"}, {"Role": "user", "Content": "Q"}]
    expected = "<|system|>\nS</s>\n<|user|>\nQ</s>\n<|assistant|>\n"
    assert render(modelfile["TEMPLATE"], {"Messages": messages}) == expected

    # verify.json: merged == adapter token for token; f16 matches the first tokens; q8_0 reports its score
    # change; no BOS added. These check the export's files, and hold for any trained model.
    of_export = [c for c in report["checks"] if c["of"] == "export"]
    assert len(of_export) == 8 and all(c["ok"] for c in of_export if c["gating"]), of_export
    bos_checks = [c for c in report["checks"] if "served prompt begins as the training prompt" in c["check"]]
    assert len(bos_checks) == 2 and all(c["ok"] and c["gating"] for c in bos_checks)
    models = report["models"]
    assert set(models) == {"adapter", "merged", "gguf-f16", "gguf-f16-served", "gguf-q8_0", "gguf-q8_0-served"}
    n = len(report["questions"])
    assert models["merged"]["identical_answers"] == n and models["merged"]["identical_prompts"] == n
    for q in report["questions"]:
        adapter = q["answers"]["adapter"]
        assert q["answers"]["merged"]["tokens"] == adapter["tokens"]
        assert q["answers"]["gguf-f16"]["matching_prefix"] >= min(8, len(adapter["tokens"]))
    # The checks of the answers depend on what a barely trained (and quantised) model happens to write, which
    # varies with the llama.cpp build; here they must be there, gating, and agree with the recorded answers.
    # (answer_checks' verdicts on given answers are tested in test_answer_checks_gate_on_what_was_answered.)
    template_checks = {c["check"].split()[0]: c for c in report["checks"] if "template tokens" in c["check"]}
    assert set(template_checks) == set(models) - {"adapter"}
    for name, c in template_checks.items():
        leaked = [q["id"] for q in report["questions"] if q["answers"][name]["leaked_template_tokens"]]
        assert c["gating"] and c["of"] == "answers" and c["ok"] == (not leaked)
        if c["ok"]:
            assert not any(m in q["answers"][name]["text"] for q in report["questions"] for m in ("</s>", "<|user|>"))
    # Served through the GGUF's own template, llama.cpp tokenizes the prompt as transformers did except for
    # the text's first '▁' (llama.cpp has no "prepend only at the start" mode): reported, not hidden.
    assert models["gguf-f16-served"]["identical_prompts"] == 0
    assert models["gguf-f16-served"]["first_prompt_differences_at"] == [0]
    assert models["gguf-q8_0"]["score_change"] == pytest.approx(
        models["gguf-q8_0"]["average_score"] - models["adapter"]["average_score"], abs=1e-3
    )
    assert "merged == adapter, token for token" in result.stdout


def test_answer_checks_gate_on_what_was_answered():
    from molting.export.verify import answer_checks

    def answer(reason: str, leaked=()):
        return {"finish_reason": reason, "leaked_template_tokens": list(leaked)}

    def model(rows):
        return {
            "stopped_at_end_of_turn": sum(a["finish_reason"] == "stop" for a in rows),
            "hit_max_new_tokens": sum(a["finish_reason"] == "length" for a in rows),
            "answers_with_template_tokens": sum(bool(a["leaked_template_tokens"]) for a in rows),
        }

    answers = {
        "adapter": [answer("stop"), answer("length")],
        "gguf-q8_0": [answer("stop"), answer("length", ["<|system|>"])],  # one leak
        "gguf-f16": [answer("length"), answer("length")],  # the adapter stops, this never does
        "gguf-f16-served": [answer("length"), answer("length")],  # as served: reported, not gating
    }
    checks = {c["check"]: c for c in answer_checks({k: model(v) for k, v in answers.items()}, answers, 64)}
    leak = checks["gguf-q8_0 writes no template tokens or second turn"]
    assert not leak["ok"] and leak["gating"] and leak["of"] == "answers"
    assert leak["detail"] == "1/2 answers contain template or special tokens (<|system|>) (adapter: 0/2)"
    assert checks["gguf-q8_0 stops at end of turn"]["ok"]
    assert not checks["gguf-f16 stops at end of turn"]["ok"] and checks["gguf-f16 stops at end of turn"]["gating"]
    served = checks["gguf-f16-served stops at end of turn"]
    assert not served["ok"] and not served["gating"]
    assert checks["gguf-f16 writes no template tokens or second turn"]["ok"]
    # an adapter that never stops itself cannot fail its exports for not stopping
    answers["adapter"] = [answer("length"), answer("length")]
    again = answer_checks({k: model(v) for k, v in answers.items()}, answers, 64)
    assert all(c["ok"] for c in again if "stops at end of turn" in c["check"])


def test_a_gguf_that_would_add_a_bos_is_set_not_to(tmp_path):
    # molting prompts with the rendered template alone; a GGUF whose add_bos_token is true (as llama.cpp's
    # converter left Gemma 3 270M's) would make llama.cpp and Ollama serve <bos><bos>
    import gguf
    import numpy as np

    from molting.export.llama_cpp_tools import prompt_without_added_bos

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_add_bos_token(True)
    writer.add_tensor("x", np.arange(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert prompt_without_added_bos(path) is True
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert list(reader.tensors[0].data) == [0, 1, 2, 3]  # the rest of the file untouched
    assert prompt_without_added_bos(path) is False  # already false: nothing to do


def test_q4_k_m_on_a_tiny_model_says_what_llama_cpp_did(run_copy):
    from molting.export.export import export_run

    messages = []
    result = export_run(run_copy, "gguf", "q4_k_m", say=messages.append)
    summary = result["gguf"]["q4_k_m"]
    # builtin:tiny's rows (192, 512) are not multiples of 256, so llama.cpp cannot use q4_K there.
    assert summary["notes"] and "not a multiple of 256" in summary["notes"][0]
    assert any(m.startswith("note:") for m in messages)
    assert summary["tensor_count"] == result["gguf"]["f16"]["tensor_count"]


def test_export_bad_input(trained_run, tmp_path):
    top = run_molt("--help")
    assert "molt export RUN" in top.stdout
    help_text = run_molt("export", "--help")
    assert help_text.returncode == 0 and "--quant" in help_text.stdout and "--verify" in help_text.stdout
    result = run_molt("export", tmp_path / "nope", "--to", "gguf")
    assert result.returncode == 2 and "no such run directory" in result.stderr
    result = run_molt("export", trained_run, "--to", "merged", "--quant", "q8_0")
    assert result.returncode == 2 and "--quant applies to --to gguf or --to ollama" in result.stderr
    assert not (trained_run / "export").exists()
    result = run_molt("export", trained_run, "--to", "zip")
    assert result.returncode == 2 and "zip" in result.stderr


def test_a_saved_tokenizer_is_loaded_once_while_its_files_are_unchanged(tmp_path):
    """`molt export --verify` reads the adapter's and the merged model's tokenizers twice each: loaded once, and
    again after the folder's tokenizer files change (a new export in the same process)."""
    from molting.export.export import saved_tokenizer
    from molting.models.resolve import resolve_base

    folder = tmp_path / "tok"
    shutil.copytree(resolve_base("builtin:tiny"), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    first = saved_tokenizer(folder)
    assert saved_tokenizer(folder) is first
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages[0]['content'] }}"
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    again = saved_tokenizer(folder)
    assert again is not first and again.chat_template == "{{ messages[0]['content'] }}"
