"""Shared bits of the benchmark scripts: the machine they ran on, and printing a result table."""

import json
import os
import platform
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "claudio"


def machine_line() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def emit(name: str, rows: list[dict], extra: dict | None = None) -> None:
    """Print the figures as a table and as one JSON line (for bench/RESULTS.md and for machines)."""
    from molting.train.manifest import versions

    print(f"\n== {name} — {machine_line()}")
    if rows:
        keys = list(rows[0])
        print(" | ".join(keys))
        for r in rows:
            print(" | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    for k, v in (extra or {}).items():
        print(f"{k}: {v}")
    print(
        "JSON "
        + json.dumps(
            {"bench": name, "machine": machine_line(), "versions": versions(), "rows": rows, **(extra or {})},
            ensure_ascii=False,
        )
    )
