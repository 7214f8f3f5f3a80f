"""`molt doctor`: what this machine has, and the known bad combinations of model, library and GPU.

Reached through `diagnose(model=None)`, which runs offline and returns a report (printed as a table, or
as JSON with `--json`): versions, CUDA and free VRAM, CPU bf16, and findings, each with its fix:

- the transformers 5 4-bit load spike: fp16 weights materialised on the GPU before quantisation
  (transformers #43032, Axolotl #3374), which ran Phi-3-mini out of memory on a 4 GB RTX 3050;
- stale remote code in the Hugging Face modules cache that reads `rope_scaling["type"]` where current
  configs say `"rope_type"`, so loading a current Phi-3 config fails with `KeyError: 'type'`;
- `trust_remote_code` on a model whose architecture transformers implements natively.
"""

import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from molting.findings import Finding
from molting.models.hardware import cpu_supports_bf16
from molting.models.resolve import resolve_base

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "tokenizers")
_OLD_ROPE_KEY = re.compile(r"""rope_scaling\s*\[\s*["']type["']\s*\]""")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def modules_cache() -> Path:
    from transformers.utils.hub import HF_MODULES_CACHE

    return Path(os.environ.get("HF_MODULES_CACHE") or HF_MODULES_CACHE)


def stale_rope_code(cache: Path) -> list[Path]:
    """Cached remote modeling files that index rope_scaling["type"] without a fallback to "rope_type"."""
    found = []
    for path in sorted(cache.rglob("modeling_*.py")) if cache.is_dir() else []:
        text = path.read_text(encoding="utf-8", errors="replace")
        if _OLD_ROPE_KEY.search(text) and "rope_type" not in text:
            found.append(path)
    return found


def remote_code_check(model: str) -> Finding:
    """Whether `model` (a local folder, a cached hub id or builtin:*) needs trust_remote_code."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    path = Path(resolve_base(model))
    config_file = path / "config.json"
    if config_file.is_file():
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    else:
        try:
            raw = AutoConfig.from_pretrained(str(path), trust_remote_code=False).to_dict()
        except Exception as e:  # offline, unknown id, or an architecture only remote code knows
            return Finding(
                "info",
                "remote_code",
                f"{model}: could not read its config.json offline ({type(e).__name__}).",
                "Run `molt doctor` where the model is cached or pass a local folder.",
            )
    model_type, auto_map = raw.get("model_type"), raw.get("auto_map")
    if model_type in CONFIG_MAPPING_NAMES:
        message = (
            f"{model}: model_type {model_type!r} is implemented natively by transformers {_version('transformers')}."
        )
        if auto_map:
            return Finding(
                "warning",
                "remote_code",
                message + " Its config also ships remote code (auto_map).",
                "Load it without trust_remote_code (molting does): the native code is maintained, "
                "the remote copy goes stale (a KeyError on rope_scaling['type'] once configs say rope_type).",
            )
        return Finding("ok", "remote_code", message + " No remote code needed.")
    if auto_map:
        return Finding(
            "warning",
            "remote_code",
            f"{model}: model_type {model_type!r} exists only as remote code (auto_map).",
            "It needs trust_remote_code=True, which molting does not set: read that code first, or "
            "pick a model transformers implements natively.",
        )
    return Finding(
        "error",
        "remote_code",
        f"{model}: unknown model_type {model_type!r} and no remote code.",
        "Upgrade transformers or pick another model.",
    )


class CudaFacts(TypedDict):
    available: bool
    torch_cuda: str | None  # the CUDA version torch was built with
    device: NotRequired[str]  # these four only when a CUDA device is there
    free_gb: NotRequired[float]
    total_gb: NotRequired[float]
    bf16: NotRequired[bool]


class DoctorReport(TypedDict):
    """`diagnose`'s result: what `molt doctor --json` prints."""

    versions: dict[str, str | None]  # package: version, None when not installed
    cuda: CudaFacts
    cpu_bf16: bool
    modules_cache: str
    findings: list[dict[str, Any]]  # level, check, message, fix


def diagnose(model: str | None = None) -> DoctorReport:
    import platform

    import torch

    versions = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}}
    cuda: CudaFacts = {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    findings: list[Finding] = []
    if cuda["available"]:
        free, total = torch.cuda.mem_get_info()
        cuda.update(
            {
                "device": torch.cuda.get_device_name(0),
                "free_gb": round(free / 2**30, 2),
                "total_gb": round(total / 2**30, 2),
                "bf16": torch.cuda.is_bf16_supported(),
            }
        )
    else:
        findings.append(
            Finding(
                "info",
                "cuda",
                "No CUDA device: training runs on the CPU "
                f"({'bf16 autocast' if cpu_supports_bf16() else 'fp32'}); 4-bit QLoRA needs a GPU.",
            )
        )

    transformers_major = int((versions["transformers"] or "0").split(".")[0])
    if transformers_major >= 5:
        spike = Finding(
            "warning" if cuda["available"] and versions["bitsandbytes"] else "info",
            "4bit_load_spike",
            f"transformers {versions['transformers']} can materialise fp16 weights on the GPU before quantising "
            "them to 4 bits (transformers #43032): Phi-3-mini needs about 7.6 GB for a moment, so it runs out of "
            "memory on a 4 GB GPU although it would fit in 4 bits.",
            "Use molting's train.quantization: 4bit, which loads with a device_map straight onto the GPU so "
            "transformers quantises tensor by tensor (synchronously, since 5.x's fix) and never holds the fp16 "
            "model there; `molt check` predicts both peaks. Or load a checkpoint saved already quantised to 4 "
            "bits, or run a GGUF conversion of the model in llama.cpp.",
        )
        findings.append(spike)
    if cuda["available"] and not versions["bitsandbytes"]:
        findings.append(
            Finding(
                "info",
                "bitsandbytes",
                "bitsandbytes is not installed: no 4/8-bit loading.",
                "pip install 'molting[gpu]'",
            )
        )

    cache = modules_cache()
    stale = stale_rope_code(cache)
    if stale:
        folders = sorted({str(p.parent) for p in stale})
        findings.append(
            Finding(
                "warning",
                "stale_remote_code",
                f'{len(stale)} cached remote modeling file(s) read rope_scaling["type"], which current configs '
                f'name "rope_type", so loading fails with a KeyError on "type": {", ".join(str(p) for p in stale)}',
                f"Delete {', '.join(folders)} (it is fetched again when needed), or load the model without "
                "trust_remote_code so transformers' own implementation is used.",
            )
        )
    else:
        findings.append(Finding("ok", "stale_remote_code", f"no stale remote modeling code in {cache}"))
    if model:
        findings.append(remote_code_check(model))
    return {
        "versions": versions,
        "cuda": cuda,
        "cpu_bf16": cpu_supports_bf16(),
        "modules_cache": str(cache),
        # every finding of the doctor's JSON has a fix, "" when there is nothing to do
        "findings": [{**f.as_dict(), "fix": f.fix or ""} for f in findings],
    }
