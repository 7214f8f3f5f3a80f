"""Memory estimator validation: predicted peak (molting.train.memory_estimate, what `molt check` reports) against the
measured peak RSS of real `molt train` runs on the CPU, for bases of three sizes and several settings.

Run: python bench/memory.py   (6 minutes on an idle 2-core machine, bases cached; the table goes in bench/RESULTS.md)
     python bench/memory.py --cases tinyllama,phi3,qwen2.5,llama3.2   (the baseline run, then only these rows)

Each run is a fresh `molt train` process (so RSS holds exactly one run), on the example persona's 16 longest
conversations (so every batch is padded to near the longest example, which is what the estimate assumes),
for one epoch. The measured figure is the process's peak RSS (VmHWM, in manifest.json), which
includes the Python/torch process itself: the estimator models that as a fixed term (see below).

Bases: builtin:tiny (2.4 M parameters), builtin:small (27 M), and `medium` (~90 M: builtin:small's
tokenizer with a wider, deeper Llama config, random weights — their values do not change memory). The
fixed term is measured first, on a `micro` base (0.3 M parameters, batch 1) whose own predicted terms are
subtracted; it is measured on a run that is not among those validated. Then the family bases
(builtin:tinyllama, builtin:phi3, builtin:qwen2.5, builtin:llama3.2: each family's architecture class and real
vocabulary with tiny layers), so that Phi-3's, Qwen2's and Llama 3's layouts are checked too.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import EXAMPLE, emit

from molting.models.family_base import FAMILIES

GIB = 2**30


def longest_conversations_project(folder: Path, n: int = 16) -> Path:
    project = folder / "project"
    shutil.copytree(EXAMPLE, project)
    lines = [line for line in (EXAMPLE / "data.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    lines.sort(key=len, reverse=True)
    (project / "data.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return project


def llama_base(folder: Path, name: str, hidden: int, layers: int, heads: int, kv_heads: int, mlp: int) -> Path:
    """builtin:small's tokenizer and chat template on a Llama of the given shape, random weights (their
    values do not change memory)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from molting.models.resolve import resolve_base

    out = folder / name
    small = Path(resolve_base("builtin:small"))
    tokenizer = AutoTokenizer.from_pretrained(small)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    GenerationConfig.from_pretrained(small).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def measure(project: Path, runs: Path, name: str, overrides: list[str]) -> dict:
    sets = [
        part for o in ["check.min_steps=1", "train.epochs=1", "train.save_steps=0", *overrides] for part in ("--set", o)
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "molting",
            "train",
            str(project / "molt.yaml"),
            *sets,
            "--runs-dir",
            str(runs),
            "--name",
            name,
        ],
        check=True,
        capture_output=True,
    )
    manifest = json.loads((runs / name / "manifest.json").read_text())
    estimate = manifest["memory_estimate"]
    measured = manifest["memory"]["peak_rss_mb"] / 1024
    return {
        "run": name,
        "params_M": round(estimate["parameters"] / 1e6, 1),
        "trainable_M": round(manifest["train"]["trainable_parameters"] / 1e6, 2),
        "batch×seq": f"{estimate['plan']['batch_size']}×{estimate['plan']['seq_len']}",
        "predicted_gb": round(estimate["peak_gb"], 3),
        "measured_gb": round(measured, 3),
        "error_%": round(100 * (estimate["peak_gb"] - measured) / measured, 1),
        "predicted_minus_baseline_gb": round(estimate["peak_gb"] - estimate["terms_gb"]["fixed"], 3),
    }


def main() -> None:
    import argparse

    from molting.train.memory_estimate import CPU_PROCESS_BASELINE_GB

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated rows to run (default: all); the baseline always runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="molting-bench-memory-") as tmp:
        tmp = Path(tmp)
        project = longest_conversations_project(tmp)
        micro = llama_base(tmp, "micro", hidden=32, layers=1, heads=2, kv_heads=1, mlp=64)
        medium = llama_base(tmp, "medium", hidden=768, layers=12, heads=12, kv_heads=4, mlp=2048)
        runs = tmp / "runs"
        # The process baseline: a real molt train of a 0.3 M-parameter model at batch 1, whose own terms
        # (predicted: a few MB) are subtracted. What is left is Python, torch, the libraries and the training
        # machinery (oneDNN kernels, allocator arenas, the Trainer) — the estimator's fixed CPU term.
        micro_run = measure(
            project, runs, "micro-b1", [f"base_model={micro}", "lora.modules_to_save=[]", "train.batch_size=1"]
        )
        baseline_gb = micro_run["measured_gb"] - micro_run["predicted_minus_baseline_gb"]
        print({"baseline": micro_run, "process_baseline_gb": round(baseline_gb, 3)}, flush=True)
        no_save = "lora.modules_to_save=[]"
        cases = [
            ("tiny", ["base_model=builtin:tiny"]),
            ("small", ["base_model=builtin:small"]),
            ("small-b8-r64", ["base_model=builtin:small", "train.batch_size=8", "lora.r=64"]),
            ("medium", [f"base_model={medium}", "lora.r=16", no_save]),
            ("medium-ckpt", [f"base_model={medium}", "lora.r=16", no_save, "train.gradient_checkpointing=true"]),
            ("medium-b8", [f"base_model={medium}", "lora.r=16", no_save, "train.batch_size=8"]),
            # each family's own architecture (Phi-3's fused projections, Qwen2's biases, tied 128k/152k-row
            # embeddings), so the estimate is checked on each and not only on Llama
            *((family, [f"base_model=builtin:{family}", no_save]) for family in FAMILIES),
        ]
        if args.cases:
            wanted = args.cases.split(",")
            unknown = sorted(set(wanted) - {name for name, _ in cases})
            if unknown:
                sys.exit(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(n for n, _ in cases)}")
            cases = [case for case in cases if case[0] in wanted]
        rows = []
        for name, overrides in cases:
            rows.append(measure(project, runs, name, overrides))
            print(rows[-1], flush=True)
    worst = max(abs(r["error_%"]) for r in rows)
    emit(
        "memory estimate vs measured peak RSS (CPU, molt train, 16 longest example conversations, 1 epoch)",
        rows,
        {
            "process_baseline_measured_gb": round(baseline_gb, 3),
            "process_baseline_in_estimator_gb": CPU_PROCESS_BASELINE_GB,
            "worst_error_%": worst,
            "target": "within 25%",
            "met": worst <= 25,
        },
    )


if __name__ == "__main__":
    main()
