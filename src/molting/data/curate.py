"""`molt data curate`: clean a data.jsonl before training on it, and say what it teaches.

Reached through `curate(data, card, suite, out_dir, CurateOptions(...))`, which writes `train.jsonl`,
`held_out.jsonl`, `removed.jsonl` (every dropped conversation with its reason) and `curate.json` (the
summary) into `out_dir`, as one set (an old train.jsonl is never left beside a new held_out.jsonl):

- duplicates: exact (the same user and assistant text once accents, case, punctuation and spacing are
  normalised away) and near (cosine similarity of all-MiniLM-L6-v2 sentence embeddings, the offline
  model of `molting.evaluate.embedding_similarity`, at or above a threshold); the first occurrence is kept;
- a train/held-out split by conversation with a seed: pieces of one source conversation (the
  `conversation:` tag `molt data import` writes) always land on the same side;
- balance: how many training examples teach each fact and trait of the card (by the card's own `shows`
  patterns, in assistant turns), which facts none teaches, and the same per suite area;
- lengths: a histogram of example lengths against the token budget (tokens of the config's base, with
  its chat template) or in characters without a config;
- evaluation leakage: a suite question, paraphrase or probe appearing verbatim or near-verbatim in a
  training user turn, which would make the evaluation measure recall of the test instead of the persona.
"""

import difflib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from molting.card.persona import Persona
from molting.card.suite import Suite
from molting.card.text_match import find_first, fold
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.io import jsonl_text, write_set_atomic

_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass
class CurateOptions:
    held_out: float = 0.1  # fraction of conversations (groups) held out for evaluation loss
    seed: int = 0  # the split's seed
    near_duplicate: float | None = 0.95  # cosine similarity at or above which two examples are one; None: off
    # Similarity (text ratio or embedding cosine) at or above which a training user turn is a near-verbatim
    # suite question. In the example, "Quem é João Figueiredo?" is 0.90 from Q1 "Quem é o João?" by
    # embedding: related, not copied.
    leak_threshold: float = 0.92
    drop_leaks: bool = False  # remove training examples that leak a suite question (default: report them)

    def __post_init__(self):
        if not 0 <= self.held_out < 1:
            raise UserError(f"--held-out {self.held_out}: must be a fraction in [0, 1), e.g. 0.1.")
        if self.near_duplicate is not None and not 0 < self.near_duplicate <= 1:
            raise UserError(f"--near-duplicate {self.near_duplicate}: must be a cosine similarity in (0, 1].")
        if not 0 < self.leak_threshold <= 1:
            raise UserError(f"--leak-threshold {self.leak_threshold}: must be in (0, 1].")


def normalize(text: str) -> str:
    """Accents, case, punctuation and spacing removed: what "the same text" means for duplicates."""
    return _NON_WORD.sub(" ", fold(text).lower()).strip()


def _turns(messages: list[dict], role: str) -> list[str]:
    return [m["content"] for m in messages if m["role"] == role]


def _dialogue(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages if m["role"] != "system")


def _near_duplicates(texts: list[str], threshold: float) -> dict[int, tuple[int, float]]:
    """index → (earlier kept index, similarity) for every text too close to one kept before it."""
    import torch

    from molting.evaluate.embedding_similarity import embed

    vectors = embed(texts)
    kept = torch.zeros(len(texts), dtype=torch.bool)
    dupes: dict[int, tuple[int, float]] = {}
    for start in range(0, len(texts), 512):  # blocks keep the similarity matrix small for large datasets
        block = vectors[start : start + 512] @ vectors.T
        for offset, row in enumerate(block):
            i = start + offset
            earlier = torch.where(kept[:i], row[:i], torch.full_like(row[:i], -1.0)) if i else row[:0]
            if i and float(earlier.max()) >= threshold:
                j = int(earlier.argmax())
                dupes[i] = (j, round(float(earlier[j]), 4))
            else:
                kept[i] = True
    return dupes


def _suite_texts(suite: Suite) -> list[tuple[str, str, str]]:
    """(question id, kind, text) for every question, paraphrase and probe the evaluation asks."""
    out = []
    for q in suite.questions:
        out.append((q.id, "question", q.question))
        for p in getattr(q, "paraphrases", None) or []:  # a suite may list paraphrases
            text = p if isinstance(p, str) else getattr(p, "question", None)
            if isinstance(p, dict):
                text = p.get("question") or p.get("text")
            if text:
                out.append((q.id, "paraphrase", text))
    for p in getattr(suite, "probes", None) or []:
        text = p if isinstance(p, str) else getattr(p, "question", None)
        if text:
            out.append((getattr(p, "id", "probe"), "probe", text))
    return out


def _leaks(suite: Suite, train: list[dict], threshold: float, use_embeddings: bool) -> list[dict]:
    """Suite texts found in training user turns: verbatim, contained, or near (text or embedding)."""
    asked = _suite_texts(suite)
    turns = [(row, t) for row in train for t in _turns(row["messages"], "user")]
    if not asked or not turns:
        return []
    norm_asked = [normalize(t) for _, _, t in asked]
    norm_turns = [normalize(t) for _, t in turns]
    sims = None
    if use_embeddings:
        from molting.evaluate.embedding_similarity import embed

        sims = embed([t for _, _, t in asked]) @ embed([t for _, t in turns]).T
    leaks = []
    for a, (qid, kind, text) in enumerate(asked):
        for u, (row, turn) in enumerate(turns):
            na, nu = norm_asked[a], norm_turns[u]
            match = None
            if na == nu:
                match = "verbatim"
            elif len(na.split()) >= 4 and f" {na} " in f" {nu} ":
                match = "contained"
            else:
                ratio = difflib.SequenceMatcher(None, na, nu).ratio() if abs(len(na) - len(nu)) < len(na) else 0
                if ratio >= threshold:
                    match = f"near-verbatim (text {ratio:.2f})"
                elif sims is not None and float(sims[a, u]) >= threshold:
                    match = f"near-verbatim (embedding {float(sims[a, u]):.2f})"
            if match:
                leaks.append(
                    {"id": qid, "kind": kind, "text": text, "line": row["line"], "user_turn": turn, "match": match}
                )
    return leaks


def _group(row: dict) -> str:
    return next((t for t in row["tags"] if t.startswith("conversation:")), f"line:{row['line']}")


def _split(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Whole groups (a source conversation, or one line) to each side, chosen by a seeded shuffle."""
    keys = list(dict.fromkeys(_group(r) for r in rows))
    random.Random(seed).shuffle(keys)
    n_held = round(len(keys) * fraction)
    if fraction > 0 and n_held == 0 and len(keys) >= 2:
        n_held = 1
    held = set(keys[:n_held])
    return [r for r in rows if _group(r) not in held], [r for r in rows if _group(r) in held]


def _balance(card: Persona, suite: Suite, train: list[dict]) -> dict:
    answers = [" ".join(_turns(r["messages"], "assistant")) for r in train]
    folded = [fold(a) for a in answers]
    facts = {
        f.id: sum(1 for a, fa in zip(answers, folded, strict=True) if find_first(f.compiled, a, fa)) for f in card.facts
    }
    traits = {
        t.id: sum(1 for a, fa in zip(answers, folded, strict=True) if find_first(t.compiled, a, fa))
        for t in card.traits
    }
    areas: dict[str, dict] = {}
    for q in suite.questions:
        area = areas.setdefault(q.area or "(no area)", {"questions": [], "facts": []})
        area["questions"].append(q.id)
        area["facts"] += [f for f in q.must_mention if f not in area["facts"]]
    for area in areas.values():
        area["examples"] = sum(
            1
            for a, fa in zip(answers, folded, strict=True)
            if any(find_first(card.fact_by_id[f].compiled, a, fa) for f in area["facts"])
        )
        area["untaught_facts"] = [f for f in area["facts"] if facts[f] == 0]
    return {
        "facts": facts,
        "untaught_facts": [f for f, n in facts.items() if n == 0],
        "traits": traits,
        "areas": areas,
    }


def _lengths(rows: list[dict], tokenizer, max_length: int | None) -> "LengthHistogram":
    if tokenizer is not None and max_length:
        from molting.models.chat_format import tokenize_conversation

        sizes = [len(tokenize_conversation(tokenizer, r["full_messages"]).input_ids) for r in rows]
        unit, budget = "tokens", max_length
    else:
        sizes = [sum(len(m["content"]) for m in r["full_messages"]) for r in rows]
        unit, budget = "characters", None
    top = budget or max(sizes, default=1)
    edges = [round(top * k / 4) for k in range(5)]
    bins = []
    for k in range(4):
        lo, hi = edges[k], edges[k + 1]
        count = sum(1 for s in sizes if (lo < s if k else lo <= s) and s <= hi)
        bins.append({"range": f"{lo}–{hi}", "count": count})
    over = [r["line"] for r, s in zip(rows, sizes, strict=True) if budget and s > budget]
    if budget:
        bins.append({"range": f"> {budget}", "count": len(over)})
    return {
        "unit": unit,
        "budget": budget,
        "max": max(sizes, default=0),
        "mean": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "bins": bins,
        "over_budget_lines": over,
    }


class LengthBin(TypedDict):
    range: str
    count: int


class LengthHistogram(TypedDict):
    unit: str  # "tokens" (with a config's tokenizer) or "characters"
    budget: int | None
    max: int
    mean: float
    bins: list[LengthBin]
    over_budget_lines: list[int]


class Balance(TypedDict):
    facts: dict[str, int]  # training examples that show each fact of the card
    untaught_facts: list[str]
    traits: dict[str, int]
    areas: dict[str, dict[str, Any]]  # per suite area: examples, facts, untaught_facts


class Leak(TypedDict):
    id: str
    kind: str
    text: str
    line: int
    user_turn: str
    match: str


class Removed(TypedDict):
    line: int
    reason: str


class Split(TypedDict):
    fraction: float
    seed: int
    held_out_lines: list[int]


class CurateSummary(TypedDict):
    """`curate`'s result, written as curate.json."""

    data: str
    conversations: int
    exact_duplicates: int
    near_duplicates: int
    near_duplicate_threshold: float | None
    removed: list[Removed]
    train: int
    held_out: int
    split: Split
    balance: Balance
    lengths: LengthHistogram
    leaks: list[Leak]
    leaks_dropped: bool
    outputs: dict[str, str]  # train, held_out, removed, summary: where each was written


def curate(
    data: str | Path,
    card: Persona,
    suite: Suite,
    out_dir: str | Path,
    options: CurateOptions,
    tokenizer=None,
    max_length: int | None = None,
    overwrite: bool = False,
) -> CurateSummary:
    """Deduplicate, split, and report balance, lengths and leakage; write the outputs; return the summary."""
    out_dir = Path(out_dir)
    outputs = {name: out_dir / f"{name}.jsonl" for name in ("train", "held_out", "removed")}
    if outputs["train"].exists() and not overwrite:
        raise UserError(f"{outputs['train']}: already exists. Choose another --out-dir, or pass --overwrite.")
    conversations = load_dataset(data, card.system_prompts.train)
    rows = [
        {
            "line": c.line,
            "messages": c.messages if c.own_system_prompt else c.messages[1:],  # as the user wrote it
            "full_messages": c.messages,  # as it is trained
            "tags": c.tags,
        }
        for c in conversations
    ]
    removed: list[dict] = []
    seen: dict[str, int] = {}
    unique = []
    for row in rows:
        key = normalize(_dialogue(row["messages"]))
        if key in seen:
            removed.append({**row, "reason": f"exact duplicate of line {seen[key]}"})
        else:
            seen[key] = row["line"]
            unique.append(row)
    n_exact = len(removed)
    if options.near_duplicate is not None and len(unique) > 1:
        dupes = _near_duplicates([_dialogue(r["messages"]) for r in unique], options.near_duplicate)
        for i, (j, sim) in dupes.items():
            removed.append({**unique[i], "reason": f"near duplicate of line {unique[j]['line']} (cosine {sim})"})
        unique = [r for i, r in enumerate(unique) if i not in dupes]
    n_near = len(removed) - n_exact

    train, held_out = _split(unique, options.held_out, options.seed)
    leaks = _leaks(suite, train, options.leak_threshold, options.near_duplicate is not None)
    if options.drop_leaks and leaks:
        leaked = {leak["line"] for leak in leaks}
        removed += [{**r, "reason": "leaks a suite question"} for r in train if r["line"] in leaked]
        train = [r for r in train if r["line"] not in leaked]

    def data_row(r: dict) -> dict:
        return {"messages": r["messages"], "tags": r["tags"]} if r["tags"] else {"messages": r["messages"]}

    summary: CurateSummary = {
        "data": str(data),
        "conversations": len(rows),
        "exact_duplicates": n_exact,
        "near_duplicates": n_near,
        "near_duplicate_threshold": options.near_duplicate,
        "removed": [{"line": r["line"], "reason": r["reason"]} for r in removed],
        "train": len(train),
        "held_out": len(held_out),
        "split": {"fraction": options.held_out, "seed": options.seed, "held_out_lines": [r["line"] for r in held_out]},
        "balance": _balance(card, suite, train),
        "lengths": _lengths(train + held_out, tokenizer, max_length),
        "leaks": leaks,
        "leaks_dropped": options.drop_leaks,
        "outputs": {name: str(p) for name, p in outputs.items()} | {"summary": str(out_dir / "curate.json")},
    }
    if not train:
        raise UserError(f"{data}: no training example left after curation; lower --held-out or check the data.")
    # one set: an old train.jsonl must never sit beside a new held_out.jsonl (they would share examples)
    write_set_atomic(
        {
            outputs["held_out"]: jsonl_text(data_row(r) for r in held_out),
            outputs["removed"]: jsonl_text({**data_row(r), "line": r["line"], "reason": r["reason"]} for r in removed),
            out_dir / "curate.json": json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
            outputs["train"]: jsonl_text(data_row(r) for r in train),
        },
        marker=outputs["train"],  # its presence means complete
    )
    return summary
