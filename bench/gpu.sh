#!/usr/bin/env bash
# GPU figures for Gemma 3 270M: QLoRA 4-bit and bf16 LoRA, a fixed number of optimizer steps each, printing
# tokens/s, peak VRAM (torch.cuda.max_memory_allocated) and the preflight's memory estimate beside it
# (bench/gpu_train.py does the work; bench/RESULTS.md records what it printed).
#
# On a machine with a CUDA GPU and molting installed (`pip install -e '.[gpu,gemma]'` after the CUDA torch):
#     python bench/gpu_train.py
# On a GPU machine that cannot reach PyPI (this project's lent H200: Python 3.12, CUDA torch, transformers and
# PEFT already there, 64 MiB of files in all can travel):
#     bash bench/gpu.sh --prepare      here, after `make setup`: the wheels it lacks and Gemma's tokenizer and
#                                      config (no weights: 241 MB cannot travel) into .gpu/, about 50 MB
#     bash bench/gpu.sh                there, with .gpu carried: installs the wheels into /tmp, then trains a
#                                      stand-in with Gemma 3 270M's exact architecture and tokenizer and random
#                                      weights (speed and memory follow the shapes, not the weights): under 8 min
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
WHEELS="bitsandbytes==0.50.2 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$GPU_DIR/wheels"
    # the GPU machine's Python is 3.12; bitsandbytes ships one manylinux wheel for every CUDA version
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$GPU_DIR/wheels" $WHEELS
    .venv/bin/python bench/gpu_train.py --prepare "$GPU_DIR/gemma-3-270m"
    du -sh "$GPU_DIR"
    exit 0
fi

if [ -d "$GPU_DIR/wheels" ]; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/molting-gpu-site "$GPU_DIR"/wheels/*.whl
    export PYTHONPATH="/tmp/molting-gpu-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -d "$GPU_DIR/gemma-3-270m" ]; then
    exec python3 bench/gpu_train.py --stand-in "$GPU_DIR/gemma-3-270m" "$@"
fi
exec python3 bench/gpu_train.py "$@"
