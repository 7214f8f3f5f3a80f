"""Reading GGUF files in a fraction of the time the gguf package takes.

gguf-py's `GGUFReader` parses every field of a file up front, and a vocabulary is one field of 150,000 to
262,144 strings, each cut from the file as two numpy views. The file is a `numpy.memmap`, and every view of a
memmap runs memmap's Python-level `__getitem__` and `__array_finalize__`: 7 s for Qwen2's vocabulary on 2
cores, about 15 s for Gemma 3's, and transformers' GGUF loader builds a new reader for the config, again for
the tokenizer, and again for the weights. The same parse over a plain ndarray view of the same mapping reads
the same bytes, about 3.5 times faster (bench/RESULTS.md, "Reading GGUF files").

`gguf_reader(path)` is that reader; `fast_gguf_reading()` puts it, for the duration, where transformers and
llama.cpp's scripts get theirs (`gguf.GGUFReader`), each file parsed once within it. Within
`fast_gguf_reading()` only read-only readers are changed: one opened to write a field ("r+") is gguf-py's own.

molting's own reads need the header only (an export's architecture, special tokens, tensor types, the
add-BOS flag it rewrites): `gguf_metadata(path)` reads it in one pass, 17 to 29 times faster than the fast
reader on llama.cpp's vocabularies and Gemma 3's file (bench/RESULTS.md, "Reading GGUF files").
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


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
            self._mapping = value  # the view alone does not keep the mapping open
            self._plain = value.view(np.ndarray) if isinstance(value, np.memmap) else value

    return FastGGUFReader


def gguf_reader(path: str | Path):
    """A read-only GGUFReader of `path`, parsed the fast way."""
    return _fast_reader_class()(str(path), "r")


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


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # the dimensions as the file stores them (ggml's order), as gguf-py's ReaderTensor.shape
    type_name: str  # gguf.GGMLQuantizationType's name: "F16", "Q8_0", …


@dataclass(frozen=True)
class GGUFMetadata:
    """A GGUF file's key-value fields (decoded: numbers, strings, lists) and its tensors' names, shapes and types."""

    fields: dict[str, Any]
    tensors: list[GGUFTensorInfo]
    value_offsets: dict[str, int]  # where each scalar field's value lies in the file (to rewrite it in place)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: str | Path) -> GGUFMetadata:
    """The header of a GGUF file, read in one pass over the bytes it takes, without gguf-py's reader: that one
    parses every field into numpy views, seconds for a 150k-262k vocabulary even the fast way, where what an
    export reads back (the architecture, the special tokens, the tensor types, one flag) is a few fields
    (bench/gguf_read.py times the three side by side). Arrays of numbers are decoded with numpy, arrays of
    strings one string at a time. The tensor data is not read, only checked to be all there. Raises
    ValueError (or a struct error) on a file that is not a GGUF or is cut short."""
    import math
    import mmap
    import struct

    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (no GGUF magic)")
        version, n_tensors, n_fields = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 and later are)")
        offset = 24

        def string() -> str:
            nonlocal offset
            (length,) = struct.unpack_from("<Q", buf, offset)
            text = buf[offset + 8 : offset + 8 + length].decode("utf-8", errors="replace")
            offset += 8 + length
            return text

        def value(kind: int):
            nonlocal offset
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item_kind, count = struct.unpack_from("<IQ", buf, offset)
                offset += 12
                if item_kind == _STRING:
                    return [string() for _ in range(count)]
                if item_kind == _ARRAY:
                    return [value(_ARRAY) for _ in range(count)]
                dtype = np.dtype(_SCALARS[item_kind])
                items = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).tolist()
                offset += dtype.itemsize * count
                return items
            fmt = _SCALARS[kind]
            (item,) = struct.unpack_from(fmt, buf, offset)
            offset += struct.calcsize(fmt)
            return item

        fields: dict[str, Any] = {}
        offsets: dict[str, int] = {}
        for _ in range(n_fields):
            key = string()
            (kind,) = struct.unpack_from("<I", buf, offset)
            offset += 4
            if kind not in (_STRING, _ARRAY):
                offsets[key] = offset
            fields[key] = value(kind)
        tensors = []
        data_end = 0
        for _ in range(n_tensors):
            name = string()
            (n_dims,) = struct.unpack_from("<I", buf, offset)
            shape = struct.unpack_from(f"<{n_dims}Q", buf, offset + 4)
            (type_id,) = struct.unpack_from("<I", buf, offset + 4 + 8 * n_dims)
            (data_offset,) = struct.unpack_from("<Q", buf, offset + 4 + 8 * n_dims + 4)
            offset += 4 + 8 * n_dims + 4 + 8  # the dimensions, the type, the data's offset
            kind = GGMLQuantizationType(type_id)
            block, block_bytes = GGML_QUANT_SIZES[kind]
            data_end = max(data_end, data_offset + math.prod(shape) // block * block_bytes)
            tensors.append(GGUFTensorInfo(name, tuple(shape), kind.name))
        alignment = int(fields.get("general.alignment", 32))
        data_start = (offset + alignment - 1) // alignment * alignment
        if tensors and data_start + data_end > len(buf):
            raise ValueError(
                f"{path}: the file ends at byte {len(buf):,}, before its tensor data does ({data_start + data_end:,})"
            )
    return GGUFMetadata(fields, tensors, offsets)
