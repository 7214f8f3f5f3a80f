"""Export a trained run for local use (`molt export RUN --to merged|gguf|ollama`).

Reached through `export_run(run_dir, target, quant)`. Each target builds on the one before, and each is
reused when it is already there for the same adapter (so exporting to all three merges once):

- `merged` (RUN/export/merged/): the adapter merged into the base with PEFT's `merge_and_unload`, in fp32,
  saved as safetensors with the run's tokenizer and chat template, and a generation_config.json whose
  `eos_token_id` lists every end-of-turn token, so `generate()` stops where training taught it to.
- `gguf` (RUN/export/gguf/): llama.cpp's own converter at f16, plus `--quant q8_0|q4_k_m` through
  llama.cpp's quantizer (see `llama_cpp_tools`).
- `ollama` (RUN/export/ollama/): the GGUF (the quantised one when asked for, else f16) and a Modelfile:
  the chat template as a Go TEMPLATE that renders identically, SYSTEM = the inference prompt, a stop
  for every end-of-turn token, the run's generation settings (see `ollama_modelfile`).

Every file is written to a staging folder or a partial file and moved into place when complete.
"""

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from molting.card.persona import load_persona
from molting.config import load_resolved_config
from molting.errors import UserError
from molting.export.llama_cpp_tools import QUANT_BLOCK, QUANT_FTYPES, convert_to_gguf, gguf_summary, quantize_gguf
from molting.export.ollama_modelfile import (
    TemplateNotPortable,
    chat_segments,
    go_template,
    modelfile_text,
    sample_conversations,
    template_leaves_out,
    template_mismatches,
)
from molting.io import replace_dir_atomic, sha256_file, staging_dir, write_json_atomic, write_text_atomic
from molting.models.base_model import eos_token_ids, load_model
from molting.paths import RunPaths
from molting.train.manifest import versions
from molting.train.run_lock import holds_run_lock

TARGETS = ("merged", "gguf", "ollama")
RECORD = "molting_export.json"


def _adapter_dir(run_dir: Path) -> Path:
    adapter = RunPaths(run_dir).adapter
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: no trained adapter. Train first: molt train CONFIG --name {run_dir.name}.")
    return adapter


def _adapter_sha(run_dir: Path) -> str:
    return sha256_file(_adapter_dir(run_dir) / "adapter_model.safetensors")


def _record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None


_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt")


def saved_tokenizer(folder: Path):
    """The tokenizer saved in a folder molting wrote (the adapter's, the merged model's), loaded once per process
    while its files are unchanged: `molt export --verify` read each of the two twice, about 3 s a load on Gemma 3's
    262,144-token vocabulary. Callers read it and never change it."""
    stats = sorted((p.name, p.stat()) for p in Path(folder).iterdir() if p.is_file() and not p.name.endswith(_WEIGHTS))
    fingerprint = tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)
    return _tokenizer_of(str(Path(folder).resolve()), fingerprint)


@lru_cache(maxsize=4)
def _tokenizer_of(folder: str, fingerprint: tuple):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def load_adapter_model(run_dir: Path, merge: bool):
    """The run's base in fp32 with its adapter (merged into the weights, or kept as a PEFT wrapper), and
    the run's tokenizer."""
    from peft import PeftModel

    config = load_resolved_config(run_dir)
    adapter = _adapter_dir(run_dir)
    model = PeftModel.from_pretrained(load_model(config.base_model, "float32", "cpu"), str(adapter))
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, saved_tokenizer(adapter)


def export_merged(run_dir: Path, say=print) -> Path:
    from transformers import GenerationConfig

    out = RunPaths(run_dir).export("merged")
    sha = _adapter_sha(run_dir)
    record = _record(out)
    if record and record.get("adapter_sha256") == sha and (out / "model.safetensors").is_file():
        say(f"merged model up to date: {out}")
        return out
    say("merging the adapter into the base (PEFT merge_and_unload, fp32)")
    model, tokenizer = load_adapter_model(run_dir, merge=True)
    eos = sorted(eos_token_ids(tokenizer, model))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos[0] if len(eos) == 1 else eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.config.eos_token_id = eos[0] if len(eos) == 1 else eos
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out.parent, ".merged.")
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        # A SentencePiece base's tokenizer.model (TinyLlama's, Phi-3's), which save_pretrained of a fast tokenizer
        # does not write and llama.cpp's converter reads the vocabulary from.
        from molting.models.resolve import resolve_base

        spm_model = Path(resolve_base(load_resolved_config(run_dir).base_model)) / "tokenizer.model"
        if spm_model.is_file() and not (staging / "tokenizer.model").exists():
            shutil.copy(spm_model, staging / "tokenizer.model")
        # molting trains and evaluates on the rendered chat template with no tokens added around it (a BOS
        # is there only if the template writes one). Said explicitly, so that transformers and llama.cpp
        # (the converter copies it to tokenizer.ggml.add_bos_token; unset, llama.cpp adds a BOS) prompt the
        # model as it was trained.
        tokenizer_config = json.loads((staging / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer_config.update({"add_bos_token": False, "add_eos_token": False})
        write_json_atomic(staging / "tokenizer_config.json", tokenizer_config)
        write_json_atomic(
            staging / RECORD,
            {
                "run": str(run_dir.resolve()),
                "adapter_sha256": sha,
                "base_model": load_resolved_config(run_dir).base_model,
                "dtype": "float32",
                "end_of_turn_token_ids": eos,
                "versions": versions(),
            },
        )
        replace_dir_atomic(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _quant_notes(summary: dict, quant: str, shapes: list[tuple[int, ...]]) -> list[str]:
    """Say plainly when llama.cpp had to fall back to other types (rows not a multiple of the block)."""
    block = QUANT_BLOCK[quant]
    matrices = [s for s in shapes if len(s) >= 2]  # 1-D tensors (norms) are never quantised
    misfit = sum(1 for s in matrices if s[0] % block)
    notes = []
    if misfit:
        notes.append(
            f"{misfit} of {len(matrices)} weight matrices have rows that are not a multiple of {block}, which "
            f"{quant} needs; "
            f"llama.cpp stored them in other types. Tensor types in the file: {summary['tensor_types']}."
        )
    return notes


def _conversion_view(merged: Path, view: Path) -> Path:
    """What the converter reads: the merged folder (linked), with one thing said explicitly in
    tokenizer_config.json. A SentencePiece tokenizer whose Metaspace pre-tokenizer prepends '▁' only at the
    start of the text ("first", transformers' non-legacy default) adds none after a special token such as
    `</s>`; llama.cpp's `add_space_prefix`, on by default, adds one after every special token, which puts
    an extra token after each turn of the prompt. Off, llama.cpp differs only in the text's very first
    '▁' (llama.cpp has no "first only" mode); `--verify` reports the prompts it tokenizes differently.
    The merged folder itself is left as transformers reads it."""
    for item in merged.iterdir():
        (view / item.name).symlink_to(item.resolve())
    try:
        pre = json.loads((merged / "tokenizer.json").read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return view
    metaspace = [p for p in [pre, *pre.get("pretokenizers", [])] if p.get("type") == "Metaspace"]
    if metaspace and metaspace[0].get("prepend_scheme") == "first":
        config = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
        (view / "tokenizer_config.json").unlink()
        write_json_atomic(view / "tokenizer_config.json", {**config, "add_prefix_space": False})
    return view


def export_gguf(run_dir: Path, merged: Path, quant: str | None, say=print) -> dict:
    """f16 GGUF (and the quantised one). Returns {"f16": summary, quant: summary, "notes": [...]}."""
    out = RunPaths(run_dir).export("gguf")
    sha = _record(merged)["adapter_sha256"]
    f16 = out / f"{run_dir.name}-f16.gguf"
    record = _record(out) or {}
    if record.get("adapter_sha256") != sha or not f16.is_file():
        say("converting to GGUF f16 with llama.cpp's convert_hf_to_gguf.py")
        with tempfile.TemporaryDirectory() as view:
            convert_to_gguf(_conversion_view(merged, Path(view)), f16, "f16", say=say)
        record = {"adapter_sha256": sha, "files": {}}
    record.setdefault("files", {})["f16"] = gguf_summary(f16)
    result = {"f16": record["files"]["f16"], "notes": []}
    if quant:
        if quant not in QUANT_FTYPES:
            raise UserError(f"--quant {quant}: unknown. Use one of: {', '.join(QUANT_FTYPES)}.")
        target = out / f"{run_dir.name}-{quant}.gguf"
        say(f"quantising to {quant} with llama.cpp (llama_model_quantize)")
        quantize_gguf(f16, target, quant)
        summary = gguf_summary(target)
        from molting.models.gguf_reading import gguf_metadata

        shapes = [t.shape for t in gguf_metadata(f16).tensors]
        summary["notes"] = _quant_notes(summary, quant, shapes)
        record["files"][quant] = summary
        result[quant] = summary
        result["notes"] = summary["notes"]
        for note in summary["notes"]:
            say(f"note: {note}")
    write_json_atomic(out / RECORD, record)
    return result


def export_ollama(run_dir: Path, merged: Path, gguf_file: Path, say=print) -> Path:
    config = load_resolved_config(run_dir)
    persona = load_persona(config.persona)
    system = persona.system_prompts.inference.strip()
    tokenizer = saved_tokenizer(merged)
    try:
        template = go_template(chat_segments(tokenizer))
        mismatches = template_mismatches(template, tokenizer, sample_conversations(system))
        if mismatches:
            raise TemplateNotPortable(
                "the Go TEMPLATE renders differently from the chat template:\n"
                f"  chat template: {mismatches[0]['chat_template']!r}\n"
                f"  TEMPLATE:      {mismatches[0]['modelfile_template']!r}"
            )
        stops = [tokenizer.convert_ids_to_tokens(i) for i in _record(merged)["end_of_turn_token_ids"]]
        text = modelfile_text(
            gguf_file.name,
            template,
            system,
            stops,
            config.generation,
            str(run_dir.resolve()),
            leaves_out=template_leaves_out(tokenizer.chat_template),
        )
    except TemplateNotPortable as e:
        raise UserError(
            f"{run_dir}: cannot write an Ollama Modelfile: {e}. The merged model and the GGUF are exported; "
            "write the Modelfile's TEMPLATE by hand (the GGUF carries the chat template for llama.cpp)."
        ) from None
    out = RunPaths(run_dir).export("ollama")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out.parent, ".ollama.")
    try:
        try:
            os.link(gguf_file, staging / gguf_file.name)  # no second copy of the weights where possible
        except OSError:
            shutil.copy2(gguf_file, staging / gguf_file.name)
        write_text_atomic(staging / "Modelfile", text)
        replace_dir_atomic(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


@holds_run_lock("molt export")
def export_run(run_dir: str | Path, target: str, quant: str | None = None, say=print) -> dict:
    """Export RUN to `target`; returns where everything went (the CLI prints it)."""
    run_dir = Path(run_dir)
    if target not in TARGETS:
        raise UserError(f"--to {target}: unknown target. Use one of: {', '.join(TARGETS)}.")
    if quant and target == "merged":
        raise UserError("--quant applies to --to gguf or --to ollama; a merged model is saved in fp32.")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory. Train first: molt train CONFIG --name NAME.")
    _adapter_dir(run_dir)
    result: dict = {"target": target, "quant": quant, "merged": str(export_merged(run_dir, say))}
    if target in ("gguf", "ollama"):
        gguf = export_gguf(run_dir, Path(result["merged"]), quant, say)
        result["gguf"] = {k: v for k, v in gguf.items() if k != "notes"}
        result["notes"] = gguf["notes"]
        chosen = gguf[quant] if quant else gguf["f16"]
        result["gguf_file"] = str(RunPaths(run_dir).export("gguf") / chosen["file"])
    if target == "ollama":
        result["ollama"] = str(export_ollama(run_dir, Path(result["merged"]), Path(result["gguf_file"]), say))
    return result
