"""Preference pairs (the `preference_data` file of molt.yaml): what DPO trains on after SFT.

One pair per line, TRL's conversational preference format:
`{"prompt": [{"role": "system", ...}, {"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
"rejected": [{"role": "assistant", ...}], "source": "card"|"eval"|"dashboard", "id": "..."}`.
`molt augment` writes them; the dashboard saves them to eval/<id>/preference_pairs.jsonl. The card's
training system prompt is put in front of a prompt that has no system message, as for data.jsonl.
Reached through `load_pairs` (every malformed line as file:line, all at once) and `preference_preflight`
(token budget, forbidden claims on the wrong side, optimizer steps of the preference stage).
"""

from dataclasses import dataclass
from pathlib import Path

from molting.errors import UserError
from molting.io import read_jsonl

PAIR_FIELDS = ("prompt", "chosen", "rejected", "source", "id")


@dataclass
class PreferencePair:
    line: int  # 1-based line in the file
    prompt: list[dict]  # system (added from the card when missing) and user turns, ending with the user
    chosen: list[dict]  # one assistant message: the right answer
    rejected: list[dict]  # one assistant message: the wrong answer
    source: str = ""
    id: str = ""

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
        if not line_problems and obj["chosen"][0]["content"].strip() == obj["rejected"][0]["content"].strip():
            line_problems.append(f"{where}: chosen and rejected are the same answer; the pair teaches nothing.")
        if line_problems:
            problems += line_problems
            continue
        prompt = [dict(m) for m in obj["prompt"]]
        if prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": train_system_prompt.strip()})
        pairs.append(
            PreferencePair(n, prompt, obj["chosen"], obj["rejected"], obj.get("source", ""), obj.get("id", ""))
        )
    if problems:
        raise UserError(problems)
    if not pairs:
        raise UserError(f"{path}: no preference pairs. Write some with: molt augment CONFIG.")
    return pairs


def preference_preflight(config, persona, tokenizer, conversations: int = 0, world_size: int = 1) -> tuple[dict, list]:
    """The preference stage's part of the preflight: pairs parse, fit max_length, put no forbidden claim
    on the chosen side, and how many optimizer steps the stage takes. For train.method orpo the stage is
    the whole run, over the pairs and the `conversations` of data.jsonl together, with train's batch size
    and epochs; for sft+dpo it runs on one process over the pairs, with preference's."""
    from molting.models.chat_format import encode_prompt, render
    from molting.train.preflight import Finding, optimizer_steps
    from molting.card.text_match import find_first

    findings = []
    pairs = load_pairs(config.preference_data, persona.system_prompts.train)
    pref = config.preference
    orpo = config.train.method == "orpo"
    batch = config.train.batch_size if orpo else pref.batch_size or config.train.batch_size
    epochs = config.train.epochs if orpo else pref.epochs
    examples = len(pairs) + conversations if orpo else len(pairs)
    longest, too_long = 0, []
    for pair in pairs:
        prompt_tokens = len(encode_prompt(tokenizer, pair.prompt))
        for side in (pair.chosen, pair.rejected):
            n = len(tokenizer(render(tokenizer, pair.prompt + side), add_special_tokens=False)["input_ids"])
            longest = max(longest, n)
            if n > config.train.max_length:
                too_long.append((pair.line, n, prompt_tokens))
        for claim in persona.forbidden_claims:
            m = find_first(claim.compiled, pair.chosen[0]["content"])
            if m:
                findings.append(
                    Finding(
                        "error",
                        "preference_data",
                        f"{config.preference_data}:{pair.line}: the chosen answer makes forbidden claim "
                        f"{claim.id!r} ({m.text!r}); preference training would teach it. Swap or fix the pair.",
                    )
                )
    for line, n, prompt_tokens in too_long[:5]:
        findings.append(
            Finding(
                "error",
                "preference_data",
                f"{config.preference_data}:{line}: {n} tokens > max_length {config.train.max_length} (prompt "
                f"{prompt_tokens}); the answer would be cut. Raise train.max_length or shorten the pair.",
            )
        )
    steps = optimizer_steps(examples, batch, config.train.grad_accum, epochs, world_size if orpo else 1)
    what = f"{len(pairs)} pairs + {conversations} conversations (as pairs)" if orpo else f"{len(pairs)} pairs"
    findings.append(
        Finding(
            "info",
            "steps",
            f"preference stage ({config.train.method}): {what}, {steps['total_steps']} optimizer steps "
            f"(ceil({examples} / ({batch} × {config.train.grad_accum}"
            + (f" × {world_size} processes" if orpo and world_size > 1 else "")
            + f")) × {epochs} epochs).",
        )
    )
    sources: dict[str, int] = {}
    for pair in pairs:
        sources[pair.source or "unknown"] = sources.get(pair.source or "unknown", 0) + 1
    report = {
        "path": config.preference_data,
        "method": config.train.method,
        "pairs": len(pairs),
        **({"conversations": conversations} if orpo else {}),
        "sources": sources,
        "max_tokens": longest,
        "too_long": len(too_long),
        "steps": steps,
    }
    return report, findings
