"""The fast GGUF reader reads what gguf-py's own reads, field for field, on llama.cpp's real vocabulary files;
within `fast_gguf_reading()` transformers' loader gets it, and a file is parsed once."""

import numpy as np
from gguf.gguf_reader import GGUFReader

from molting.export.llama_cpp_tools import fetch_model_files
from molting.models.gguf_reading import fast_gguf_reading, gguf_reader


def _vocab(name: str):
    return fetch_model_files() / "models" / name


def test_every_field_reads_the_same_as_gguf_py():
    path = _vocab("ggml-vocab-phi-3.gguf")  # 32,064 pieces, scores and types, merges-free SPM
    slow, fast = GGUFReader(str(path)), gguf_reader(path)
    assert list(slow.fields) == list(fast.fields)
    for name, field in slow.fields.items():
        mine = fast.fields[name]
        assert mine.types == field.types, name
        expected, got = field.contents(), mine.contents()
        if isinstance(expected, list) and expected and isinstance(expected[0], float):
            assert np.array_equal(np.array(expected), np.array(got)), name
        else:
            assert got == expected, name
    assert [t.name for t in slow.tensors] == [t.name for t in fast.tensors]


def test_inside_the_context_each_file_is_parsed_once(monkeypatch):
    import gguf
    from transformers import AutoTokenizer

    path = _vocab("ggml-vocab-llama-spm.gguf")
    parsed = []
    real = gguf_reader

    def counting(p, mode="r"):
        parsed.append(str(p))
        return real(p, mode)

    monkeypatch.setattr("molting.models.gguf_reading.gguf_reader", counting)
    opened = []
    with fast_gguf_reading():
        stand_in = gguf.GGUFReader
        assert stand_in is not GGUFReader
        monkeypatch.setattr(gguf, "GGUFReader", lambda p, mode="r": opened.append(p) or stand_in(p, mode))
        first = gguf.GGUFReader(str(path))  # as molting reads the architecture before transformers loads
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        assert gguf.GGUFReader(str(path)) is first
        monkeypatch.setattr(gguf, "GGUFReader", stand_in)
    assert gguf.GGUFReader is GGUFReader  # put back
    assert len(opened) == 3 and parsed == [str(path)]  # opened three times, parsed once
    reference = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)  # gguf-py's reader
    text = "Olá, João! Como vai o CRM da Softtor?\n<s>"
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    assert tokenizer.get_vocab() == reference.get_vocab()
