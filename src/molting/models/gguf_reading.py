"""Reading GGUF files in a fraction of the time the gguf package takes.

gguf-py's `GGUFReader` parses every field of a file up front, and a vocabulary is one field of 150,000 to
262,144 strings, each cut from the file as two numpy views. The file is a `numpy.memmap`, and every view of a
memmap runs memmap's Python-level `__getitem__` and `__array_finalize__`: 7 s for Qwen2's vocabulary on 2
cores, about 15 s for Gemma 3's, and transformers' GGUF loader builds a new reader for the config, again for
the tokenizer, and again for the weights. The same parse over a plain ndarray view of the same mapping reads
the same bytes, about 3.5 times faster (bench/RESULTS.md, "Reading GGUF files").

`gguf_reader(path)` is that reader for molting's own reads; `fast_gguf_reading()` puts it, for the duration,
where transformers and llama.cpp's scripts get theirs (`gguf.GGUFReader`), each file parsed once within it.
Within `fast_gguf_reading()` only read-only readers are changed: one opened to write a field ("r+") is
gguf-py's own there.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path


@cache
def _fast_reader_class():
    import numpy as np
    from gguf.gguf_reader import GGUFReader  # the class itself, never the stand-in below

    class FastGGUFReader(GGUFReader):
        """GGUFReader over a plain ndarray view of its memmap (the mapping stays open through the view)."""

        @property  # type: ignore[override]
        def data(self):
            return self._plain

        @data.setter
        def data(self, value) -> None:
            self._mapping = value
            self._plain = value.view(np.ndarray) if isinstance(value, np.memmap) else value

        def flush(self) -> None:
            """Write what was changed through the fields back to the file (mode "r+")."""
            self._mapping.flush()

    return FastGGUFReader


def gguf_reader(path: str | Path, mode: str = "r"):
    """A GGUFReader of `path`, parsed the fast way; mode "r+" to change a field in place, then `flush()`."""
    return _fast_reader_class()(str(path), mode)


@contextmanager
def fast_gguf_reading() -> Iterator[None]:
    """While inside: `gguf.GGUFReader(path)` (transformers' `from_pretrained(…, gguf_file=…)` calls it) gives a
    fast reader, and the same file is parsed once however often it is opened."""
    import gguf
    from gguf.gguf_reader import GGUFReader as original

    parsed: dict[tuple[str, int, int], object] = {}

    def reader(path, mode="r"):
        if mode != "r":
            return original(path, mode)
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in parsed:
            parsed[key] = gguf_reader(path)
        return parsed[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
