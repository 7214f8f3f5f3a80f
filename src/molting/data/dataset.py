"""The training conversations (data.jsonl): one conversation per line in OpenAI `messages` format.

Reached through `load_dataset(path, train_system_prompt)`. Every malformed line is reported as
`file:line: what is wrong`, all of them at once. The persona card's short training prompt is added as the
system message unless a line carries its own.
"""

from dataclasses import dataclass, field
from pathlib import Path

from molting.errors import UserError
from molting.io import read_jsonl
from molting.yaml_source import is_placeholder

ROLES = ("system", "user", "assistant")
LINE_FIELDS = ("messages", "tags")


@dataclass
class Conversation:
    line: int  # 1-based line in data.jsonl
    messages: list[dict]  # with the system prompt in front
    tags: list[str] = field(default_factory=list)
    own_system_prompt: bool = False  # the line carried its own system message


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
        extra = [k for k in m if k not in ("role", "content")]
        if extra:
            problems.append(f"{at}: unknown field {extra[0]!r} (allowed: role, content).")
        role = m.get("role")
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
    return problems


def load_dataset(path: str | Path, train_system_prompt: str) -> list[Conversation]:
    path = Path(path)
    parsed, problems = read_jsonl(path, "Check `data` in molt.yaml (relative to the config file).")
    conversations: list[Conversation] = []
    for n, obj in parsed:
        line_problems = _line_problems(obj, f"{path}:{n}")
        if line_problems:
            problems.extend(line_problems)
            continue
        messages = [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]
        own = messages[0]["role"] == "system"
        if not own:
            messages.insert(0, {"role": "system", "content": train_system_prompt.strip()})
        conversations.append(Conversation(n, messages, obj.get("tags", []), own))
    if problems:
        raise UserError(problems)
    if not conversations:
        raise UserError(f'{path}: no conversations. Add one JSON object per line: {{"messages": [...]}}.')
    return conversations
