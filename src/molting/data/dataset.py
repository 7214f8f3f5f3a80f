"""The training conversations (data.jsonl): one conversation per line in OpenAI `messages` format.

Reached through `load_dataset(paths, train_system_prompt)`: one file, or the list `data:` gives in molt.yaml,
read in order. Every malformed line is reported as `file:line: what is wrong`, all of them at once. The
persona card's short training prompt is added as the system message unless a line carries its own.

An assistant message may carry OpenAI's fine-tuning `"weight": 0` or `1`: a weight-0 answer stays in the
conversation as context but is not trained on (its tokens get no loss; `chat_format.tokenize_conversation`
leaves them out of the mask). Messages keep `weight` only when it is 0.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from molting.errors import UserError
from molting.io import read_jsonl
from molting.yaml_source import is_placeholder

ROLES = ("system", "user", "assistant")
LINE_FIELDS = ("messages", "tags")


@dataclass
class Conversation:
    line: int  # 1-based line in its file
    messages: list[dict]  # with the system prompt in front; a weight-0 answer carries "weight": 0
    tags: list[str] = field(default_factory=list)
    own_system_prompt: bool = False  # the line carried its own system message
    path: str = ""  # the data file it comes from (one of `data:`'s)

    @property
    def where(self) -> str:
        """`file:line`, for messages that point at it."""
        return f"{self.path}:{self.line}"


def _line_problems(obj, where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f'{where}: expected a JSON object like {{"messages": [...]}}, got {type(obj).__name__}.']
    problems = [
        f"{where}: unknown field {key!r} (allowed: {', '.join(LINE_FIELDS)})." for key in obj if key not in LINE_FIELDS
    ]
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(f"{where}: tags: expected a list of strings.")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + [f'{where}: messages: expected a non-empty list of {{"role", "content"}} objects.']
    for i, m in enumerate(messages):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            problems.append(f"{at}: expected an object with role and content.")
            continue
        extra = [k for k in m if k not in ("role", "content", "weight")]
        if extra:
            problems.append(f"{at}: unknown field {extra[0]!r} (allowed: role, content, weight).")
        role = m.get("role")
        if "weight" in m:
            weight = m["weight"]
            if role != "assistant":
                problems.append(f"{at}.weight: only an assistant message has a weight (what is trained); remove it.")
            elif type(weight) is not int or weight not in (0, 1):
                problems.append(
                    f"{at}.weight: {json.dumps(weight)}; use 0 (context only, not trained on) or 1 (trained on, "
                    "the default)."
                )
        if role not in ROLES:
            problems.append(f"{at}.role: unknown role {role!r}; use one of {', '.join(ROLES)}.")
        elif role == "system" and i != 0:
            problems.append(f"{at}.role: a system message may only come first.")
        content = m.get("content")
        if not isinstance(content, str):
            problems.append(f"{at}.content: expected text, got {type(content).__name__}.")
        elif not content.strip():
            problems.append(f"{at}.content: empty; every message needs text.")
        elif is_placeholder(content):
            problems.append(f"{at}.content: placeholder not filled in; replace it with a real conversation.")
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if roles and roles[-1] != "assistant":
        problems.append(
            f"{where}: the conversation ends with a {roles[-1]!r} message; it must end with the assistant's "
            "answer (that is what gets trained)."
        )
    elif roles and all(m.get("weight") == 0 for m in messages if isinstance(m, dict) and m.get("role") == "assistant"):
        problems.append(
            f"{where}: every assistant message has weight 0, so nothing in it is trained; give one weight 1, or "
            "remove the line."
        )
    return problems


def data_files(paths: str | Path | list) -> list[Path]:
    """The data files of `data:`: one path, or a list of them."""
    return [Path(p) for p in paths] if isinstance(paths, list | tuple) else [Path(paths)]


def load_dataset(paths: str | Path | list, train_system_prompt: str, setting: str = "data") -> list[Conversation]:
    """The conversations of every file in `paths`, in order; every problem in every file at once. `setting`:
    the molt.yaml field that names the files (data, or eval_data for the held-out set)."""
    problems: list[str] = []
    conversations: list[Conversation] = []
    for path in data_files(paths):
        parsed, file_problems = read_jsonl(path, f"Check `{setting}` in molt.yaml (relative to the config file).")
        problems += file_problems
        found = 0
        for n, obj in parsed:
            line_problems = _line_problems(obj, f"{path}:{n}")
            if line_problems:
                problems.extend(line_problems)
                continue
            messages = [_message(m) for m in obj["messages"]]
            own = messages[0]["role"] == "system"
            if not own:
                messages.insert(0, {"role": "system", "content": train_system_prompt.strip()})
            conversations.append(Conversation(n, messages, obj.get("tags", []), own, str(path)))
            found += 1
        if not found and not file_problems and not parsed:
            problems.append(f'{path}: no conversations. Add one JSON object per line: {{"messages": [...]}}.')
    if problems:
        raise UserError(problems)
    return conversations


def _message(m: dict) -> dict:
    message = {"role": m["role"], "content": m["content"]}
    if m.get("weight") == 0:
        message["weight"] = 0
    return message
