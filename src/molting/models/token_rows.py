"""Which of a base's chat-template tokens were never trained, from their embedding rows.

A pretrained base (google/gemma-3-270m, Llama 3 8B) ships the rows of its turn tokens (`<start_of_turn>`,
`<end_of_turn>`, `<|eot_id|>`) untouched by pretraining: only the instruct model learned them. LoRA on the
projections cannot move an embedding row, so an adapter trained on such a base learns to speak as the
persona and never learns to end its turn (make demo-real on Gemma 3 270M: 40 of 42 answers ran to
max_new_tokens). PEFT's trainable tokens (`LoraConfig(trainable_token_indices=…)`) train just those rows.

The evidence is the row's neighbourhood. A trained token's row is its own: in Gemma 3 270M no other row of
262,144 lies within cosine 0.9 of `<eos>` or of "Olá". The never-trained rows all sit in one cluster: 6,397
rows lie within cosine 0.9 of `<start_of_turn>`, 6,443 of `<end_of_turn>` (the `<unusedN>` rows among them).
Llama 3's reserved rows are zeros. A random-initialised builtin base has neither, so nothing is flagged there.
"""

from dataclasses import dataclass

SIMILAR_COSINE = 0.9  # "the same row": two rows this close are not two trained meanings
CLUSTER_ROWS = 32  # this many other rows that close make it one of a never-trained cluster
ZERO_NORM = 1e-3  # a row this small, relative to the median row norm, is a zero row


@dataclass(frozen=True)
class RowEvidence:
    token: str
    token_id: int
    similar_rows: int  # other rows within SIMILAR_COSINE of this one
    zero: bool

    @property
    def untrained(self) -> bool:
        return self.zero or self.similar_rows >= CLUSTER_ROWS

    def as_dict(self) -> dict:
        return {
            "token": self.token,
            "id": self.token_id,
            "similar_rows": self.similar_rows,
            "zero_row": self.zero,
            "untrained": self.untrained,
        }

    def describe(self) -> str:
        if self.zero:
            return f"{self.token!r} (id {self.token_id}) has a zero embedding row"
        return f"{self.token!r} (id {self.token_id}) shares its embedding row with {self.similar_rows:,} others"


def template_token_ids(tokenizer) -> list[int]:
    """The special tokens the chat template writes around a system, user and assistant turn, and the
    end-of-turn token: the rows the trained model must read and write to hold a conversation."""
    from molting.models.chat_format import render

    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
    ]
    ids = tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    found = {i for i in ids if i in special}
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return sorted(found)


def row_evidence(weight, ids: list[int], tokenizer) -> list[RowEvidence]:
    """The evidence for each id in `ids` from one embedding (or output) matrix, vocabulary × hidden."""
    import torch

    w = weight.detach()
    step = 32768  # rows at a time: a float copy of a 128k-row matrix would be GBs
    norms = torch.cat([w[k : k + step].float().norm(dim=1) for k in range(0, w.shape[0], step)])
    median = float(norms.median())
    out = []
    for i in ids:
        if i >= w.shape[0]:
            continue
        zero = float(norms[i]) <= ZERO_NORM * median
        similar = 0
        if not zero:
            row = w[i].float()
            for start in range(0, w.shape[0], step):
                chunk = w[start : start + step].float()
                cos = (chunk @ row) / (norms[start : start + step] * norms[i]).clamp_min(1e-12)
                similar += int((cos > SIMILAR_COSINE).sum())
            similar -= 1  # the row itself
        out.append(RowEvidence(tokenizer.convert_ids_to_tokens(i), i, similar, zero))
    return out


_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight")


def local_embedding_matrices(base: str) -> dict[str, object] | None:
    """The input-embedding and (when untied) output-head matrices of a base whose safetensors are on this
    machine (a folder, or a hub id already in the hub cache), read without loading the model; None when the
    weights are not here (the check then happens at `molt train`, on the loaded model)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    folder = Path(base)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(base, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
        except Exception:  # not in the hub cache, or not a hub id at all: nothing to read here
            return None
    index = folder / "model.safetensors.index.json"
    if index.exists():
        where = json.loads(index.read_text())["weight_map"]
    elif (folder / "model.safetensors").exists():
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            where = dict.fromkeys(f.keys(), "model.safetensors")
    else:
        return None
    wanted = {}
    for key in where:
        if key.endswith(_EMBEDDING_SUFFIXES) and "input" not in wanted:
            wanted["input"] = key
        elif key.endswith("lm_head.weight"):
            wanted["output"] = key
    if "input" not in wanted:
        return None
    out = {}
    for role, key in wanted.items():
        with safe_open(str(folder / where[key]), "pt") as f:
            out[role] = f.get_tensor(key)
    return out


def model_embedding_matrices(model) -> dict[str, object]:
    """The same matrices from a loaded model; the output head only when it is not tied to the input."""
    inp = model.get_input_embeddings().weight
    out = {"input": inp}
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != inp.data_ptr():
        out["output"] = head.weight
    return out


def plan_trainable_tokens(setting, tokenizer, matrices: dict | None, embeddings_in_full: bool) -> dict:
    """Which token rows `molt train` trains beside LoRA (`lora.trainable_tokens`), with the evidence.

    `auto`: the chat template's tokens whose row looks never trained, in the input embedding or the output
    head; `none`: no row; a list of token strings: those rows. `embeddings_in_full` (embed_tokens in
    `lora.modules_to_save`) trains every row already, so nothing more is added."""
    from molting.errors import UserError

    candidates = template_token_ids(tokenizer)
    plan: dict = {
        "setting": setting,
        "embeddings_in_full": embeddings_in_full,
        "checked": None,
        "train_ids": [],
        "train_tokens": [],
    }
    evidence: dict[int, list[RowEvidence]] = {}
    if matrices is not None:
        for weight in matrices.values():
            for e in row_evidence(weight, candidates, tokenizer):
                evidence.setdefault(e.token_id, []).append(e)
        plan["checked"] = [
            {**rows[0].as_dict(), "untrained": any(r.untrained for r in rows), "matrices": len(rows)}
            for rows in evidence.values()
        ]
    if embeddings_in_full or setting == "none":
        ids: list[int] = []
    elif setting == "auto":
        ids = sorted(i for i, rows in evidence.items() if any(r.untrained for r in rows))
    else:
        ids = []
        for token in setting:
            found = tokenizer.convert_tokens_to_ids(token)
            if found is None or (found == tokenizer.unk_token_id and token != tokenizer.unk_token):
                raise UserError(
                    f"lora.trainable_tokens: {token!r} is not one token of this base's vocabulary. List tokens "
                    "as the tokenizer writes them (e.g. <end_of_turn>), or use auto."
                )
            ids.append(found)
        ids = sorted(set(ids))
    plan["train_ids"] = ids
    plan["train_tokens"] = tokenizer.convert_ids_to_tokens(ids)
    plan["untrained_end_of_turn"] = [
        rows[0].describe()
        for i, rows in evidence.items()
        if i == tokenizer.eos_token_id and any(r.untrained for r in rows)
    ]
    return plan
