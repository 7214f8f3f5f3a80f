"""llama.cpp's own tools for the GGUF export: its converter, its quantizer, and its runtime for `--verify`.

Reached through `convert_to_gguf`, `quantize_gguf` and `fetch_converter` (from `export`).

Nothing here re-implements llama.cpp. The converter (`convert_hf_to_gguf.py` with its `conversion/`
package and its own `gguf-py`) is not a pip package: it ships in llama.cpp's sources, and the pinned
llama-cpp-python sdist carries those sources. molting extracts the converter from that sdist, the same
llama.cpp commit as the library `--verify` runs the GGUF with, once, into `<python prefix>/share/molting/`
(`make setup` does it; otherwise the first GGUF export does, with `pip download`). Set
`MOLTING_LLAMA_CPP_DIR` to a llama.cpp checkout to use its converter instead. Quantization goes through
llama.cpp's C API (`llama_model_quantize`), which llama-cpp-python exposes.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from molting.errors import UserError
from molting.io import staging_dir

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # keep equal to the pin in pyproject.toml
CONVERTER_ENV = "MOLTING_LLAMA_CPP_DIR"

# File types molting offers after f16, with llama.cpp's enum value (llama.h, llama_ftype).
QUANT_FTYPES = {"q8_0": 7, "q4_k_m": 15}
# ggml block sizes: a tensor whose rows are not a multiple of its type's block cannot use that type, and
# llama.cpp falls back to another type for it (k-quants need 256).
QUANT_BLOCK = {"q8_0": 32, "q4_k_m": 256}


def converter_home() -> Path:
    """Inside the Python environment (it belongs to the installed llama-cpp-python version), or in the
    molting cache when the environment is not writable (a system Python)."""
    name = f"llama.cpp-from-llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"
    if os.access(sys.prefix, os.W_OK):
        return Path(sys.prefix) / "share" / "molting" / name
    from molting.models.builtin_base import cache_dir

    return cache_dir() / name


def find_converter() -> Path | None:
    custom = os.environ.get(CONVERTER_ENV)
    if custom:
        script = Path(custom) / "convert_hf_to_gguf.py"
        if not script.is_file():
            raise UserError(
                f"{CONVERTER_ENV}={custom}: no convert_hf_to_gguf.py there. Point it at a llama.cpp checkout."
            )
        return script
    script = converter_home() / "convert_hf_to_gguf.py"
    return script if script.is_file() else None


def fetch_converter(say=print) -> Path:
    """Extract llama.cpp's converter from the pinned llama-cpp-python sdist (downloaded with pip)."""
    found = find_converter()
    if found:
        return found
    home = converter_home()
    say(f"fetching llama.cpp's converter from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} (once, into {home})")
    _extract_from_sdist(home, ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE"), "convert_hf_to_gguf.py")
    return home / "convert_hf_to_gguf.py"


# The real vocabularies (vocab-only GGUFs llama.cpp tests its tokenizers on) and chat templates of the families
# users train, from the same sdist: what the `builtin:<family>` bases are built from (molting.models.family_base).
SDIST_MODEL_FILES = (
    "models/ggml-vocab-llama-spm.gguf",
    "models/ggml-vocab-phi-3.gguf",
    "models/ggml-vocab-qwen2.gguf",
    "models/ggml-vocab-llama-bpe.gguf",
    "models/templates/microsoft-Phi-3.5-mini-instruct.jinja",
    "models/templates/Qwen-Qwen2.5-7B-Instruct.jinja",
    "models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
    "models/templates/Qwen-Qwen3-0.6B.jinja",
    "LICENSE",
)


def models_home() -> Path:
    return converter_home().with_name(f"llama.cpp-models-from-llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}")


def fetch_model_files(say=print) -> Path:
    """The folder holding `SDIST_MODEL_FILES` (extracted from the pinned sdist once; `make setup-dev` does it)."""
    home = models_home()
    if all((home / name).is_file() for name in SDIST_MODEL_FILES):
        return home
    say(
        f"fetching llama.cpp's vocabularies and chat templates from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} "
        f"(once, into {home})"
    )
    _extract_from_sdist(home, SDIST_MODEL_FILES, SDIST_MODEL_FILES[0])
    return home


def _extract_from_sdist(home: Path, wanted: tuple[str, ...], must_have: str) -> None:
    """Download the pinned sdist and extract the files of vendor/llama.cpp/ that start with one of `wanted` into
    `home` (staged, then renamed: an interrupted extraction leaves nothing)."""
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            + ["--dest", download, f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"],
            capture_output=True,
            text=True,
        )
        archives = list(Path(download).glob("llama_cpp_python-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise UserError(
                f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}'s sources for llama.cpp's "
                f"files ({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no archive'}). "
                f"Check the network (or run `make setup-dev` where there is one), or set {CONVERTER_ENV} to a "
                "llama.cpp checkout for the converter."
            )
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(home.parent, f".{home.name}.")
        try:
            prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
            with tarfile.open(archives[0]) as tar:
                members = []
                for member in tar.getmembers():
                    rel = member.name[len(prefix) :] if member.name.startswith(prefix) else None
                    if rel and rel.startswith(wanted) and (member.isfile() or member.isdir()):
                        member.name = rel
                        members.append(member)
                tar.extractall(staging, members=members, filter="data")
            if not (staging / must_have).is_file():
                raise RuntimeError(f"{archives[0].name} holds no vendor/llama.cpp/{must_have}")
            if home.exists() and not (home / must_have).is_file():
                shutil.rmtree(home, ignore_errors=True)  # an older, incomplete extraction
            try:
                os.replace(staging, home)
            except OSError:  # another process extracted the same files first
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def convert_to_gguf(model_dir: Path, out_file: Path, outtype: str = "f16", say=print) -> None:
    """Run llama.cpp's converter on a Hugging Face model folder. Raises UserError with its last words."""
    script = fetch_converter(say)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    result = subprocess.run(
        [sys.executable, str(script), str(model_dir), "--outfile", str(partial), "--outtype", outtype],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise UserError(f"llama.cpp's converter ({script}) could not convert {model_dir}:\n{tail}")
    prompt_without_added_bos(partial)
    os.replace(partial, out_file)


def prompt_without_added_bos(path: Path) -> bool:
    """Set the GGUF's `tokenizer.ggml.add_bos_token` to false, in place; True when it was true.

    molting trains and evaluates on the rendered chat template alone: a BOS is in the prompt only where the
    template writes one (Gemma's does). llama.cpp, llama-server and Ollama add another one when this flag
    is true, and the converter can leave it true whatever tokenizer_config.json says (it did for Gemma 3
    270M): the served prompt then starts <bos><bos>, a prompt the model never saw. The flag is a one-byte
    field, so it is rewritten where it lies."""
    from molting.models.gguf_reading import gguf_metadata

    metadata = gguf_metadata(path)
    if metadata.fields.get("tokenizer.ggml.add_bos_token") is not True:
        return False
    with open(path, "r+b") as f:
        f.seek(metadata.value_offsets["tokenizer.ggml.add_bos_token"])
        f.write(b"\x00")
    return True


def import_llama_cpp():
    """llama-cpp-python, or a UserError saying how to install it (it is an optional dependency)."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(
            "this needs llama-cpp-python: pip install 'molting[export]' (or "
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}; pip builds it from source once)."
        ) from None
    return llama_cpp


def load_gguf(path: Path, n_ctx: int = 2048):
    """A llama_cpp.Llama over a GGUF file, with llama.cpp's weight repacking ("extra buffer types") off.

    On CPUs with AMX (Intel Sapphire Rapids and later) llama.cpp repacks quantised weights into an AMX buffer,
    and its AMX matmul then segfaults in the first decode (ggml-org/llama.cpp#20824; seen here on a q8_0 GGUF):
    the whole process dies, with no error to report. Without repacking the same kernels as on any other
    CPU run, slower but identical in what they compute, which is what a verification compares. Llama() has no
    argument for it, so its default model parameters are swapped for the duration of the load."""
    import_llama_cpp()  # the install hint when it is missing
    import llama_cpp.llama_cpp as bindings
    from llama_cpp import Llama

    defaults = bindings.llama_model_default_params

    def without_repacking():
        params = defaults()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = without_repacking
    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count() or 1, seed=0, verbose=False)
    finally:
        bindings.llama_model_default_params = defaults


def quantize_gguf(source: Path, out_file: Path, quant: str) -> None:
    """llama.cpp's quantizer (llama_model_quantize) from an f16 GGUF."""
    import ctypes

    llama_cpp = import_llama_cpp()

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.nthread = os.cpu_count() or 1
    partial = out_file.with_name(f".{out_file.name}.partial")
    from llama_cpp._utils import suppress_stdout_stderr

    # llama.cpp logs a line per tensor; molting reads the result from the file instead (gguf_summary).
    with suppress_stdout_stderr(disable=False):
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise UserError(f"llama.cpp could not quantize {source} to {quant} (llama_model_quantize returned {code}).")
    os.replace(partial, out_file)


def gguf_summary(path: Path) -> dict:
    """What a GGUF says about itself (its header, molting.models.gguf_reading.gguf_metadata): architecture, tensor
    count and types, the tokenizer's special tokens, the chat template."""
    from molting.models.gguf_reading import gguf_metadata

    metadata = gguf_metadata(path)
    field = metadata.fields.get
    types: dict[str, int] = {}
    for t in metadata.tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
    tokens = field("tokenizer.ggml.tokens") or []

    def token(key: str):
        i = field(key)
        return None if i is None else {"id": int(i), "text": tokens[int(i)] if int(i) < len(tokens) else None}

    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "architecture": field("general.architecture"),
        "file_type": field("general.file_type"),
        "tensor_count": len(metadata.tensors),
        "tensor_types": types,
        "vocab_size": len(tokens),
        "tokenizer_model": field("tokenizer.ggml.model"),
        "bos": token("tokenizer.ggml.bos_token_id"),
        "eos": token("tokenizer.ggml.eos_token_id"),
        "eot": token("tokenizer.ggml.eot_token_id"),
        "add_bos_token": field("tokenizer.ggml.add_bos_token"),
        "add_space_prefix": field("tokenizer.ggml.add_space_prefix"),
        "chat_template": field("tokenizer.chat_template"),
    }


if __name__ == "__main__":  # `python -m molting.export.llama_cpp_tools`: fetch the converter and files now (make setup)
    print(fetch_converter())
    print(fetch_model_files())
