"""What this machine's CPU offers the models: native bf16 or not.

Read by the loader (`base_model.mixed_precision` picks bf16 autocast on such a CPU), by the builtin
bases' build-time pretraining and by `molt doctor`, which reports it.
"""

from pathlib import Path


def cpu_supports_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 or AMX): bf16 autocast is then 2-3× faster than fp32.
    Without it bf16 is emulated and slower, so molting stays in fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
