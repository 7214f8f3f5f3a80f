"""`builtin:tinyllama`, `builtin:phi3`, `builtin:qwen2.5`, `builtin:llama3.2`: the families users train, in miniature.

Each is the family's real architecture class (LlamaForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM, and
LlamaForCausalLM with Llama 3's rope scaling) configured from the hub config.json molting ships
(`shipped_configs/`) with tiny dimensions, and with the family's real tokenizer, special tokens, chat template
and end-of-turn list. No weights can be downloaded where molting is tested, but the vocabularies and templates
can: the pinned llama-cpp-python sdist carries llama.cpp's vocab-only GGUF files and chat templates
(`llama_cpp_tools.fetch_model_files`), and transformers reads a vocabulary from a GGUF file. TinyLlama's
template is the Zephyr one the `builtin:<size>` bases use.

What these bases prove is the format: templates, masks, end of turn, GGUF export and the Ollama Modelfile, on
the very tokens a user's model has. Their weights are random, then trained for a few dozen steps on the
example conversations in the family's template (as `builtin_base` does, far shorter), so that the model ends
its turns with the family's end-of-turn token; they know nothing else, and nothing about answer quality can be
read from them.

One choice differs from the hub files: the tokenizer's EOS is the token that ends an assistant turn, because
that is what molting supervises and checks (Phi-3's `<|end|>`, where the hub's tokenizer says `<|endoftext|>`;
Qwen2.5 and Llama 3.2 Instruct already say `<|im_end|>` and `<|eot_id|>`). Every end-of-turn token is in the
generation config, as on the hub.

Reached through `family_path(spec)`, which `molting.models.resolve.resolve_base` calls for these names.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from molting.io import build_dir_once, sha256_file, sha256_text
from molting.models.builtin_base import SEED, ZEPHYR_TEMPLATE, _corpus_lines, _pretraining_documents, cache_dir
from molting.models.gguf_reading import fast_gguf_reading, gguf_metadata

# molting.models.model_configs' shipped hub configs (not imported: model_configs imports resolve, which imports us)
SHIPPED = Path(__file__).parent / "shipped_configs"

RECIPE_VERSION = 2  # bump when anything below changes what gets built


@dataclass(frozen=True)
class Family:
    vocab: str  # llama.cpp's vocab-only GGUF (in models/ of the sdist)
    template: str | None  # the chat template (models/templates/ of the sdist); None: Zephyr, TinyLlama's
    shipped_config: str  # the hub config.json (molting.models.shipped_configs) the architecture comes from
    eos: str  # what ends an assistant turn: the tokenizer's EOS
    end_of_turn: tuple[str, ...]  # every token generation stops on (generation_config.json)
    bos: str | None
    pad: str | None
    sentencepiece_pieces: int = 0  # a SentencePiece vocabulary: its size without the added tokens (tokenizer.model)
    overrides: dict = field(default_factory=dict)  # config.json entries besides the dimensions
    rename: dict = field(default_factory=dict)  # token id -> the name the family's own tokenizer gives it
    # SentencePiece's dummy prefix before every piece of text, after special tokens too, as the hub's tokenizer.json
    # (a Prepend normalizer) and llama.cpp do; transformers' GGUF reader marks only the text's first piece
    sentencepiece_prefix_each_piece: bool = False


# Phi-3.5-mini's long-context scaling, as its config.json has it; the factor lists hold one value per rotary
# dimension pair (head_dim / 2 = 8 here), so the values are not the hub's, only the form.
PHI3_ROPE_SCALING = {
    "type": "longrope",
    "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0],
    "long_factor": [1.0, 1.3, 1.9, 3.5, 8.0, 16.0, 32.0, 48.0],
}

FAMILIES = {
    "tinyllama": Family(
        vocab="ggml-vocab-llama-spm.gguf",
        sentencepiece_pieces=32000,
        template=None,
        shipped_config="TinyLlama--TinyLlama-1.1B-Chat-v1.0.json",
        eos="</s>",
        end_of_turn=("</s>",),
        bos="<s>",
        pad="</s>",
        sentencepiece_prefix_each_piece=True,
    ),
    "phi3": Family(
        vocab="ggml-vocab-phi-3.gguf",
        sentencepiece_pieces=32000,
        template="microsoft-Phi-3.5-mini-instruct.jinja",
        shipped_config="microsoft--Phi-3-mini-4k-instruct.json",
        eos="<|end|>",
        end_of_turn=("<|end|>", "<|endoftext|>"),
        bos="<s>",
        pad="<|endoftext|>",
        overrides={
            "rope_scaling": PHI3_ROPE_SCALING,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
        },
    ),
    "qwen2.5": Family(
        vocab="ggml-vocab-qwen2.gguf",
        template="Qwen-Qwen2.5-7B-Instruct.jinja",
        shipped_config="Qwen--Qwen2.5-0.5B-Instruct.json",
        eos="<|im_end|>",
        end_of_turn=("<|im_end|>", "<|endoftext|>"),
        bos=None,
        pad="<|endoftext|>",
    ),
    "llama3.2": Family(
        vocab="ggml-vocab-llama-bpe.gguf",
        template="meta-llama-Llama-3.2-3B-Instruct.jinja",
        shipped_config="meta-llama--Llama-3.2-1B-Instruct.json",
        eos="<|eot_id|>",
        end_of_turn=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
        bos="<|begin_of_text|>",
        pad=None,
        # The sdist's vocabulary is Llama 3's; Llama 3.1 and 3.2 named three of its reserved tokens.
        rename={128004: "<|finetune_right_pad_id|>", 128008: "<|eom_id|>", 128010: "<|python_tag|>"},
    ),
}

# Tiny dimensions: 4 heads of 16, 2 of them key/value heads where the family has grouped-query attention.
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 64, 2, 4, 128
PRETRAIN_STEPS = 150  # of 8 blocks × 128 tokens: enough for the model to end some of its turns


def family_names() -> list[str]:
    return list(FAMILIES)


def family_path(spec: str) -> Path:
    """The model directory of `builtin:<family>`, building it on first use (seconds to a minute)."""
    from molting.export.llama_cpp_tools import fetch_model_files

    name = spec.split(":", 1)[1]
    family = FAMILIES[name]
    models = fetch_model_files(say=_say) / "models"
    sources = [models / family.vocab, SHIPPED / family.shipped_config]
    if family.template:
        sources.append(models / "templates" / family.template)
    digest = "|".join(sha256_file(p) for p in sources)
    corpus = "\n".join(_corpus_lines())
    shape = f"{HIDDEN},{LAYERS},{HEADS},{INTERMEDIATE}"
    key = sha256_text(f"{RECIPE_VERSION}|{name}|{family}|{shape}|{SEED}|{digest}|{corpus}")
    final = cache_dir() / "builtin" / f"{name}-{key[:12]}"
    return build_dir_once(final, lambda staging: _build(name, family, sources, staging))


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _tokenizer(family: Family, vocab: Path, template: str, out: Path):
    """The family's tokenizer from llama.cpp's vocab GGUF, with its special tokens as the family names them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    if family.rename:
        # Rename in tokenizer.json (vocabulary and added tokens), and drop what transformers' GGUF reader adds
        # past the model's vocabulary, so that ids and names are the family's.
        staging = out / "_tokenizer"
        tokenizer.save_pretrained(str(staging))
        data = json.loads((staging / "tokenizer.json").read_text(encoding="utf-8"))
        size = len(data["model"]["vocab"])
        data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < size]
        for token in data["added_tokens"]:
            if token["id"] in family.rename:
                token["content"] = family.rename[token["id"]]
        vocab_map = {t: i for t, i in data["model"]["vocab"].items() if i not in family.rename}
        vocab_map.update({name: i for i, name in family.rename.items()})
        data["model"]["vocab"] = vocab_map
        (staging / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        config = json.loads((staging / "tokenizer_config.json").read_text(encoding="utf-8"))
        config.pop("added_tokens_decoder", None)
        (staging / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        tokenizer = AutoTokenizer.from_pretrained(str(staging))
        import shutil

        shutil.rmtree(staging)
    if family.sentencepiece_prefix_each_piece:
        _prefix_each_piece(tokenizer)
    tokenizer.bos_token = family.bos
    tokenizer.eos_token = family.eos
    tokenizer.pad_token = family.pad
    tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    for token in (family.eos, *family.end_of_turn, *(t for t in (family.bos, family.pad) if t)):
        if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
            raise RuntimeError(f"{vocab.name} has no token {token!r}")
    return tokenizer


def _prefix_each_piece(tokenizer) -> None:
    """TinyLlama's hub tokenizer.json: a "▁" before each stretch of text (a Prepend normalizer, spaces as "▁", no
    pre-tokenizer), where the GGUF reader's Metaspace(prepend_scheme="first") marks only the first. The two differ
    after every special token: the Zephyr template's "</s>\n<|user|>" is "</s>", "▁", "<0x0A>" to SentencePiece,
    the hub's tokenizer and llama.cpp alike, and "</s>", "<0x0A>" to the GGUF reader's."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None


def _build(name: str, family: Family, sources: list[Path], out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    _say(f"building builtin:{name} (once; cached in {cache_dir()}): tokenizer from {sources[0].name}")
    template = sources[2].read_text(encoding="utf-8") if family.template else ZEPHYR_TEMPLATE
    with fast_gguf_reading():  # a 128k/152k vocabulary: parsed once, the fast way
        tokenizer = _tokenizer(family, sources[0], template, out)
    hub = json.loads(sources[1].read_text(encoding="utf-8"))
    kv_heads = HEADS if hub["num_key_value_heads"] == hub["num_attention_heads"] else HEADS // 2
    end_ids = [tokenizer.convert_tokens_to_ids(t) for t in family.end_of_turn]
    hub.update(
        {
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": kv_heads,
            "intermediate_size": INTERMEDIATE,
            "head_dim": HIDDEN // HEADS,
            "vocab_size": hub["vocab_size"],
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": end_ids if len(end_ids) > 1 else end_ids[0],
            "pad_token_id": tokenizer.pad_token_id,
            "torch_dtype": "float32",
            **family.overrides,
        }
    )
    for key in ("_name_or_path", "transformers_version", "dtype"):
        hub.pop(key, None)
    config_dir = out / "_config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(hub), encoding="utf-8")
    config = AutoConfig.from_pretrained(str(config_dir))
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    import shutil

    shutil.rmtree(config_dir)
    pretraining = _pretrain(model, tokenizer, PRETRAIN_STEPS, name)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=end_ids, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(str(out), safe_serialization=True)
    _hub_rope_form(out / "config.json", family)
    tokenizer.save_pretrained(str(out))
    if family.sentencepiece_pieces:
        _sentencepiece_model(sources[0], family.sentencepiece_pieces, out / "tokenizer.model")
    record = {
        "recipe_version": RECIPE_VERSION,
        "family": name,
        "architecture": type(model).__name__,
        "sources": {p.name: sha256_file(p) for p in sources},
        "seed": SEED,
        "pretraining": pretraining,
        "note": "built by molting.models.family_base; see its docstring",
    }
    (out / "molting_builtin.json").write_text(json.dumps(record, indent=2) + "\n")


def _sentencepiece_model(vocab: Path, pieces: int, out: Path) -> None:
    """The family's tokenizer.model (SentencePiece, as TinyLlama's and Phi-3's hub folders have one), written from
    the vocab GGUF's pieces, scores and types: llama.cpp's converter reads a Llama-2-style vocabulary from it."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    fields = gguf_metadata(vocab).fields
    tokens = fields["tokenizer.ggml.tokens"][:pieces]
    scores = fields["tokenizer.ggml.scores"][:pieces]
    types = fields["tokenizer.ggml.token_type"][:pieces]
    model = spm.ModelProto()
    for token, score, kind in zip(tokens, scores, types, strict=True):
        model.pieces.add(piece=token, score=float(score), type=int(kind))  # GGUF's token types are SentencePiece's
    model.trainer_spec.model_type = spm.TrainerSpec.BPE
    model.trainer_spec.vocab_size = pieces
    model.trainer_spec.byte_fallback = True
    model.trainer_spec.unk_id, model.trainer_spec.bos_id, model.trainer_spec.eos_id, model.trainer_spec.pad_id = (
        0,
        1,
        2,
        -1,
    )
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = True
    model.normalizer_spec.remove_extra_whitespaces = False
    model.normalizer_spec.escape_whitespaces = True
    out.write_bytes(model.SerializeToString())


def _hub_rope_form(path: Path, family: Family) -> None:
    """config.json with `rope_theta` and `rope_scaling` as the hub's configs have them (and as llama.cpp's converter
    and older transformers read them), where transformers 5 writes them together as `rope_parameters`."""
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.get("rope_theta", config.get("rope_theta"))
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    if family.overrides.get("rope_scaling"):
        config["rope_scaling"] = family.overrides["rope_scaling"]
    elif scaling.get("rope_type", "default") != "default":
        config["rope_scaling"] = scaling
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _pretrain(model, tokenizer, steps: int, name: str, block: int = 128, batch: int = 8) -> dict:
    """A few steps of causal-LM training on the example conversations in the family's template (names swapped,
    as for `builtin:<size>`), on the rows of the tokens the text uses only: the embedding and output rows of
    those tokens are trained as small tensors of their own (the softmax over them alone) and written back
    after. Rows of tokens the text never uses have nothing to learn from it, and with Llama 3's 128,256-token
    vocabulary the full output layer would cost 30 times more; training the whole embedding, even with those
    rows' gradients zero, spent most of each step on dense 128k-row gradients and optimizer state."""
    import torch

    ids = tokenizer("".join(_pretraining_documents(tokenizer)), add_special_tokens=False)["input_ids"]
    used = torch.tensor(sorted(set(ids)))
    position = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    position[used] = torch.arange(len(used))
    blocks = position[torch.tensor(ids[: len(ids) // block * block])].view(-1, block)  # as rows of `used`
    generator = torch.Generator().manual_seed(SEED)
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    tied = head is embed
    embed_rows = torch.nn.Parameter(embed.detach()[used].clone())
    head_rows = embed_rows if tied else torch.nn.Parameter(head.detach()[used].clone())
    embed.requires_grad_(False)
    head.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad] + [embed_rows] + ([] if tied else [head_rows])
    # fused: one kernel over each tensor
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.1)
    from molting.progress import bar

    model.train()
    progress = bar(f"building builtin:{name}: pretraining", steps, unit="steps")
    progress.start()
    for done in range(steps):
        x = blocks[torch.randint(0, len(blocks), (batch,), generator=generator)]
        hidden = model.model(inputs_embeds=embed_rows[x]).last_hidden_state[:, :-1]
        logits = hidden @ head_rows.T
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(used)), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.update(completed=done + 1, note=f"loss {loss.item():.3f}")
    with torch.no_grad():
        embed[used] = embed_rows
        if not tied:
            head[used] = head_rows
    progress.stop()
    model.eval()
    return {
        "steps": steps,
        "tokens_seen": steps * block * batch,
        "corpus_tokens": len(ids),
        "final_loss": round(loss.item(), 4),
    }
