"""Training speed and quality: a plain Trainer recipe vs TRL's defaults vs `molt train`'s defaults, side by side.

Run: .venv/bin/python bench/train.py [--base builtin:small] [--examples 64] [--bf16-weights]
     .venv/bin/python bench/train.py --base packaged:gemma-3-270m --examples 16   (a real 262,144-token vocabulary)

(a) a plain Trainer recipe, as a first fine-tuning script is often written: Hugging Face Trainer, every
    example padded to max_length 1024, batch 1, grad_accum 4, loss on every token, LoRA r=16 α=32 dropout
    0.05, lr 1e-4, fp32;
(b) TRL's SFTTrainer with its out-of-the-box settings (SFTConfig()) and the same LoRA;
(c) `molt train` with its defaults (molting.train.sft.train_run, nothing overridden but epochs);
(d) only when (c) trained embedding rows (`lora.trainable_tokens: auto` found the base's turn tokens untrained,
    as on Gemma 3): the same with `lora.trainable_tokens: none`, to show what those rows cost;
(e), (f) with --bf16-weights: (c) and (d) with `train.dtype=bfloat16` (frozen weights stored in bf16, which on a
    CPU is not the default), to show what fp32 weights cost.
Each sees the same first N example conversations once (1 epoch), in its own process so peak RSS is its
own. Reported per recipe: non-padding tokens/s, supervised tokens/s, wall time of the training loop,
peak RSS, model FLOPs utilisation, and the assistant-token loss on 16 held-out conversations.
MFU = 6 × (base parameters) × (non-padding tokens) / seconds, over the machine's matmul peak measured
here (2048² matmuls) in the precision the recipe computes in; padding is counted as wasted work.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import EXAMPLE, emit

LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}
HELD_OUT = 16


def _peak_rss_mb() -> float:
    """Peak RSS of this process so far: taken right after training, before the held-out evaluation."""
    from molting.train.manifest import peak_rss_mb  # VmHWM: ru_maxrss would include this bench's own peak

    return peak_rss_mb()


def _conversations():
    from molting.card.persona import load_persona
    from molting.data.dataset import load_dataset

    persona = load_persona(EXAMPLE / "persona.yaml")
    return load_dataset(EXAMPLE / "data.jsonl", persona.system_prompts.train)


def _recipe_a(base, train, out):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from molting.models.base_model import load_model, load_tokenizer
    from molting.models.chat_format import render

    tokenizer = load_tokenizer(base)
    tokenizer.padding_side = "right"  # as a plain Trainer script pads: text first, padding after
    model = get_peft_model(load_model(base, "float32"), LoraConfig(**LORA))
    texts = [render(tokenizer, c.messages) for c in train]
    enc = tokenizer(texts, padding="max_length", max_length=1024, truncation=True, add_special_tokens=False)
    rows = []
    for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True):
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)],
            }
        )
    non_pad = sum(sum(m) for m in enc["attention_mask"])
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        num_train_epochs=1,
        learning_rate=1e-4,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
        seed=42,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return (
        model,
        tokenizer,
        {
            "seconds": seconds,
            "non_pad_tokens": non_pad,
            "supervised_tokens": non_pad,
            "precision": "fp32",
            "peak_rss_mb": _peak_rss_mb(),
        },
    )


def _recipe_b(base, train, out):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from molting.models.base_model import load_model, load_tokenizer
    from molting.models.chat_format import render

    tokenizer = load_tokenizer(base)
    model = load_model(base, "float32")
    dataset = Dataset.from_list([{"messages": c.messages} for c in train])
    # Out of the box, except what a CPU needs to run at all (use_cpu: TRL's default bf16 demands it).
    args = SFTConfig(
        output_dir=str(out), num_train_epochs=1, report_to=[], save_strategy="no", disable_tqdm=True, use_cpu=True
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=LoraConfig(**LORA)
    )
    lengths = [len(tokenizer(render(tokenizer, c.messages), add_special_tokens=False)["input_ids"]) for c in train]
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    precision = "bf16" if args.bf16 else "fp32"
    return (
        trainer.model,
        tokenizer,
        {
            "seconds": seconds,
            "non_pad_tokens": sum(lengths),
            "supervised_tokens": sum(lengths),
            "precision": precision,
            "peak_rss_mb": _peak_rss_mb(),
            "settings": f"batch {args.per_device_train_batch_size}, lr {args.learning_rate}, "
            f"grad ckpt {args.gradient_checkpointing}, bf16 {args.bf16}",
        },
    )


def _recipe_c(base, train, out, overrides=()):
    from peft import PeftModel

    from molting.config import load_run_config
    from molting.models.base_model import load_model, load_tokenizer
    from molting.train.sft import train_run

    project = out / "project"
    shutil.copytree(EXAMPLE, project)
    lines = [json.dumps({"messages": c.messages[1:], "tags": c.tags}, ensure_ascii=False) for c in train]
    (project / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # molt.yaml's defaults only: the example's builtin-only lora/train block is dropped.
    (project / "molt.yaml").write_text(
        f"base_model: {base}\npersona: persona.yaml\ndata: data.jsonl\nsuite: suite.yaml\n"
    )
    config = load_run_config(project / "molt.yaml", ["train.epochs=1", *overrides])
    manifest = train_run(config, out / "run", show_progress=False)
    peak = _peak_rss_mb()  # before loading the adapter again for the held-out loss
    preflight = json.loads((out / "run" / "preflight.json").read_text())
    model = PeftModel.from_pretrained(load_model(base, "float32"), str(out / "run" / "adapter"))
    return (
        model,
        load_tokenizer(base),
        {
            "seconds": manifest["train"]["seconds"],
            "non_pad_tokens": preflight["token_budget"]["total_tokens"],
            "supervised_tokens": preflight["token_budget"]["supervised_tokens"],
            "precision": manifest["train"]["mixed_precision"].replace("no", "fp32"),
            "peak_rss_mb": peak,
            "token_rows": manifest["train"]["trainable_tokens"].get("train_tokens") or [],
        },
    )


def _recipe_d(base, train, out):
    return _recipe_c(base, train, out, ["lora.trainable_tokens=none"])


def _recipe_e(base, train, out):
    return _recipe_c(base, train, out, ["train.dtype=bfloat16"])


def _recipe_f(base, train, out):
    return _recipe_c(base, train, out, ["train.dtype=bfloat16", "lora.trainable_tokens=none"])


def run_one(recipe: str, base: str, examples: int, out: Path) -> dict:
    import torch

    from molting.evaluate.run import assistant_token_loss

    torch.manual_seed(0)
    conversations = _conversations()
    train, held_out = conversations[:examples], conversations[-HELD_OUT:]
    recipes = {"a": _recipe_a, "b": _recipe_b, "c": _recipe_c, "d": _recipe_d, "e": _recipe_e, "f": _recipe_f}
    model, tokenizer, result = recipes[recipe](base, train, out)
    result["held_out_loss"] = assistant_token_loss(model, tokenizer, held_out)
    result["parameters"] = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return result


def matmul_peak() -> dict:
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        torch.matmul(a, b)
        best = 0.0
        for _ in range(5):
            started = time.perf_counter()
            torch.matmul(a, b)
            best = max(best, 2 * 2048**3 / (time.perf_counter() - started))
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="builtin:small")
    parser.add_argument("--examples", type=int, default=64)
    # one recipe, in a child process
    parser.add_argument("--bf16-weights", action="store_true", help="also (c) and (d) with bf16 frozen weights")
    parser.add_argument("--recipe", choices=["a", "b", "c", "d", "e", "f"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe:
        from molting.cli.options import quiet_libraries

        quiet_libraries()
        result = run_one(args.recipe, args.base, args.examples, Path(args.out))
        print("RESULT " + json.dumps(result))
        return

    from molting.models.resolve import resolve_base

    resolve_base(args.base)  # build a builtin base once, outside every timing
    peak = matmul_peak()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ("a", "b", "c", "d", "e", "f") if args.bf16_weights else ("a", "b", "c", "d"):
            if recipe in ("d", "f") and not results["c"]["token_rows"]:
                continue
            out = Path(tmp) / recipe
            out.mkdir()
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--recipe",
                    recipe,
                    "--base",
                    args.base,
                    "--examples",
                    str(args.examples),
                    "--out",
                    str(out),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"recipe {recipe} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results[recipe] = json.loads(line[len("RESULT ") :])
    names = {
        "a": "(a) plain Trainer recipe",
        "b": "(b) TRL defaults",
        "c": "(c) molt train defaults",
        "d": "(d) molt train, no token rows",
        "e": "(e) molt train, bf16 weights",
        "f": "(f) molt train, bf16 weights, no token rows",
    }
    rows = []
    for key, r in results.items():
        achieved = 6 * r["parameters"] * r["non_pad_tokens"] / r["seconds"]
        rows.append(
            {
                "recipe": names[key],
                "precision": r["precision"],
                "seconds": round(r["seconds"], 1),
                "non_pad_tok_per_s": round(r["non_pad_tokens"] / r["seconds"], 1),
                "supervised_tok_per_s": round(r["supervised_tokens"] / r["seconds"], 1),
                "peak_rss_mb": round(r["peak_rss_mb"]),
                "mfu_pct": round(100 * achieved / peak[r["precision"]], 2),
                "held_out_loss": round(r["held_out_loss"], 4),
            }
        )
    by_key = dict(zip(results, rows, strict=True))
    a, b, c = by_key["a"], by_key["b"], by_key["c"]
    ratio_ca = c["non_pad_tok_per_s"] / a["non_pad_tok_per_s"]
    ratio_cb = c["non_pad_tok_per_s"] / b["non_pad_tok_per_s"]
    rss_cb = c["peak_rss_mb"] / b["peak_rss_mb"]
    held_cb = c["held_out_loss"] / b["held_out_loss"] - 1
    emit(
        "train",
        rows,
        {
            "base": args.base,
            "examples_seen": args.examples,
            "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()},
            "trl_defaults": results["b"].get("settings"),
            "token_rows_trained_by_c": results["c"]["token_rows"],
            "ratio_c_over_a": round(ratio_ca, 2),
            "ratio_c_over_b": round(ratio_cb, 2),
            "peak_rss_c_over_b": round(rss_cb, 2),
            "held_out_c_vs_b_pct": round(100 * held_cb, 2),
            **{
                f"{name}_{key}_over_b": round(by_key[key][field] / b[field], 2)
                for key in ("d", "e", "f")
                if key in by_key
                for name, field in (("ratio", "non_pad_tok_per_s"), ("peak_rss", "peak_rss_mb"))
            },
            "targets": {
                "c/a >= 5": ratio_ca >= 5,
                "c/b >= 1.3 (builtin bases)": ratio_cb >= 1.3,
                "c/b >= 1.5 (a real vocabulary)": ratio_cb >= 1.5,
                "peak c <= a": c["peak_rss_mb"] <= a["peak_rss_mb"],
                "peak c <= 60% of b": rss_cb <= 0.6,
                "held-out c <= b": c["held_out_loss"] <= b["held_out_loss"],
                "held-out c within 1% of b": abs(held_cb) <= 0.01,
            },
        },
    )


if __name__ == "__main__":
    main()
