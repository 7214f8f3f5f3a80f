"""`molt data import`: conversations from the formats people have, into molting's data.jsonl.

Reached through `import_conversations(path, out, ImportOptions(...))`. Five formats, detected from the
first record unless given:

- `openai`: JSONL, `{"messages": [{"role", "content"}]}` (content may be a list of text parts);
- `sharegpt`: JSONL or a JSON list, `{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}`;
- `chatgpt`: the ChatGPT data export's `conversations.json`, a list of conversations each holding a tree
  of message nodes (`mapping`: id → {message, parent, children}). Edited or regenerated turns make
  branches; the conversation as the user last saw it is the branch from `current_node` up to the root;
- `claude`: the Claude data export's `conversations.json`, a list with `chat_messages`
  (`sender`: human|assistant, `text` and/or `content` parts, `created_at`);
- `prompt_completion`: JSONL, `{"prompt", "completion"}`.

Every conversation goes through the same steps: clean (hidden, tool and empty messages out; consecutive
turns of one speaker merged), filter (date range, language, keyword, answer length), then split into
training examples that fit the token budget (the config's tokenizer and max_length, or a character
budget). Nothing is dropped silently: every skipped record and turn is counted by reason, and malformed
input is reported with its position (file:line for JSONL, the conversation's index and id for JSON).
"""

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, TypedDict

from molting.card.text_match import fold
from molting.errors import UserError
from molting.evaluate.rubric import LANGUAGE_NAMES, detect_language
from molting.io import write_jsonl_atomic
from molting.yaml_source import is_placeholder

FORMATS = ("openai", "sharegpt", "chatgpt", "claude", "prompt_completion")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}
SHAREGPT_TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython"}


class Malformed(Exception):
    """A record that cannot be read as a conversation of its format; the message says what is wrong."""


@dataclass
class ImportOptions:
    format: str | None = None  # one of FORMATS; None detects it from the first record
    since: date | None = None  # keep conversations created on or after this day (UTC)
    until: date | None = None  # … and on or before this day
    language: str | None = None  # keep conversations in this language (pt, en), by the rubric's detector
    keywords: list[str] = field(default_factory=list)  # keep conversations mentioning any of these
    min_answer_chars: int = 0  # turns whose answer is shorter are dropped (and split the conversation)
    system: Literal["drop", "keep", "card"] = "drop"  # the source's system prompts: drop, keep, or card's
    card_system_prompt: str | None = None  # the card's training prompt: for system="card", and to measure
    max_chars: int = 6000  # budget per example when there is no tokenizer
    tokenizer: object | None = None  # with max_length: budget in tokens, rendered with the chat template
    max_length: int | None = None
    skip_malformed: bool = False  # count malformed records instead of stopping on them

    def __post_init__(self):
        if self.format is not None and self.format not in FORMATS:
            raise UserError(f"--format {self.format!r}: unknown; use one of {', '.join(FORMATS)}.")
        if self.language is not None and self.language not in LANGUAGE_NAMES:
            raise UserError(f"--language {self.language!r}: unknown; use one of {', '.join(LANGUAGE_NAMES)}.")
        if self.system == "card" and not self.card_system_prompt:
            raise UserError("--system card needs the persona card: pass --config molt.yaml or --persona persona.yaml.")
        if self.since and self.until and self.since > self.until:
            raise UserError(f"--since {self.since} is after --until {self.until}: no conversation can match.")


@dataclass
class SourceConversation:
    where: str  # file:line, or file: conversation #i (id …)
    source_id: str  # stable id of the conversation in its source, for tags and grouping
    messages: list[dict]  # role user|assistant|system, content text
    created: datetime | None = None
    dropped_turns: Counter = field(default_factory=Counter)  # messages left out while reading, by reason


# ---------------------------------------------------------------- reading


def _text_parts(content, where: str) -> str:
    """OpenAI-style content: a string, or a list of parts of which the text ones are kept."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    if content is None:
        return ""
    raise Malformed(f"{where}: expected text or a list of parts, got {type(content).__name__}")


def _parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Malformed(f"date {value!r} is not ISO 8601") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise Malformed(f"date {value!r} is neither a timestamp nor ISO 8601 text")


def _record_time(obj: dict) -> datetime | None:
    for key in ("created_at", "create_time", "created", "timestamp", "date"):
        if key in obj:
            return _parse_time(obj[key])
    return None


def _from_openai(obj: dict, dropped: Counter) -> list[dict]:
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise Malformed("messages: expected a list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Malformed(f"messages[{i}]: expected an object with role and content")
        role = m.get("role")
        if role in ("tool", "function", "ipython"):
            dropped["tool"] += 1
            continue
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise Malformed(f"messages[{i}].role: unknown role {role!r}")
        out.append({"role": role, "content": _text_parts(m.get("content"), f"messages[{i}].content")})
    return out


def _from_sharegpt(obj: dict, dropped: Counter) -> list[dict]:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise Malformed("conversations: expected a list of {from, value} objects")
    out = []
    if isinstance(obj.get("system"), str):  # LLaMA-Factory's ShareGPT variant keeps it beside the turns
        out.append({"role": "system", "content": obj["system"]})
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise Malformed(f"conversations[{i}]: expected an object with from and value")
        speaker = str(t.get("from", "")).lower()
        if speaker in SHAREGPT_TOOL_ROLES:
            dropped["tool"] += 1
            continue
        if speaker not in SHAREGPT_ROLES:
            raise Malformed(f"conversations[{i}].from: unknown speaker {t.get('from')!r} (expected human, gpt, system)")
        value = t.get("value")
        if value is not None and not isinstance(value, str):
            raise Malformed(f"conversations[{i}].value: expected text, got {type(value).__name__}")
        out.append({"role": SHAREGPT_ROLES[speaker], "content": value or ""})
    return out


def _from_prompt_completion(obj: dict, dropped: Counter) -> list[dict]:
    for key in ("prompt", "completion"):
        if not isinstance(obj.get(key), str):
            raise Malformed(f"{key}: expected text")
    out = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["completion"]}]
    if isinstance(obj.get("system"), str):
        out.insert(0, {"role": "system", "content": obj["system"]})
    return out


def _chatgpt_branch(conv: dict) -> list[dict]:
    """The message nodes of the branch the user last saw, root first."""
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        raise Malformed("mapping: expected an object of message nodes")
    node_id = conv.get("current_node")
    if node_id not in mapping:
        raise Malformed(f"current_node {node_id!r} is not a node of mapping")
    branch, seen = [], set()
    while node_id is not None:
        if node_id in seen:
            raise Malformed(f"node {node_id!r}: parent links form a cycle")
        seen.add(node_id)
        node = mapping.get(node_id)
        if not isinstance(node, dict):
            raise Malformed(f"node {node_id!r}: missing from mapping (a parent points to it)")
        branch.append(node)
        node_id = node.get("parent")
    return branch[::-1]


def _from_chatgpt(conv: dict, dropped: Counter) -> list[dict]:
    out = []
    for node in _chatgpt_branch(conv):
        message = node.get("message")
        if message is None:  # the root holds no message
            continue
        if not isinstance(message, dict):
            raise Malformed(f"node {node.get('id')!r}: message is not an object")
        role = (message.get("author") or {}).get("role")
        metadata = message.get("metadata") or {}
        content = message.get("content") or {}
        if metadata.get("is_visually_hidden_from_conversation") or content.get("content_type") in (
            "user_editable_context",  # custom instructions, stored as a hidden user message
            "model_editable_context",  # memory
        ):
            dropped["hidden"] += 1
            continue
        if role in ("system", "tool"):
            dropped[role] += 1
            continue
        if role not in ("user", "assistant"):
            raise Malformed(f"node {node.get('id')!r}: unknown author role {role!r}")
        if message.get("recipient", "all") != "all":  # the assistant calling a tool (browser, python)
            dropped["tool"] += 1
            continue
        ctype = content.get("content_type", "text")
        if ctype not in ("text", "multimodal_text"):  # code sent to a tool, reasoning summaries, …
            dropped["tool" if ctype in ("code", "execution_output") else "non_text"] += 1
            continue
        parts = content.get("parts") or []
        if not isinstance(parts, list):
            raise Malformed(f"node {node.get('id')!r}: content.parts is not a list")
        # images and files are objects among the parts; only the text is training data
        text = "\n".join(p for p in parts if isinstance(p, str))
        out.append({"role": role, "content": text})
    return out


def _from_claude(conv: dict, dropped: Counter) -> list[dict]:
    turns = conv.get("chat_messages")
    if not isinstance(turns, list):
        raise Malformed("chat_messages: expected a list")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise Malformed(f"chat_messages[{i}]: expected an object")
        sender = t.get("sender")
        if sender not in ("human", "assistant"):
            raise Malformed(f"chat_messages[{i}].sender: unknown sender {sender!r} (expected human or assistant)")
        parts = t.get("content")
        if isinstance(parts, list) and parts:
            texts = [p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            dropped["tool"] += sum(
                1 for p in parts if isinstance(p, dict) and p.get("type") in ("tool_use", "tool_result")
            )
            text = "\n\n".join(x for x in texts if isinstance(x, str))
        else:
            text = t.get("text") or ""
        if not isinstance(text, str):
            raise Malformed(f"chat_messages[{i}].text: expected text")
        out.append({"role": "user" if sender == "human" else "assistant", "content": text})
    return out


READERS: dict[str, Callable[[dict, Counter], list[dict]]] = {
    "openai": _from_openai,
    "sharegpt": _from_sharegpt,
    "chatgpt": _from_chatgpt,
    "claude": _from_claude,
    "prompt_completion": _from_prompt_completion,
}


def _guess_format(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    for key, fmt in (
        ("mapping", "chatgpt"),
        ("chat_messages", "claude"),
        ("conversations", "sharegpt"),
        ("messages", "openai"),
        ("completion", "prompt_completion"),
    ):
        if key in obj:
            return fmt
    return None


def _records(path: Path, malformed: list[str]) -> Iterator[tuple[str, str, object]]:
    """(where, default id, object) for each record: JSONL lines, or the items of a JSON list."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}).") from None
        for i, item in enumerate(items):
            ident = (
                item.get("uuid") or item.get("conversation_id") or item.get("id") if isinstance(item, dict) else None
            )
            yield f"{path}: conversation #{i}" + (f" (id {ident})" if ident else ""), str(ident or i), item
        return
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield f"{path}:{n}", f"line{n}", json.loads(raw)
        except json.JSONDecodeError as e:
            malformed.append(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}).")


def _describe(obj) -> str:
    return f"keys: {', '.join(map(str, obj))}" if isinstance(obj, dict) else f"a {type(obj).__name__}"


def read_conversations(path: Path, fmt: str | None, malformed: list[str]) -> tuple[str, list[SourceConversation]]:
    """Every conversation of the file, in order; malformed records go to `malformed` with their position."""
    if not path.is_file():
        raise UserError(f"{path}: file not found.")
    conversations = []
    for where, ident, obj in _records(path, malformed):
        if fmt is None:
            fmt = _guess_format(obj)
            if fmt is None:
                raise UserError(
                    f"{where}: cannot tell the format from this record ({_describe(obj)}). "
                    f"Pass --format, one of {', '.join(FORMATS)}."
                )
        if not isinstance(obj, dict):
            malformed.append(f"{where}: expected a JSON object, got {type(obj).__name__}.")
            continue
        dropped: Counter = Counter()
        try:
            messages = READERS[fmt](obj, dropped)
            created = _record_time(obj)
        except Malformed as e:
            malformed.append(f"{where}: {e} (format {fmt}).")
            continue
        conversations.append(SourceConversation(where, f"{path.stem}:{ident}", messages, created, dropped))
    return fmt or "unknown", conversations


# ---------------------------------------------------------------- cleaning, filtering, splitting


def _clean(conv: SourceConversation, turns: Counter, info: Counter) -> tuple[str | None, list[tuple]]:
    """The source system prompt (or None) and the conversation as (user, assistant) exchanges."""
    turns.update(conv.dropped_turns)
    system = None
    merged: list[dict] = []
    for m in conv.messages:
        content = m["content"].strip()
        if not content:
            turns["empty"] += 1
            continue
        if m["role"] == "system":
            if system is None and not merged:
                system = content
            else:
                turns["system"] += 1  # a system message in mid-conversation is not something to train
            continue
        if merged and merged[-1]["role"] == m["role"]:  # one speaker twice in a row: one turn
            merged[-1]["content"] += "\n\n" + content
            info["turns_merged"] += 1
        else:
            merged.append({"role": m["role"], "content": content})
    exchanges = []
    pending_user = None
    for m in merged:
        if m["role"] == "user":
            pending_user = m["content"]
        elif pending_user is None:
            turns["assistant_without_question"] += 1
        else:
            exchanges.append((pending_user, m["content"]))
            pending_user = None
    if pending_user is not None:
        turns["question_without_answer"] += 1
    return system, exchanges


def _size_fn(options: ImportOptions) -> tuple[Callable[[list[dict]], int], int, str]:
    if options.tokenizer is not None and options.max_length:
        from molting.models.chat_format import render

        tok = options.tokenizer

        def tokens(messages: list[dict]) -> int:
            return len(tok(render(tok, messages), add_special_tokens=False)["input_ids"])

        return tokens, options.max_length, "tokens"
    return (lambda messages: sum(len(m["content"]) for m in messages)), options.max_chars, "characters"


def _split(system_msg: list[dict], exchanges: list[tuple], size, budget: int, turns: Counter) -> list[list[dict]]:
    """Consecutive exchanges packed greedily into examples of at most `budget`, each with the system prompt."""
    examples, current = [], []
    for user, answer in exchanges:
        pair = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        if current and size(system_msg + current + pair) <= budget:
            current += pair
            continue
        if current:
            examples.append(system_msg + current)
        if size(system_msg + pair) <= budget:
            current = pair
        else:
            turns["exchange_over_budget"] += 1
            current = []
    if current:
        examples.append(system_msg + current)
    return examples


def _matches_keyword(exchanges: list[tuple], keywords: list[str]) -> bool:
    text = fold(" ".join(u + " " + a for u, a in exchanges)).lower()
    return any(fold(k).lower() in text for k in keywords)


class ExampleBudget(TypedDict):
    limit: int
    unit: str  # "tokens" (with a config's tokenizer) or "characters"


class ImportSummary(TypedDict):
    """`import_conversations`' result: what `molt data import --json` prints."""

    source: str
    format: str
    out: str
    records: int
    conversations_kept: int
    examples_written: int
    budget: ExampleBudget
    skipped: dict[str, int]  # conversations skipped, by reason
    turns_skipped: dict[str, int]  # turns left out, by reason
    turns_merged: int
    conversations_split: int
    malformed: list[str]  # the position of every malformed record skipped


def import_conversations(
    path: str | Path, out: str | Path, options: ImportOptions, overwrite: bool = False
) -> ImportSummary:
    """Read `path`, filter and split its conversations, write `out` (molting's data.jsonl) atomically, and
    return the summary: counts kept and skipped by reason, and every malformed record's position."""
    path, out = Path(path), Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists. Choose another --out, or pass --overwrite to replace it.")
    malformed: list[str] = []
    fmt, conversations = read_conversations(path, options.format, malformed)
    if malformed and not options.skip_malformed:
        raise UserError(
            malformed
            + [
                f"{len(malformed)} malformed record(s) in {path}; fix them, or pass --skip-malformed to count "
                "and skip them."
            ]
        )
    size, budget, unit = _size_fn(options)
    skipped: Counter = Counter()
    turns: Counter = Counter()  # messages left out, by reason
    info: Counter = Counter()  # turns merged, conversations split
    if malformed:
        skipped["malformed"] = len(malformed)
    rows = []
    for conv in conversations:
        system, exchanges = _clean(conv, turns, info)
        if options.since or options.until:
            if conv.created is None:
                skipped["no_date"] += 1
                continue
            day = conv.created.astimezone(UTC).date()
            if options.since and day < options.since:
                skipped["before_since"] += 1
                continue
            if options.until and day > options.until:
                skipped["after_until"] += 1
                continue
        if not exchanges:
            skipped["no_exchange"] += 1
            continue
        if options.language:
            lang, _ = detect_language(fold(" ".join(u + " " + a for u, a in exchanges)).lower())
            if lang is None:
                skipped["language_unrecognised"] += 1
                continue
            if lang != options.language:
                skipped[f"language_{lang}"] += 1
                continue
        if options.keywords and not _matches_keyword(exchanges, options.keywords):
            skipped["no_keyword"] += 1
            continue
        # A dropped turn splits the conversation, so no example refers to an answer it does not contain.
        segments: list[list[tuple]] = [[]]
        for user, answer in exchanges:
            if len(answer) < options.min_answer_chars:
                turns["answer_too_short"] += 1
                segments.append([])
            elif is_placeholder(user) or is_placeholder(answer):
                # molting's data.jsonl rejects a message that starts with molt init's placeholder marker
                turns["placeholder"] += 1
                segments.append([])
            else:
                segments[-1].append((user, answer))
        if options.system == "keep" and system:
            system_msg = [{"role": "system", "content": system}]
        elif options.system == "card":
            system_msg = [{"role": "system", "content": options.card_system_prompt.strip()}]
        else:
            system_msg = []
        if system and options.system != "keep":
            turns["system"] += 1
        # Measured with the system prompt it will be trained with: without one, training adds the card's.
        measured_system = system_msg or (
            [{"role": "system", "content": options.card_system_prompt.strip()}] if options.card_system_prompt else []
        )
        examples = [
            system_msg + ex[len(measured_system) :]
            for seg in segments
            if seg
            for ex in _split(measured_system, seg, size, budget, turns)
        ]
        if not examples:
            skipped["nothing_left_after_turn_filters"] += 1
            continue
        # the conversation tag lets `molt data curate` keep every piece of one conversation on one side
        rows.extend({"messages": m, "tags": ["imported", f"conversation:{conv.source_id}"]} for m in examples)
        info["conversations_split"] += len(examples) > 1
    if not rows:
        raise UserError(
            f"{path}: no conversation left after the filters (skipped: "
            + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
            + "). Loosen --since/--until/--language/--keyword/--min-answer-chars."
        )
    write_jsonl_atomic(out, rows)
    return {
        "source": str(path),
        "format": fmt,
        "out": str(out),
        "records": len(conversations) + len(malformed),
        "conversations_kept": len({r["tags"][1] for r in rows}),
        "examples_written": len(rows),
        "budget": {"limit": budget, "unit": unit},
        "skipped": dict(sorted(skipped.items())),
        "turns_skipped": dict(sorted((k, v) for k, v in turns.items() if v)),
        "turns_merged": info["turns_merged"],
        "conversations_split": info["conversations_split"],
        "malformed": malformed,
    }
