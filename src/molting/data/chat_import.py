"""`molt data import`: conversations from the formats people have, into molting's data.jsonl.

Reached through `import_conversations(path, out, ImportOptions(...))`. Six formats, detected from the
first record unless given:

- `openai`: JSONL or a JSON list, `{"messages": [{"role", "content"}]}`; content may be a list of parts
  (`{"type": "text", "text"}`, or LLaMA-Factory v1's `{"type": "text", "value"}`), and LLaMA-Factory's
  multimodal files carry `images`/`videos`/`audios` beside the messages;
- `sharegpt`: JSONL or a JSON list, `{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}`;
- `chatgpt`: the ChatGPT data export's `conversations.json`, a list of conversations each holding a tree
  of message nodes (`mapping`: id → {message, parent, children}). Edited or regenerated turns make
  branches; the conversation as the user last saw it is the branch from `current_node` up to the root
  (an export without `current_node` follows the latest leaf);
- `claude`: the Claude data export's `conversations.json`, a list with `chat_messages`
  (`sender`: human|assistant, `text` and/or `content` parts, `created_at`);
- `prompt_completion`: JSONL, `{"prompt", "completion"}`;
- `alpaca`: JSONL or a JSON list, `{"instruction", "input", "output"}` (Stanford Alpaca's alpaca_data.json),
  with LLaMA-Factory's optional `system` and `history` (earlier `[instruction, response]` pairs, which
  become earlier turns). The question is `instruction`, then a newline and `input` when there is one, as
  LLaMA-Factory joins them; an `output` that starts with `<nooutput>` (Stanford's mark for an instruction a
  text model cannot carry out) is left out and counted.

LLaMA-Factory's sharegpt files read as `sharegpt` (their `function_call` and `observation` turns, a tool call
and its result, are left out and counted like every tool turn, and the answer after them is tagged), and its
"openai" variant of sharegpt (`messages` with `role`/`content`) reads as `openai`.

Every conversation goes through the same steps: clean (hidden, tool and empty messages out; consecutive
turns of one speaker merged), filter (date range, language, keyword, answer length), then split into
training examples that fit the token budget (the config's tokenizer and max_length, or a character
budget). Nothing is dropped silently: every skipped record, turn and part (an image, a code block, a tool
call) is counted by reason, an answer given after a tool result that was left out (it may quote what the
example no longer holds) is tagged and counted, and malformed input is reported with its position
(file:line for JSONL, the conversation's index and id for JSON). Files that hold no conversations are
refused with what they are: preference pairs (chosen/rejected), a JSON object such as LLaMA-Factory's
dataset_info.json.
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
from molting.io import jsonl_lines, write_jsonl_atomic
from molting.yaml_source import is_placeholder

FORMATS = ("openai", "sharegpt", "chatgpt", "claude", "prompt_completion", "alpaca")
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
# Speakers and roles that carry a tool's result back into the conversation (the call itself is not one).
TOOL_RESULT_ROLES = {"tool", "function", "observation", "ipython"}
TEXT_PART_TYPES = ("text", "input_text", "output_text")
MEDIA_COLUMNS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}  # LLaMA-Factory's media
AFTER_TOOL = "answer_after_removed_tool_result"  # the tag and count of an answer that may quote a tool


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
    dropped_parts: Counter = field(default_factory=Counter)  # parts of messages left out (image, code), by type


# ---------------------------------------------------------------- reading


def _text_parts(content, where: str, parts: Counter) -> str:
    """OpenAI-style content: a string, or a list of parts of which the text ones are kept (`text`, or
    LLaMA-Factory v1's `value`); every other part is counted in `parts` by its type."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
                text = part.get("text", part.get("value", ""))
                texts.append(text if isinstance(text, str) else "")
            else:
                parts[str(part.get("type", "unknown")) if isinstance(part, dict) else type(part).__name__] += 1
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


def _from_openai(obj: dict, dropped: Counter, parts: Counter) -> list[dict]:
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise Malformed("messages: expected a list of {role, content} objects")
    out = []
    after_tool = False  # a tool's result was left out since the last user turn
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Malformed(f"messages[{i}]: expected an object with role and content")
        role = m.get("role")
        if role in TOOL_RESULT_ROLES:
            dropped["tool"] += 1
            after_tool = True
            continue
        if role == "developer":
            role = "system"
        if role == "function_call":  # LLaMA-Factory's openai-style sharegpt: the assistant calling a tool
            dropped["tool"] += 1
            continue
        if role not in ("system", "user", "assistant"):
            raise Malformed(f"messages[{i}].role: unknown role {role!r}")
        left_out: Counter = Counter()
        text = _text_parts(m.get("content"), f"messages[{i}].content", left_out)
        if role == "assistant" and not text.strip() and (m.get("tool_calls") or set(left_out) == {"tool_call"}):
            dropped["tool"] += 1  # the assistant calling a tool: a turn of its own, not an answer
            continue
        parts.update(left_out)
        message = {"role": role, "content": text}
        if role == "user":
            after_tool = False
        elif role == "assistant" and after_tool:
            message[AFTER_TOOL] = True
        out.append(message)
    return out


def _from_sharegpt(obj: dict, dropped: Counter, parts: Counter) -> list[dict]:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise Malformed("conversations: expected a list of {from, value} objects")
    out = []
    if isinstance(obj.get("system"), str):  # LLaMA-Factory's ShareGPT variant keeps it beside the turns
        out.append({"role": "system", "content": obj["system"]})
    after_tool = False  # an observation (a tool's result) was left out since the last user turn
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise Malformed(f"conversations[{i}]: expected an object with from and value")
        speaker = str(t.get("from", "")).lower()
        if speaker in SHAREGPT_TOOL_ROLES:
            dropped["tool"] += 1
            after_tool = after_tool or speaker in TOOL_RESULT_ROLES
            continue
        if speaker not in SHAREGPT_ROLES:
            raise Malformed(f"conversations[{i}].from: unknown speaker {t.get('from')!r} (expected human, gpt, system)")
        value = t.get("value")
        if value is not None and not isinstance(value, str):
            raise Malformed(f"conversations[{i}].value: expected text, got {type(value).__name__}")
        message = {"role": SHAREGPT_ROLES[speaker], "content": value or ""}
        if message["role"] == "user":
            after_tool = False
        elif message["role"] == "assistant" and after_tool:
            message[AFTER_TOOL] = True
        out.append(message)
    return out


def _from_prompt_completion(obj: dict, dropped: Counter, parts: Counter) -> list[dict]:
    for key in ("prompt", "completion"):
        if not isinstance(obj.get(key), str):
            raise Malformed(f"{key}: expected text")
    out = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["completion"]}]
    if isinstance(obj.get("system"), str):
        out.insert(0, {"role": "system", "content": obj["system"]})
    return out


def _from_alpaca(obj: dict, dropped: Counter, parts: Counter) -> list[dict]:
    for key in ("instruction", "output"):
        if not isinstance(obj.get(key), str):
            raise Malformed(f"{key}: expected text, got {_kind(obj.get(key))}")
    for key in ("input", "system"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise Malformed(f"{key}: expected text, got {_kind(obj[key])}")
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise Malformed(f"history: expected a list of [instruction, response] pairs, got {_kind(history)}")
    out = [{"role": "system", "content": obj["system"]}] if obj.get("system") else []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise Malformed(f"history[{i}]: expected an [instruction, response] pair of texts, got {pair!r:.80}")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    question = obj["instruction"] + ("\n" + obj["input"] if obj.get("input") else "")
    out.append({"role": "user", "content": question})
    if obj["output"].lstrip().startswith("<nooutput>"):
        dropped["alpaca_nooutput"] += 1  # no answer to learn; the question stays, and is counted unanswered
    else:
        out.append({"role": "assistant", "content": obj["output"]})
    return out


def _kind(value) -> str:
    return "nothing" if value is None else type(value).__name__


def _latest_leaf(mapping: dict) -> str:
    """The node id of the newest message that has no reply: where the conversation last ended."""
    leaves = [(i, nid, node) for i, (nid, node) in enumerate(mapping.items()) if isinstance(node, dict)]
    leaves = [(i, nid, node) for i, nid, node in leaves if not node.get("children")]
    if not leaves:
        raise Malformed("mapping: no node without children, so no branch ends anywhere")

    def created(item) -> tuple:
        message = item[2].get("message") or {}
        stamp = message.get("create_time") if isinstance(message, dict) else None
        return (stamp if isinstance(stamp, int | float) else float("-inf"), item[0])

    return max(leaves, key=created)[1]


def _chatgpt_branch(conv: dict) -> list[dict]:
    """The message nodes of the branch the user last saw, root first: from `current_node`, or, when the
    export has none, from the latest leaf (the newest message nothing replies to)."""
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        raise Malformed("mapping: expected an object of message nodes")
    node_id = conv.get("current_node")
    if node_id is None:
        node_id = _latest_leaf(mapping)
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


def _from_chatgpt(conv: dict, dropped: Counter, parts_left_out: Counter) -> list[dict]:
    out = []
    after_tool = False  # a tool's output was left out since the last user turn
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
            after_tool = after_tool or role == "tool"
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
        # images and files are objects among the parts; only the text is training data, the rest is counted
        text = "\n".join(p for p in parts if isinstance(p, str))
        for p in parts:
            if not isinstance(p, str):
                parts_left_out[str(p.get("content_type", "object")) if isinstance(p, dict) else "object"] += 1
        message = {"role": role, "content": text}
        if role == "user":
            after_tool = False
        elif after_tool:
            message[AFTER_TOOL] = True
        out.append(message)
    return out


def _from_claude(conv: dict, dropped: Counter, parts_left_out: Counter) -> list[dict]:
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
        after_tool, tool_seen = False, False  # text written after a tool's result, in this same message
        if isinstance(parts, list) and parts:
            texts = []
            for p in parts:
                kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                if kind == "text":
                    if isinstance(p.get("text"), str) and p["text"].strip():
                        texts.append(p["text"])
                        after_tool = after_tool or (sender == "assistant" and tool_seen)
                elif kind in ("tool_use", "tool_result"):
                    dropped["tool"] += 1
                    tool_seen = tool_seen or kind == "tool_result"
                else:  # a code block, thinking, an image: not the text of the answer, but counted
                    parts_left_out[str(kind)] += 1
            text = "\n\n".join(texts)
        else:
            text = t.get("text") or ""
        if not isinstance(text, str):
            raise Malformed(f"chat_messages[{i}].text: expected text")
        message = {"role": "user" if sender == "human" else "assistant", "content": text}
        if after_tool:
            message[AFTER_TOOL] = True
        out.append(message)
    return out


READERS: dict[str, Callable[[dict, Counter, Counter], list[dict]]] = {
    "openai": _from_openai,
    "sharegpt": _from_sharegpt,
    "chatgpt": _from_chatgpt,
    "claude": _from_claude,
    "prompt_completion": _from_prompt_completion,
    "alpaca": _from_alpaca,
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
        ("instruction", "alpaca"),
    ):
        if key in obj:
            return fmt
    return None


def _json_object_file(path: Path, text: str) -> object | None:
    """The parsed document when the file is one JSON object spread over lines (not JSONL), else None."""
    stripped = text.lstrip()
    first_line = stripped.split("\n", 1)[0]
    if not stripped.startswith("{"):
        return None
    try:
        json.loads(first_line)
        return None  # the first line is a record of its own: JSONL
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # not one document either: JSONL with bad lines, reported line by line


def _refuse_json_object(path: Path, obj: dict) -> UserError:
    keys = list(obj)
    shown = ", ".join(map(str, keys[:6])) + (f", … ({len(keys)} keys)" if len(keys) > 6 else "")
    datasets = [v for v in obj.values() if isinstance(v, dict)]
    if datasets and all({"file_name", "hf_hub_url", "ms_hub_url", "om_hub_url"} & set(v) for v in datasets):
        files = [v["file_name"] for v in datasets if isinstance(v.get("file_name"), str)]
        return UserError(
            f"{path}: LLaMA-Factory's dataset_info.json (datasets: {shown}): it describes datasets, it holds no "
            "conversations. Import the data files it names instead"
            + (f", e.g. molt data import {path.parent / files[0]} --out …" if files else "")
            + "."
        )
    return UserError(
        f"{path}: one JSON object (keys: {shown}), not conversations. Give a JSON list of conversations, JSONL "
        f"(one conversation a line), or one of the exports in --format ({', '.join(FORMATS)})."
    )


def _records(path: Path, malformed: list[str]) -> Iterator[tuple[str, str, object]]:
    """(where, default id, object) for each record: JSONL lines, or the items of a JSON list. A file that is
    one JSON object over several lines is one conversation when it looks like one, and refused otherwise."""
    text = path.read_text(encoding="utf-8")
    document = _json_object_file(path, text)
    if isinstance(document, dict):
        if _guess_format(document) is None and not _is_preference(document):
            raise _refuse_json_object(path, document)
        ident = document.get("uuid") or document.get("conversation_id") or document.get("id")
        yield f"{path}: conversation #0" + (f" (id {ident})" if ident else ""), str(ident or 0), document
        return
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
    for n, raw in enumerate(jsonl_lines(text), start=1):
        if not raw.strip():
            continue
        try:
            yield f"{path}:{n}", f"line{n}", json.loads(raw)
        except json.JSONDecodeError as e:
            malformed.append(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}).")


def _describe(obj) -> str:
    return f"keys: {', '.join(map(str, obj))}" if isinstance(obj, dict) else f"a {type(obj).__name__}"


def _is_preference(obj) -> bool:
    """A preference record: LLaMA-Factory's ranking data (`chosen`/`rejected` beside the conversation or
    instruction; v1's `chosen_messages`/`rejected_messages`), TRL's preference format."""
    return isinstance(obj, dict) and (
        {"chosen", "rejected"} <= set(obj) or {"chosen_messages", "rejected_messages"} <= set(obj)
    )


def _media(obj: dict, messages: list[dict], parts: Counter) -> None:
    """LLaMA-Factory's `images`/`videos`/`audios` beside the messages: counted, and their placeholders
    (`<image>`) taken out of the text, which is all that is imported."""
    for column, placeholder in MEDIA_COLUMNS.items():
        files = obj.get(column)
        if isinstance(files, list) and files:
            parts[column.removesuffix("s")] += len(files)
            for m in messages:
                m["content"] = m["content"].replace(placeholder, "").strip()


def read_conversations(path: Path, fmt: str | None, malformed: list[str]) -> tuple[str, list[SourceConversation]]:
    """Every conversation of the file, in order; malformed records go to `malformed` with their position.
    A preference file is refused: importing it as conversations would keep the chosen answer's prompt and
    lose both answers."""
    if not path.is_file():
        raise UserError(f"{path}: file not found.")
    conversations = []
    for where, ident, obj in _records(path, malformed):
        if _is_preference(obj):
            raise UserError(
                f"{where}: a preference pair (keys: {', '.join(map(str, obj))}), not a conversation: importing "
                "it as one would drop the chosen and rejected answers. molt data import writes SFT "
                "conversations; preference pairs for train.method sft+dpo or orpo go in `preference_data`, one "
                'pair a line as {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]} '
                "(molting/data/preference_pairs.py)."
            )
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
        parts: Counter = Counter()
        try:
            messages = READERS[fmt](obj, dropped, parts)
            created = _record_time(obj)
        except Malformed as e:
            malformed.append(f"{where}: {e} (format {fmt}).")
            continue
        _media(obj, messages, parts)
        conversations.append(SourceConversation(where, f"{path.stem}:{ident}", messages, created, dropped, parts))
    return fmt or "unknown", conversations


# ---------------------------------------------------------------- cleaning, filtering, splitting


def _clean(conv: SourceConversation, turns: Counter, info: Counter) -> tuple[str | None, list[tuple]]:
    """The source system prompt (or None) and the conversation as (user, assistant, after_tool) exchanges:
    after_tool is true when the answer came after a tool's result that was left out."""
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
            merged[-1][AFTER_TOOL] = merged[-1][AFTER_TOOL] or m.get(AFTER_TOOL, False)
            info["turns_merged"] += 1
        else:
            merged.append({"role": m["role"], "content": content, AFTER_TOOL: m.get(AFTER_TOOL, False)})
    exchanges = []
    pending_user = None
    for m in merged:
        if m["role"] == "user":
            pending_user = m["content"]
        elif pending_user is None:
            turns["assistant_without_question"] += 1
        else:
            exchanges.append((pending_user, m["content"], m[AFTER_TOOL]))
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
    for user, answer, after_tool in exchanges:
        pair = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        if after_tool:
            pair[1][AFTER_TOOL] = True  # taken off, and the example tagged, when the row is written
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
    text = fold(" ".join(u + " " + a for u, a, _ in exchanges)).lower()
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
    parts_skipped: dict[str, int]  # parts of kept turns left out (image, code, tool_call), by type
    flagged: dict[str, int]  # answers kept but tagged, by reason (answer_after_removed_tool_result)
    turns_merged: int
    conversations_split: int
    malformed: list[str]  # the position of every malformed record skipped


FILTER_REASONS = {
    "no_date": "--since/--until",
    "before_since": "--since",
    "after_until": "--until",
    "no_keyword": "--keyword",
    "nothing_left_after_turn_filters": "--min-answer-chars",
}


def _nothing_left(path: Path, fmt: str, skipped: Counter, turns: Counter, parts: Counter) -> str:
    """Why no example was written, pointing at the cause: the filters, or a file read as the wrong format."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    message = f"{path}: no conversation left (skipped: {counts or 'none'})."
    options = sorted(
        {FILTER_REASONS[k] for k in skipped if k in FILTER_REASONS} | {"--language" for k in skipped if "language" in k}
    )
    if options:
        message += f" Loosen {'/'.join(options)}."
    if skipped.get("no_exchange"):
        left_out = ", ".join(f"{k} {v}" for k, v in sorted((turns + parts).items()))
        message += (
            f" {skipped['no_exchange']} conversation(s) had no question with its answer once empty, hidden, tool "
            f"and system turns were left out (left out: {left_out or 'nothing'}). The file was read as {fmt}: if "
            f"that is wrong, pass --format ({', '.join(FORMATS)})."
        )
    return message


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
    parts: Counter = Counter()  # parts of messages left out, by type
    flagged: Counter = Counter()  # answers kept with a warning tag, by reason
    info: Counter = Counter()  # turns merged, conversations split
    if malformed:
        skipped["malformed"] = len(malformed)
    rows = []
    for conv in conversations:
        system, exchanges = _clean(conv, turns, info)
        parts.update(conv.dropped_parts)
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
            lang, _ = detect_language(fold(" ".join(u + " " + a for u, a, _ in exchanges)).lower())
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
        for user, answer, after_tool in exchanges:
            if len(answer) < options.min_answer_chars:
                turns["answer_too_short"] += 1
                segments.append([])
            elif is_placeholder(user) or is_placeholder(answer):
                # molting's data.jsonl rejects a message that starts with molt init's placeholder marker
                turns["placeholder"] += 1
                segments.append([])
            else:
                segments[-1].append((user, answer, after_tool))
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
        # An answer given after a tool's result may quote it ("I found two recipes…"), and the result is not
        # in the example: such answers are counted and their examples tagged, for curation to decide.
        for m in examples:
            tags = ["imported", f"conversation:{conv.source_id}"]  # curate keeps a conversation on one side
            flagged_here = sum(bool(x.pop(AFTER_TOOL, False)) for x in m)
            if flagged_here:
                flagged[AFTER_TOOL] += flagged_here
                tags.append(AFTER_TOOL)
            rows.append({"messages": m, "tags": tags})
        info["conversations_split"] += len(examples) > 1
    if not rows:
        raise UserError(_nothing_left(path, fmt, skipped, turns, parts))
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
        "parts_skipped": dict(sorted((k, v) for k, v in parts.items() if v)),
        "flagged": dict(sorted(flagged.items())),
        "turns_merged": info["turns_merged"],
        "conversations_split": info["conversations_split"],
        "malformed": malformed,
    }
