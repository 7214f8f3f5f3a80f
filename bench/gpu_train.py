"""QLoRA 4-bit vs bf16 LoRA on Gemma 3 270M on a CUDA GPU: tokens/s, peak VRAM and the preflight's estimate.

Run: python bench/gpu_train.py [--steps 32]            (a GPU machine with molting and molting[gpu,gemma])
     bash bench/gpu.sh                                  (a GPU machine that cannot reach PyPI: see that file)

Each mode trains the example persona with `molt train` (molting.train.sft.train_run) for the same optimizer
steps, in its own process so that torch.cuda.max_memory_allocated() is its own:
- bf16: LoRA on bf16 weights (train.dtype bfloat16);
- 4bit: QLoRA, the decoder's linear layers loaded as bitsandbytes NF4 (train.quantization 4bit).
Printed per mode: non-padding tokens/s over the training loop, peak VRAM allocated by PyTorch, and the
preflight's predicted peak (molting.train.memory_estimate, which adds the CUDA context) beside it.

`--stand-in DIR` trains a model with Gemma 3 270M's exact architecture (its config.json), its real tokenizer
and random weights, for a machine the 241 MB weights cannot reach: speed and memory follow the shapes, not
the weights, and the loss means nothing. `--prepare DIR` writes DIR from the packaged base (here).
"""

import argparse
import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import EXAMPLE, emit

BASE = "packaged:gemma-3-270m"
STAND_IN_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja")


def prepare(out: Path) -> None:
    """The packaged base's config and tokenizer (tokenizer.json xz-compressed, 33 MB → 3.5 MB), no weights."""
    from molting.models.resolve import resolve_base

    source = Path(resolve_base(BASE))
    out.mkdir(parents=True, exist_ok=True)
    for name in STAND_IN_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    (out / "tokenizer.json.xz").write_bytes(lzma.compress((source / "tokenizer.json").read_bytes(), preset=9))
    print(f"wrote {out}")


def build_stand_in(files: Path, out: Path) -> str:
    """A model folder with Gemma 3 270M's config and tokenizer, and random weights (seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(files)), dtype=torch.float32)
    model.save_pretrained(str(out))
    for name in STAND_IN_FILES:  # after the weights: save_pretrained writes its own generation config
        if (files / name).is_file():
            shutil.copy(files / name, out / name)
    (out / "tokenizer.json").write_bytes(lzma.decompress((files / "tokenizer.json.xz").read_bytes()))
    return str(out)


def run_one(mode: str, base: str, steps: int, out: Path) -> dict:
    import torch

    from molting.config import load_run_config
    from molting.train.sft import train_run

    settings = [
        f"base_model={base}",
        "check.min_steps=1",
        # the example's 127 conversations in batches of 4: 32 steps an epoch
        f"train.epochs={steps / 32}",
        "train.save_steps=0",
        "train.dtype=bfloat16" if torch.cuda.is_available() else "train.dtype=float32",
    ]
    if mode == "4bit":
        settings.append("train.quantization=4bit")
    config = load_run_config(EXAMPLE / "molt-gemma.yaml", settings)
    cuda = torch.cuda.is_available()  # without one (a smoke test of this script on a CPU): no VRAM figures
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    manifest = train_run(config, out / "run", show_progress=False)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    preflight = json.loads((out / "run" / "preflight.json").read_text())
    tokens = preflight["token_budget"]["total_tokens"] * steps / preflight["steps"]["total_steps"]
    seconds = manifest["train"]["seconds"]
    return {
        "mode": mode,
        "steps": manifest["train"]["optimizer_steps"],
        "train loop s": seconds,
        "non-pad tok/s": round(tokens / seconds, 1),
        "peak VRAM GiB (allocated)": round(peak, 3) if cuda else None,
        "peak VRAM GiB (reserved)": round(reserved, 3) if cuda else None,
        "predicted peak GiB": preflight["memory"]["peak_gb"],
        "predicted training GiB": preflight["memory"]["training_peak_gb"],
        "final loss": manifest["train"]["final_loss"],
        "wall s (load + preflight + train)": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--stand-in", type=Path, help="a folder written by --prepare: random weights, real shapes")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="write the stand-in's files into DIR, and stop")
    parser.add_argument("--mode", choices=["bf16", "4bit"], help=argparse.SUPPRESS)  # one mode, in a child
    parser.add_argument("--base", default=BASE, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return
    if args.mode:
        print("RESULT " + json.dumps(run_one(args.mode, args.base, args.steps, Path(args.out))), flush=True)
        return

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu_train.py needs a CUDA GPU (torch.cuda.is_available() is False here).")
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = build_stand_in(args.stand_in, Path(tmp) / "gemma-shape") if args.stand_in else args.base
        for mode in ("bf16", "4bit"):
            out = Path(tmp) / mode
            out.mkdir()
            command = [sys.executable, __file__, "--mode", mode, "--base", base, "--steps", str(args.steps)]
            proc = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, check=False)
            result = next((line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
            if proc.returncode or result is None:
                print(f"{mode} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                continue
            rows.append(json.loads(result))
            print(rows[-1], flush=True)
    note = "stand-in: Gemma 3 270M's config and tokenizer, random weights" if args.stand_in else BASE
    emit("gpu_train", rows, {"base": note, "gpu": torch.cuda.get_device_name(0)})


if __name__ == "__main__":
    main()
