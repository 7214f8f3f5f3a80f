"""`builtin:<size>` base models: TinyLlama's shape in miniature, built offline and deterministically.

A builtin base is a Llama-architecture model with a SentencePiece tokenizer trained on the shipped example
persona's text, TinyLlama's (Zephyr) chat template and `</s>` ending each turn. It is saved as an ordinary
Hugging Face model directory in the molting cache and then loaded through the same `from_pretrained`
path as a hub id, so tests, the demo and the benchmarks exercise everything a real TinyLlama run does,
with no network.

A real chat base knows how to converse but not the persona. So that a builtin one does too, its weights
start from a fixed seed and are then trained briefly, at build time, on the example conversations in the
chat template with every name of the persona's world swapped, per conversation, for another (Cláudio,
João, Softtor, Molting, the CRM, the stack; the system prompt gets its own draw): the base learns to
answer in Portuguese and stop at `</s>`, but not who Cláudio works with, what Molting is or which stack
he knows.
Fine-tuning has to teach that. The corpus is small (35-45k tokens), so the base is a memoriser, not
a language model: expect the shape of the training answers, not fluent new text.

Reached through `builtin_path(spec)`, which `molting.models.resolve.resolve_base` calls for a `builtin:` base.
"""

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from molting.errors import UserError
from molting.io import build_dir_once, jsonl_lines, sha256_text
from molting.models.hardware import cpu_supports_bf16

# TinyLlama-1.1B-Chat-v1.0's chat template, verbatim.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

RECIPE_VERSION = 6  # bump when anything below changes what gets built

# Names of the example persona's world and what the pretraining text says instead: one column per
# document, so a document keeps a consistent cast (Pedro Almeida is always at Vantiq with Python).
NAME_SWAPS = [
    (r"Jo[ãa]o Figueiredo", ["Pedro Almeida", "Carla Nunes", "Tiago Moreira", "Beatriz Lopes"]),
    (r"Jo[ãa]o", ["Pedro", "Carla", "Tiago", "Beatriz"]),
    (r"Figueiredo", ["Almeida", "Nunes", "Moreira", "Lopes"]),
    (r"Cl[áa]udio", ["Bruno", "Marina", "Otávio", "Helena"]),
    (r"Softtor", ["Vantiq", "Lumera", "Norteia", "Pixelar"]),
    (r"Molting", ["Aurora", "Kestrel", "Farol", "Pilar"]),
    (r"TypeScript", ["Python", "Kotlin", "Ruby", "Go"]),
    (r"Next\.js", ["Nuxt", "Remix", "Astro", "SvelteKit"]),
    (r"NestJS", ["Django", "Spring", "Rails", "Flask"]),
    (r"React", ["Vue", "Svelte", "Angular", "Solid"]),
    (r"Prisma", ["SQLAlchemy", "Hibernate", "Sequelize", "Diesel"]),
    (r"Docker", ["Podman", "Vagrant", "Nix", "Ansible"]),
    (r"\bCRM\b", ["ERP", "portal", "app de agenda", "e-commerce"]),
]


@dataclass(frozen=True)
class BuiltinSize:
    pretrain_steps: int  # steps of 16 blocks × 128 tokens on the name-swapped example text
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int  # grouped-query attention, as TinyLlama (32 heads, 4 KV heads)
    intermediate_size: int
    vocab_size: int


SIZES = {
    # ~2.4 M parameters: unit tests train it in seconds.
    "tiny": BuiltinSize(200, 192, 4, 4, 2, 512, 2000),
    # ~27 M parameters: the demo and the benchmarks.
    "small": BuiltinSize(200, 512, 8, 8, 4, 1408, 4000),
}
SEED = 1234


def cache_dir() -> Path:
    return Path(os.environ.get("MOLTING_CACHE") or Path.home() / ".cache" / "molting")


def _corpus_files() -> list[Path]:
    example = Path(__file__).parent.parent / "examples" / "claudio"
    files = [example / name for name in ("persona.yaml", "data.jsonl", "suite.yaml")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(f"molting is installed without its example persona: {missing}")
    return files


def _pretraining_documents(tokenizer) -> list[str]:
    """The example conversations in the chat template, names swapped per document (deterministic).
    The base learns to hold a conversation in Portuguese, not about whom."""
    import random
    import re

    import yaml

    def swap(text: str) -> str:
        pick = rng.randrange(4)  # one consistent cast of names per document
        for pattern, choices in NAME_SWAPS:
            text = re.sub(pattern, choices[pick], text)
        return text

    rng = random.Random(SEED)
    files = _corpus_files()
    prompts = yaml.safe_load(files[0].read_text(encoding="utf-8"))["system_prompts"]
    documents = []
    for i, raw in enumerate(line for line in jsonl_lines(files[1].read_text(encoding="utf-8")) if line.strip()):
        # The system prompt (the short and the full one in turn) gets its own draw of names, so the base
        # learns to read past a system prompt without learning to copy names from it.
        system = prompts["train" if i % 2 == 0 else "inference"].strip()
        head = tokenizer.apply_chat_template([{"role": "system", "content": swap(system)}], tokenize=False)
        conversation = tokenizer.apply_chat_template(json.loads(raw)["messages"], tokenize=False)
        documents.append(head + swap(conversation))
    return documents


def _corpus_lines() -> list[str]:
    lines = []
    for path in _corpus_files():
        if path.suffix == ".jsonl":
            for raw in jsonl_lines(path.read_text(encoding="utf-8")):
                if raw.strip():
                    for message in json.loads(raw)["messages"]:
                        lines.extend(message["content"].splitlines())
        else:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
    return [line.strip() for line in lines if line.strip()]


def builtin_path(spec: str) -> Path:
    """The model directory for `builtin:<size>`, building it on first use."""
    size_name = spec.split(":", 1)[1]
    if size_name not in SIZES:
        raise UserError(
            f"base_model {spec!r}: unknown builtin size. Use one of: "
            + ", ".join(f"builtin:{s}" for s in SIZES)
            + ", a family in miniature ("
            + ", ".join(f"builtin:{s}" for s in ("tinyllama", "phi3", "qwen2.5", "llama3.2"))
            + "), or a Hugging Face id / local path."
        )
    corpus = "\n".join(_corpus_lines())
    key = sha256_text(f"{RECIPE_VERSION}|{size_name}|{SIZES[size_name]}|{SEED}|{corpus}")
    final = cache_dir() / "builtin" / f"{size_name}-{key[:12]}"
    return build_dir_once(final, lambda staging: _build(SIZES[size_name], corpus, staging))


def _build(size: BuiltinSize, corpus: str, out: Path) -> None:
    import sentencepiece as spm
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    work = out / "_spm"
    work.mkdir()
    (work / "corpus.txt").write_text(corpus, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"),
        model_prefix=str(work / "tokenizer"),
        vocab_size=size.vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces; take what it supports
        model_type="bpe",  # transformers' LlamaTokenizer is BPE with byte fallback, as TinyLlama's
        byte_fallback=True,  # any text (English, code, emoji) still encodes
        character_coverage=1.0,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    tok_src = work / "hf"
    tok_src.mkdir()
    shutil.copy(work / "tokenizer.model", tok_src / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(str(tok_src))
    tokenizer.chat_template = ZEPHYR_TEMPLATE
    tokenizer.pad_token = tokenizer.eos_token  # as TinyLlama's tokenizer
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(work)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    pretraining = _pretrain(model, tokenizer, size.pretrain_steps)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(str(out), safe_serialization=True)
    record = {
        "recipe_version": RECIPE_VERSION,
        "size": dataclasses.asdict(size),
        "seed": SEED,
        "pretraining": pretraining,
        "note": "built by molting.models.builtin_base; see its docstring",
    }
    (out / "molting_builtin.json").write_text(json.dumps(record, indent=2) + "\n")


def _pretrain(model, tokenizer, steps: int, block: int = 128, batch: int = 16) -> None:
    """A short causal-LM pretraining on the name-swapped example text (see the module docstring).

    bf16 autocast where the CPU has native bf16 (2-3× faster here), fp32 otherwise.
    """
    import math

    import torch

    text = "".join(_pretraining_documents(tokenizer))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    generator = torch.Generator().manual_seed(SEED)
    peak_lr, warmup = 3e-3, 20
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.0)
    use_bf16 = cpu_supports_bf16()
    from molting.progress import bar

    model.train()
    label = f"building builtin base (once; cached in {cache_dir()}): pretraining"
    progress = bar(label, steps, unit="steps")
    progress.start()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = peak_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        x = blocks[torch.randint(0, len(blocks), (batch,), generator=generator)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.update(completed=step + 1, note=f"loss {loss.item():.3f}")
    progress.stop()
    model.eval()
    return {
        "steps": steps,
        "tokens_seen": steps * block * batch,
        "corpus_tokens": len(ids),
        "final_loss": round(loss.item(), 4),
        "mixed_precision": "bf16" if use_bf16 else "no",
    }
