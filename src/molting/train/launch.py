"""`molt train --nproc N`: the same command, run under torchrun with N processes (DDP).

No launcher of our own: this only re-runs `python -m molting <the same arguments without --nproc>` under
`python -m torch.distributed.run --standalone --nproc_per_node N`, which sets RANK/WORLD_SIZE/LOCAL_RANK
for each process; `train.train_run` is rank-aware from there. For FSDP or DeepSpeed, or several
machines, call `accelerate launch --config_file examples/accelerate/<file>.yaml -m molting train ...`
directly (README, "More than one device").
"""

import subprocess
import sys


def without_nproc(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def torchrun(nproc: int, args: list[str]) -> int:
    """Run `molt <args>` in `nproc` processes under torchrun; returns torchrun's exit code."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "molting",
        *without_nproc(args),
    ]
    return subprocess.call(command)
