"""Memory preflight and QLoRA: the estimator's parameter counts against the
published sizes and the real models, its 4-bit terms, the fit check through `molt check`, the
BitsAndBytesConfig molting builds, and the message on a machine without CUDA. The real 4-bit training run
needs a CUDA GPU and bitsandbytes: it is skipped elsewhere."""

import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import EXAMPLE, FAST, REPO, run_molt, set_args

from molting.models.base_model import load_model, quantization_config
from molting.models.model_configs import model_config, shipped_config, shipped_ids
from molting.train.memory_estimate import ModelShape, TrainingPlan, estimate_memory, fits

PUBLISHED_PARAMETERS = {  # from each model card
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1.10e9,
    "microsoft/Phi-3-mini-4k-instruct": 3.82e9,
    "Qwen/Qwen2.5-0.5B-Instruct": 0.494e9,
    "Qwen/Qwen2.5-1.5B-Instruct": 1.54e9,
    "meta-llama/Llama-3.2-1B-Instruct": 1.24e9,
    "meta-llama/Llama-3.2-3B-Instruct": 3.21e9,
}


def test_shipped_configs_give_the_published_parameter_counts():
    assert shipped_ids() == sorted(PUBLISHED_PARAMETERS)
    for model_id, published in PUBLISHED_PARAMETERS.items():
        assert model_config(model_id) == shipped_config(model_id)  # offline: HF_HUB_OFFLINE=1 in tests
        assert ModelShape.from_config(shipped_config(model_id)).params == pytest.approx(published, rel=0.01)


def test_counts_match_the_real_model_and_peft(trained_run):
    model = load_model("builtin:tiny")
    assert ModelShape.from_config(model_config("builtin:tiny")).params == sum(p.numel() for p in model.parameters())
    manifest = json.loads((trained_run / "manifest.json").read_text())
    lora = manifest["config"]["lora"]
    plan = TrainingPlan(
        device="cpu", weights_dtype="float32", lora_r=lora["r"], modules_to_save=lora["modules_to_save"]
    )
    assert (
        estimate_memory(model_config("builtin:tiny"), plan)["trainable_parameters"]
        == manifest["train"]["trainable_parameters"]
    )
    # the preflight's estimate is recorded with the run
    assert manifest["memory_estimate"]["trainable_parameters"] == manifest["train"]["trainable_parameters"]


def test_4bit_is_smaller_and_loads_without_the_spike():
    phi3 = shipped_config("microsoft/Phi-3-mini-4k-instruct")
    small = TrainingPlan(seq_len=256, batch_size=1, gradient_checkpointing=True)
    lora, qlora = estimate_memory(phi3, small), estimate_memory(phi3, small.but(quantization="4bit"))
    # 3.6 G linear weights at ~0.52 byte instead of 2, embeddings and head in fp32 after k-bit preparation
    assert qlora["terms_gb"]["weights"] == pytest.approx(lora["terms_gb"]["weights"] * 0.35, rel=0.1)
    # a 4 GB RTX 3050 and Phi-3-mini. fp16 weights materialised first (transformers #43032) do not fit;
    # quantised tensor by tensor, loading does, and so does training with checkpointing, batch 1, 256 tokens
    assert qlora["naive_4bit_load_gb"] > 7 > 4 > qlora["loading_peak_gb"]
    assert fits(qlora["peak_gb"], 4) and not fits(lora["peak_gb"], 4)


def test_estimate_grows_with_what_should_grow_it():
    config = shipped_config("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    base = TrainingPlan(seq_len=512, batch_size=2)
    peak = estimate_memory(config, base)["training_peak_gb"]
    assert estimate_memory(config, base.but(seq_len=1024))["training_peak_gb"] > peak
    assert estimate_memory(config, base.but(batch_size=4))["training_peak_gb"] > peak
    assert estimate_memory(config, base.but(lora_r=64))["training_peak_gb"] > peak
    assert estimate_memory(config, base.but(gradient_checkpointing=True))["training_peak_gb"] < peak
    assert (
        estimate_memory(config, base.but(modules_to_save=["lm_head"]))["trainable_parameters"]
        > (estimate_memory(config, base)["trainable_parameters"])
    )


def test_the_fused_head_term_follows_the_supervised_positions_not_the_vocabulary():
    """molt train's SFT stage projects only the supervised positions, a tile of at most 32,768 vocabulary rows at a
    time: the 128k-vocabulary logits no longer dominate (bench/memory.py measured the full-logits term at 2.7x the
    real peak on builtin:llama3.2 and builtin:qwen2.5)."""
    llama = shipped_config("meta-llama/Llama-3.2-1B-Instruct")
    full = TrainingPlan(seq_len=1024, batch_size=4)
    fused = full.but(fused_head=True)
    assert estimate_memory(llama, full)["terms_gb"]["logits"] > 6  # 4,096 positions x 128,256 rows, 14 bytes
    assert estimate_memory(llama, fused)["terms_gb"]["logits"] < 0.5  # one 4,096 x 32,768 bf16 tile
    third = estimate_memory(llama, fused.but(supervised_fraction=1 / 3))["terms_gb"]["logits"]
    assert third < estimate_memory(llama, fused)["terms_gb"]["logits"]
    cpu = fused.but(device="cpu", weights_dtype="float32", autocast=True)  # torch ops: fp32 temporaries per tile
    assert estimate_memory(llama, cpu)["terms_gb"]["logits"] > 10 * estimate_memory(llama, fused)["terms_gb"]["logits"]


def test_preflight_plans_the_fused_head_for_sft_only(project, tmp_path):
    from molting.config import load_run_config
    from molting.train.preflight import run_preflight

    report = run_preflight(load_run_config(project / "molt.yaml", FAST))
    plan = report["memory"]["plan"]
    assert plan["fused_head"] is True
    budget = report["token_budget"]
    assert 0 < budget["max_supervised_tokens"] < budget["max_tokens"]
    assert plan["supervised_fraction"] == pytest.approx(budget["max_supervised_tokens"] / budget["max_tokens"])


def test_check_fails_before_loading_when_it_will_not_fit_and_says_what_would(project, tmp_path):
    config = model_config("builtin:tiny")
    # a budget that batches of 4 overflow and batches of 1 fit (the tiny base's longest example: 390 tokens)
    plan = TrainingPlan(
        device="cpu",
        weights_dtype="float32",
        autocast=True,
        lora_r=32,
        seq_len=390,
        batch_size=4,
        modules_to_save=["embed_tokens", "lm_head"],
    )
    budget = (estimate_memory(config, plan)["peak_gb"] + estimate_memory(config, plan.but(batch_size=1))["peak_gb"]) / 2
    result = run_molt(
        "check",
        project / "molt.yaml",
        *set_args(FAST + [f"check.memory_gb={budget / 0.95:.4f}"]),
        "--runs-dir",
        tmp_path,
        "--name",
        "m",
    )
    report = json.loads((tmp_path / "m" / "preflight.json").read_text())
    assert result.returncode == 1, result.stdout
    memory = report["memory"]
    assert memory["fits"] is False and memory["budget_from"] == "check.memory_gb"
    assert any(s.startswith("train.batch_size: 1") for s in memory["suggestions"]), memory["suggestions"]
    assert "would run out of memory" in result.stdout and "train.batch_size: 1" in result.stdout


def test_bitsandbytes_config_is_qlora():
    four = quantization_config("4bit", torch.bfloat16)
    assert four.load_in_4bit and not four.load_in_8bit
    assert four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("4bit", torch.float16).bnb_4bit_compute_dtype == torch.float16
    assert quantization_config("8bit", torch.float16).load_in_8bit
    assert quantization_config("none", torch.float16) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for machines without CUDA")
def test_4bit_on_a_cpu_stops_before_loading_anything(project, tmp_path):
    result = run_molt(
        "train",
        project / "molt.yaml",
        *set_args(FAST + ["train.quantization=4bit"]),
        "--runs-dir",
        tmp_path,
        "--name",
        "q",
    )
    assert result.returncode == 2, result.stderr
    assert "no CUDA GPU" in result.stderr and "train.quantization: none" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "q" / "preflight.json").exists()
    # molt check goes through the same preflight, which raises before even the tokenizer is loaded
    from molting.config import load_run_config
    from molting.errors import UserError
    from molting.train.preflight import run_preflight

    with pytest.raises(UserError, match="no CUDA GPU"):
        run_preflight(load_run_config(project / "molt.yaml", FAST + ["train.quantization=8bit"]))


def test_docs_memory_table_is_the_scripts_output():
    table = subprocess.run(
        [sys.executable, str(REPO / "bench" / "memory_table.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    page = (REPO / "docs" / "train.md").read_text()
    assert table and table in page, "regenerate: make docs"
    assert re.search(r"Phi-3-mini-4k-instruct", table)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU (and bitsandbytes)")
def test_qlora_really_loads_and_trains_in_4bit(tmp_path):
    from molting.config import load_run_config
    from molting.train.sft import train_run

    config = load_run_config(EXAMPLE / "molt.yaml", FAST + ["train.quantization=4bit", "train.epochs=0.25"])
    manifest = train_run(config, tmp_path / "run", show_progress=False)
    assert manifest["train"]["quantization"] == "4bit"
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    model = load_model("builtin:tiny", quantization="4bit")
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    assert torch.cuda.max_memory_allocated() / 2**30 < manifest["memory_estimate"]["peak_gb"] * 1.25


def test_peak_rss_is_the_processs_own_not_its_parents():
    """A process started by one that held a lot of memory reports its own peak: ru_maxrss is carried over from
    the parent through fork and exec on Linux (a `molt train` started by bench/memory.py after it built a base
    reported the bench's 1.7 GB), VmHWM is not."""
    from molting.train.manifest import peak_rss_mb

    held = bytearray(800 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page: 800 MB resident in this process
    assert peak_rss_mb() >= 800
    child = subprocess.run(
        [sys.executable, "-c", "from molting.train.manifest import peak_rss_mb; print(peak_rss_mb())"],
        capture_output=True,
        text=True,
        check=True,
    )
    del held
    assert float(child.stdout) < 300, child.stdout  # a bare interpreter with molting.train.manifest imported
