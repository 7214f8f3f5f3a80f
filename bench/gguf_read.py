"""Reading GGUF files: gguf-py's GGUFReader against molting's (molting.models.gguf_reading), side by side: the
fast reader (every field, what transformers' loader gets) and gguf_metadata (the header alone, molting's own reads).

Run: python bench/gguf_read.py
Files: llama.cpp's vocab-only GGUFs from the pinned llama-cpp-python sdist, and the packaged Gemma 3 270M
GGUF (when the molting[gemma] extra is installed). Each reader parses each file `--repeat` times (default 2);
the best time counts. Prints a table and a JSON line.
"""

import argparse
import json
import time

from gguf.gguf_reader import GGUFReader

from molting.export.llama_cpp_tools import fetch_model_files
from molting.models.gguf_reading import gguf_metadata, gguf_reader


def files() -> list:
    models = fetch_model_files() / "models"
    found = [models / f"ggml-vocab-{n}.gguf" for n in ("llama-spm", "phi-3", "qwen2", "llama-bpe")]
    try:
        from molting.models.builtin_base import cache_dir
        from molting.models.gguf_base import PACKAGED, packaged_base_path

        packaged_base_path("packaged:gemma-3-270m")  # assembles the GGUF (and converts it) on first use
        found.append(cache_dir() / "packaged" / PACKAGED["gemma-3-270m"].file)
    except Exception as e:  # noqa: BLE001 - the extra is optional here
        print(f"(packaged Gemma skipped: {e})")
    return found


def best(read, path, repeat: int):
    """(the shortest of `repeat` parses in seconds, the last reader)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reader = read(path)
        times.append(time.perf_counter() - started)
    return min(times), reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for path in files():
        slow, _ = best(lambda p: GGUFReader(str(p)), path, args.repeat)
        fast, reader = best(gguf_reader, path, args.repeat)
        header, _ = best(gguf_metadata, path, args.repeat)
        tokens = len(reader.fields["tokenizer.ggml.tokens"].data)
        rows.append(
            {
                "file": path.name,
                "tokens": tokens,
                "gguf_py_s": round(slow, 2),
                "molting_s": round(fast, 2),
                "metadata_s": round(header, 3),
            }
        )
    print("| file | vocabulary | gguf-py GGUFReader s | molting gguf_reader s | ratio | gguf_metadata s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["gguf_py_s"] / r["molting_s"]
        header_ratio = r["gguf_py_s"] / r["metadata_s"]
        print(
            f"| {r['file']} | {r['tokens']:,} | {r['gguf_py_s']} | {r['molting_s']} | {ratio:.2f}× "
            f"| {r['metadata_s']} | {header_ratio:.0f}× |"
        )
    print("JSON", json.dumps(rows))


if __name__ == "__main__":
    main()
