"""Render conversations with the tokenizer's chat template and find which tokens are the assistant's.

TRL builds assistant-only labels only for templates with `{% generation %}` markers, and TinyLlama's
template has none. molting instead renders each conversation prefix with `apply_chat_template` (so the
template is the model's own, never hand-written: a hand-written one ending turns with `<|endoftext|>` on a
model that stops at `</s>` trains a model that never stops), finds each assistant
turn's character span, and marks the tokens inside it, up to and including the end-of-turn token; an
assistant message with OpenAI's `"weight": 0` is located the same way but left unmarked (context, not
trained on: TRL labels its tokens -100). The same function feeds the preflight's budget and EOS checks
and the trainer, so what is checked is exactly what is trained.
"""

from dataclasses import dataclass, field

from molting.errors import UserError


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    # the template sees role and content only: `weight` decides the mask, not the text
    messages = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def supervised(message: dict) -> bool:
    """An assistant message that is trained on: every one but those with OpenAI's `"weight": 0`."""
    return message["role"] == "assistant" and message.get("weight", 1) != 0


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a prompt ready for generation, tokenized exactly as in training."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class TokenizedConversation:
    input_ids: list[int]
    assistant_mask: list[int]  # 1 where the token is supervised (assistant content + end-of-turn, weight 1)
    assistant_turns: list[tuple[int, int]]  # token spans [start, end) of each assistant turn, weight 0 included
    role_tokens: dict[str, int] = field(default_factory=dict)  # tokens per role, template tokens included
    text: str = ""
    assistant_chars: list[tuple[int, int]] = field(default_factory=list)  # the same turns in `text`


class PrefixMismatch(UserError):
    """The template renders a conversation differently from its own prefixes (Qwen3's drops the reasoning of
    earlier turns once a later user turn follows)."""


def closing_text(tokenizer) -> str:
    """What the template writes after the last message when no generation prompt follows, and not when one does
    (Phi-3's appends its EOS): not part of any turn, so neither a prefix of the next turn nor supervised."""
    probe = [{"role": "user", "content": "x"}]
    plain, prompt = render(tokenizer, probe), render(tokenizer, probe, add_generation_prompt=True)
    if prompt.startswith(plain):
        return ""
    for token in tokenizer.all_special_tokens:
        if token and plain.endswith(token) and prompt.startswith(plain[: -len(token)]):
            return token
    return ""


def tokenize_conversation(tokenizer, messages: list[dict]) -> TokenizedConversation:
    full = render(tokenizer, messages)
    closing = closing_text(tokenizer)
    role_spans: list[tuple[str, int, int]] = []
    assistant_chars: list[tuple[int, int]] = []
    trained: list[bool] = []  # per assistant turn: its tokens go in the mask (weight 1)
    previous_end = 0
    for i, message in enumerate(messages):
        upto = render(tokenizer, messages[: i + 1])
        if closing and upto.endswith(closing):
            upto = upto[: -len(closing)]
        if not full.startswith(upto):
            raise PrefixMismatch(
                "the chat template renders a conversation differently from its own prefixes, so assistant "
                "tokens cannot be located. Set `chat_template` in molt.yaml to a template that renders "
                "turns in order."
            )
        if message["role"] == "assistant":
            prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
            start = len(prompt) if full.startswith(prompt) else previous_end
            end = len(upto.rstrip())  # the turn ends with its end-of-turn token, not the newline after it
            assistant_chars.append((start, end))
            trained.append(supervised(message))
        role_spans.append((message["role"], previous_end, len(upto)))
        previous_end = len(upto)

    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = encoding["input_ids"]
    offsets = encoding["offset_mapping"]
    mask = [0] * len(input_ids)
    turns = []
    for (start, end), train in zip(assistant_chars, trained, strict=True):
        idx = [t for t, (s, e) in enumerate(offsets) if e > s and start <= s < end]
        for t in idx:
            mask[t] = int(train)
        turns.append((idx[0], idx[-1] + 1) if idx else (0, 0))
    role_tokens: dict[str, int] = {}
    for s, _ in offsets:
        for role, a, b in role_spans:
            if a <= s < b:
                role_tokens[role] = role_tokens.get(role, 0) + 1
                break
    return TokenizedConversation(input_ids, mask, turns, role_tokens, full, assistant_chars)


def tokenize_last_turn(tokenizer, messages: list[dict]) -> TokenizedConversation:
    """A conversation ending with an assistant turn, supervised on that last turn only: the rendering with the
    generation prompt must be a prefix of the whole, and everything after it (up to and including the
    end-of-turn token, not the template's closing text) is supervised."""
    closing = closing_text(tokenizer)
    full = render(tokenizer, messages)
    prompt = render(tokenizer, messages[:-1], add_generation_prompt=True)
    body = full[: -len(closing)] if closing and full.endswith(closing) else full
    if not full.startswith(prompt):
        raise UserError(
            "the chat template renders an assistant turn so that its own generation prompt is not a prefix of it, "
            "so the tokens to supervise cannot be located even one turn at a time. Set `chat_template` in "
            "molt.yaml to a template whose generation prompt opens the assistant's turn as written in training."
        )
    start, end = len(prompt), len(body.rstrip())
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    idx = [t for t, (s, e) in enumerate(offsets) if e > s and start <= s < end]
    mask = [1 if t in set(idx) else 0 for t in range(len(ids))]
    roles = {"prompt": sum(1 for s, _ in offsets if s < start), "assistant": len(idx)}
    turns = [(idx[0], idx[-1] + 1)] if idx else [(0, 0)]
    return TokenizedConversation(ids, mask, turns, roles, full, [(start, end)])


def tokenize_for_training(tokenizer, messages: list[dict]) -> list[TokenizedConversation]:
    """The training examples of one conversation: itself, or, where the template renders the conversation
    differently from its own prefixes, one example per assistant turn, each supervised on its last turn only
    (each repeats the conversation before it, which is what that costs in tokens)."""
    try:
        return [tokenize_conversation(tokenizer, messages)]
    except PrefixMismatch:
        return [tokenize_last_turn(tokenizer, messages[: i + 1]) for i, m in enumerate(messages) if supervised(m)]
