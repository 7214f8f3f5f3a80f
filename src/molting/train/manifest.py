"""What a run records about itself (manifest.json): versions, input hashes, machine, timings, memory.

A result is only worth comparing if it can be traced to exactly the data, persona and code that made it.
"""

import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from molting.io import sha256_file

PACKAGES = ("molting", "torch", "transformers", "peft", "trl", "accelerate", "tokenizers", "datasets")


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(folder: str | Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def machine() -> dict:
    import os

    import psutil
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started, in MB.

    On Linux it is VmHWM from /proc/self/status, not getrusage's ru_maxrss: the kernel carries ru_maxrss over
    from the parent through fork and exec, so a `molt train` started by a process that once held 1.7 GB
    reported 1.7 GB whatever it used itself (bench/memory.py's runs did, after the bench built a base
    in-process). VmHWM belongs to the process's own address space. Elsewhere ru_maxrss (bytes on macOS, KB
    on other systems) is what there is."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def peak_memory_mb(device: str) -> dict:
    """Peak memory so far: CUDA max allocated on a GPU, and the process's peak RSS always."""
    import torch

    out = {"peak_rss_mb": peak_rss_mb()}
    if device == "cuda":
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def inputs_record(persona: str, data: str | list[str], suite: str, eval_data: str | None = None) -> dict:
    """Path and sha256 of each input; `data` is a list of them when molt.yaml lists several files; eval_data
    only when there is one."""

    def record(p: str) -> dict:
        return {"path": str(p), "sha256": sha256_file(p)}

    return {
        "persona": record(persona),
        "data": [record(p) for p in data] if isinstance(data, list) else record(data),
        "suite": record(suite),
        **({"eval_data": record(eval_data)} if eval_data else {}),
    }
