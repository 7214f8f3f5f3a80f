"""The fast GGUF reader and the header reader read what gguf-py's own reads, field for field, on llama.cpp's real
vocabulary files; within `fast_gguf_reading()` transformers' loader gets the fast reader, and a file is parsed once."""

import numpy as np
import pytest
from gguf.gguf_reader import GGUFReader

from molting.export.llama_cpp_tools import fetch_model_files
from molting.models.gguf_reading import fast_gguf_reading, gguf_metadata, gguf_reader


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

    def counting(p):
        parsed.append(str(p))
        return real(p)

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


@pytest.mark.parametrize("name", ["ggml-vocab-phi-3.gguf", "ggml-vocab-llama-bpe.gguf"])
def test_the_header_reads_every_field_as_gguf_py(name):
    """gguf_metadata (the header alone, for molting's own reads) decodes every field to what gguf-py's reader
    gives (through the fast reader, which reads as gguf-py's does: above), on a SentencePiece vocabulary (scores,
    types) and a BPE one (merges)."""
    path = _vocab(name)
    reference, metadata = gguf_reader(path), gguf_metadata(path)
    names = [n for n in reference.fields if not n.startswith("GGUF.")]  # gguf-py's header pseudo-fields
    assert names == list(metadata.fields)
    for n in names:
        assert metadata.fields[n] == reference.fields[n].contents(), n


def test_the_header_reads_tensors_and_a_flag_in_place_and_refuses_a_cut_file(tmp_path):
    import gguf

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_add_bos_token(True)
    writer.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float16))
    writer.add_tensor("output.weight", np.ones((3, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    metadata = gguf_metadata(path)
    reference = GGUFReader(str(path))
    assert [(t.name, t.shape, t.type_name) for t in metadata.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name) for t in reference.tensors
    ]
    assert metadata.fields["tokenizer.ggml.add_bos_token"] is True
    with path.open("rb") as f:
        f.seek(metadata.value_offsets["tokenizer.ggml.add_bos_token"])
        assert f.read(1) == b"\x01"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-8])  # the last tensor's last bytes missing
    with pytest.raises(ValueError, match="before its tensor data does"):
        gguf_metadata(cut)
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        gguf_metadata(text)
