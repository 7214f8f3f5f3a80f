"""Preference pairs (the `preference_data` file of molt.yaml): what DPO trains on after SFT.

One pair per line, TRL's conversational preference format:
`{"prompt": [{"role": "system", ...}, {"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
"rejected": [{"role": "assistant", ...}], "source": "card"|"eval"|"dashboard", "id": "...", "origin": {...}}`.
`source` says who wrote the chosen answer: a person ("dashboard") or molting from the card or a run's
evaluation ("card", "eval"). `origin` (optional; files without it still load) says where a pair came from:
`{"run", "eval", "answer_id"}`, and `saved` (UTC, ISO 8601) for a pair a person saved in the dashboard.
`molt augment` writes them; the dashboard saves them to eval/<id>/preference_pairs.jsonl. The card's
training system prompt is put in front of a prompt that has no system message, as for data.jsonl.
Reached through `load_pairs` (every malformed line as file:line, all at once); the preflight checks the
pairs' token budget, forbidden claims on the wrong side and the preference stage's optimizer steps
(molting.train.preflight.preference_preflight).
"""

from dataclasses import dataclass
from pathlib import Path

from molting.errors import UserError
from molting.io import read_jsonl

PAIR_FIELDS = ("prompt", "chosen", "rejected", "source", "id", "origin")
PEOPLE = ("dashboard",)  # sources whose chosen answer a person wrote
GENERATED = ("card", "eval")  # sources whose chosen answer molting wrote (card probes, suite references)


@dataclass
class PreferencePair:
    line: int  # 1-based line in the file
    prompt: list[dict]  # system (added from the card when missing) and user turns, ending with the user
    chosen: list[dict]  # one assistant message: the right answer
    rejected: list[dict]  # one assistant message: the wrong answer
    source: str = ""
    id: str = ""
    origin: dict[str, str] | None = None  # run, eval, answer_id (and saved) of a harvested or saved pair

    def as_trl(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def _messages_problems(value, where: str, roles: tuple[str, ...], last: str) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f'{where}: expected a non-empty list of {{"role", "content"}} messages.']
    problems = []
    for i, m in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(m, dict) or set(m) - {"role", "content"}:
            problems.append(f"{at}: expected an object with exactly role and content.")
            continue
        if m.get("role") not in roles:
            problems.append(f"{at}.role: {m.get('role')!r} is not allowed here; use {' or '.join(roles)}.")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            problems.append(f"{at}.content: expected non-empty text.")
    if not problems and value[-1]["role"] != last:
        problems.append(f"{where}: must end with a {last!r} message.")
    return problems


def load_pairs(path: str | Path, train_system_prompt: str) -> list[PreferencePair]:
    path = Path(path)
    parsed, problems = read_jsonl(path, "Check `preference_data` in molt.yaml, or write it with `molt augment`.")
    pairs = []
    for n, obj in parsed:
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            problems.append(f'{where}: expected a JSON object like {{"prompt": [...], "chosen": [...], ...}}.')
            continue
        line_problems = [
            f"{where}: unknown field {k!r} (allowed: {', '.join(PAIR_FIELDS)})." for k in obj if k not in PAIR_FIELDS
        ]
        line_problems += _messages_problems(
            obj.get("prompt"), f"{where}: prompt", ("system", "user", "assistant"), "user"
        )
        for side in ("chosen", "rejected"):
            line_problems += _messages_problems(obj.get(side), f"{where}: {side}", ("assistant",), "assistant")
            if isinstance(obj.get(side), list) and len(obj[side]) > 1:
                line_problems.append(f"{where}: {side}: expected exactly one assistant message.")
        for key in ("source", "id"):
            if key in obj and not isinstance(obj[key], str):
                line_problems.append(f"{where}: {key}: expected text.")
        origin = obj.get("origin")
        if origin is not None and (
            not isinstance(origin, dict) or not all(isinstance(v, str) for v in origin.values())
        ):
            line_problems.append(f'{where}: origin: expected an object of texts like {{"run": "...", "eval": "..."}}.')
        if not line_problems and obj["chosen"][0]["content"].strip() == obj["rejected"][0]["content"].strip():
            line_problems.append(f"{where}: chosen and rejected are the same answer; the pair teaches nothing.")
        if line_problems:
            problems += line_problems
            continue
        prompt = [dict(m) for m in obj["prompt"]]
        if prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": train_system_prompt.strip()})
        pairs.append(
            PreferencePair(n, prompt, obj["chosen"], obj["rejected"], obj.get("source", ""), obj.get("id", ""), origin)
        )
    if problems:
        raise UserError(problems)
    if not pairs:
        raise UserError(f"{path}: no preference pairs. Write some with: molt augment CONFIG.")
    return pairs
