"""The Ollama Modelfile of an export: FROM the GGUF, the chat template as a Go TEMPLATE, SYSTEM, stops, params.

Reached through `modelfile_text` (from `export.export_run`) and `template_mismatches` (from the export and
`verify`). The Go TEMPLATE is not written by hand: the run's own chat template (Jinja, the one training
used) is rendered with marker contents, split into what comes before and after each role's content and
what the generation prompt adds, and those pieces are put into the idiom of Ollama's own templates
(`range` over `.Messages`, the generation prompt after the last message). The result is then rendered
back with `go_template.render` on sample conversations and compared with the Jinja rendering character
for character; a template that does not come out identical (one that inserts a default system prompt,
reorders turns, or changes a turn depending on its neighbours) is refused rather than approximated.
"""

from dataclasses import dataclass

from molting.export.go_template import render as render_go
from molting.models.chat_format import closing_text, render

# Stand-ins for message contents; no whitespace at either end, so a template that trims contents (Gemma's
# `| trim`) prints them whole.
_MARK = {"system": "⟦MOLTING-SYSTEM⟧", "user": "⟦MOLTING-USER⟧", "assistant": "⟦MOLTING-ASSISTANT⟧"}


@dataclass
class ChatSegments:
    head: str  # text before the first message (e.g. a BOS written by the template)
    before: dict[str, str]  # per role: text before the content
    after: dict[str, str]  # per role: text after the content (end-of-turn token, newline)
    generation_prompt: str  # what add_generation_prompt appends after the last message
    # The system prompt is folded into the first user turn (Gemma's templates): the system message opens the
    # user turn (before["system"] is the user turn's opening) and the user turn after it does not open again.
    system_folded: bool = False
    # Templates that write something before the first message when it is not a system message (Qwen2.5's default
    # system prompt, Llama 3.2's system header with no prompt): that text, and how a system message in first
    # place is written (before and after its content) when it differs from a later one.
    no_system_head: str | None = None
    first_system: tuple[str, str] | None = None


class TemplateNotPortable(Exception):
    """The chat template cannot be written as a Go TEMPLATE that renders identically."""


def _split(text: str, mark: str) -> tuple[str, str]:
    if text.count(mark) != 1:
        raise TemplateNotPortable("the chat template does not print a message's content exactly once")
    before, _, after = text.partition(mark)
    return before, after


def chat_segments(tokenizer) -> ChatSegments:
    sys_msg = {"role": "system", "content": _MARK["system"]}
    user = {"role": "user", "content": _MARK["user"]}
    assistant = {"role": "assistant", "content": _MARK["assistant"]}
    closing = closing_text(tokenizer)  # Phi-3's EOS after the last message, only without a generation prompt

    def plain(messages):
        text = render(tokenizer, messages)
        return text[: -len(closing)] if closing and text.endswith(closing) else text

    try:
        user_only = plain([user])
        user_gen = render(tokenizer, [user], add_generation_prompt=True)
        user_assistant = plain([user, assistant])
        user_assistant_user = plain([user, assistant, user])
        system_user = plain([sys_msg, user])
    except Exception as e:  # a template may refuse some orders (e.g. no system role): not portable
        raise TemplateNotPortable(f"the chat template failed on a sample conversation ({e})") from None
    if not all(text.startswith(user_only) for text in (user_gen, user_assistant, user_assistant_user)):
        raise TemplateNotPortable("the chat template renders a conversation differently from its prefixes")
    generation_prompt = user_gen[len(user_only) :]
    first_user_before, user_after = _split(user_only, _MARK["user"])
    # Ollama renders conversations that end with a user turn, so every assistant turn it writes has a user turn
    # after it: take the assistant's form from there. (Qwen3's template writes an empty <think></think> block into
    # the last assistant turn only.) What ends the assistant turn is what ends it in last place too, so the split
    # between its end and the next user turn's opening is read from the rendering with the assistant last.
    assistant_before, between = _split(user_assistant_user[len(user_only) :], _MARK["assistant"])
    _, assistant_after = _split(user_assistant[len(user_only) :], _MARK["assistant"])
    if not between.startswith(assistant_after):
        raise TemplateNotPortable("an assistant turn ends differently when a user turn follows it")
    user_before, _ = _split(between[len(assistant_after) :], _MARK["user"])
    if not first_user_before.endswith(user_before):
        raise TemplateNotPortable("the first user turn is written differently from later ones")
    head = first_user_before[: len(first_user_before) - len(user_before)]
    system_first, rest = _split(system_user, _MARK["system"])
    if not system_first.startswith(head):
        return _segments_with_default_system(
            plain,
            head,
            system_first,
            rest,
            user_before,
            user_after,
            assistant_before,
            assistant_after,
            generation_prompt,
            user_only,
        )
    folded = False
    if rest.endswith(user_only[len(head) :]):
        system_after = rest[: len(rest) - len(user_only) + len(head)]
    elif (
        system_first == first_user_before
        and rest.count(_MARK["user"]) == 1
        and rest.endswith(_MARK["user"] + user_after)
    ):
        # `<start_of_turn>user\nSYSTEM\n\nUSER<end_of_turn>`: what separates the two is the system turn's end
        system_after, folded = rest[: -len(_MARK["user"] + user_after)], True
    else:
        raise TemplateNotPortable("a system turn changes the turn after it")
    return ChatSegments(
        head=head,
        before={"system": system_first[len(head) :], "user": user_before, "assistant": assistant_before},
        after={"system": system_after, "user": user_after, "assistant": assistant_after},
        generation_prompt=generation_prompt,
        system_folded=folded,
    )


def _segments_with_default_system(
    plain,
    no_system_head,
    system_first,
    rest,
    user_before,
    user_after,
    assistant_before,
    assistant_after,
    generation_prompt,
    user_only,
) -> ChatSegments:
    """A template that writes a default system turn when the conversation has none (Qwen2.5, Llama 3.2)."""
    user_turn = user_before + _MARK["user"] + user_after
    if not rest.endswith(user_turn):
        raise TemplateNotPortable("a system turn changes the turn after it")
    first_system = (system_first, rest[: -len(user_turn)])
    later = first_system
    try:  # a system message after the first turn, as the template writes it (Llama 3.2: without the date header)
        text = plain([{"role": "user", "content": _MARK["user"]}, {"role": "system", "content": _MARK["system"]}])
        if text.startswith(user_only):
            later = _split(text[len(user_only) :], _MARK["system"])
    except Exception:  # a template may refuse a system message there; the first one's form stands in
        pass
    return ChatSegments(
        head="",
        before={"system": later[0], "user": user_before, "assistant": assistant_before},
        after={"system": later[1], "user": user_after, "assistant": assistant_after},
        generation_prompt=generation_prompt,
        no_system_head=no_system_head,
        first_system=first_system,
    )


def go_template(segments: ChatSegments) -> str:
    """The Go TEMPLATE. No whitespace-trimming actions: the literal text between actions is exactly the
    chat template's, newlines included."""
    pieces = [*segments.before.values(), *segments.after.values(), segments.head, segments.generation_prompt]
    if any("{{" in p or "}}" in p or '"""' in p for p in pieces):
        raise TemplateNotPortable("the chat template's literal text contains '{{', '}}' or '\"\"\"'")
    before = dict(segments.before)
    if segments.system_folded:  # a user turn right after the system prompt continues the turn it opened
        before["user"] = f'{{{{ if ne $prev "system" }}}}{before["user"]}{{{{ end }}}}'
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq $m.Role "{role}" }}}}'
        f"{before[role]}{{{{ $m.Content }}}}{segments.after[role]}"
        for i, role in enumerate(("system", "user", "assistant"))
    )
    last = '{{ if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "assistant") }}'
    if segments.first_system is not None:
        first_before, first_after = segments.first_system
        if any("{{" in p or "}}" in p or '"""' in p for p in (first_before, first_after, segments.no_system_head)):
            raise TemplateNotPortable("the chat template's literal text contains '{{', '}}' or '\"\"\"'")
        return (
            '{{ range $i, $m := .Messages }}{{ if and (eq $i 0) (eq $m.Role "system") }}'
            f"{first_before}{{{{ $m.Content }}}}{first_after}"
            f"{{{{ else }}}}{{{{ if eq $i 0 }}}}{segments.no_system_head}{{{{ end }}}}"
            f"{branches}{{{{ end }}}}{{{{ end }}}}"
            f"{last}{segments.generation_prompt}{{{{ end }}}}{{{{ end }}}}"
        )
    declare, remember = ('{{ $prev := "" }}', "{{ $prev = $m.Role }}") if segments.system_folded else ("", "")
    return (
        f"{segments.head}{declare}{{{{ range $i, $m := .Messages }}}}{branches}{{{{ end }}}}{remember}"
        f"{last}{segments.generation_prompt}{{{{ end }}}}{{{{ end }}}}"
    )


def sample_conversations(system_prompt: str) -> list[list[dict]]:
    """Conversations the TEMPLATE is checked on: one turn, several turns, and no system prompt."""
    return [
        [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Olá! Quem é você?"}],
        [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": "Oi"},
            {"role": "assistant", "content": "Olá, tudo bem?\nPosso ajudar."},
            {"role": "user", "content": "Em que você trabalha?"},
        ],
        [{"role": "user", "content": "Bom dia"}],
    ]


def template_mismatches(template: str, tokenizer, conversations: list[list[dict]]) -> list[dict]:
    """Each conversation (ending with a user turn) whose Go rendering differs from the Jinja one, with both."""
    found = []
    for messages in conversations:
        jinja = render(tokenizer, messages, add_generation_prompt=True)
        data = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
        go = render_go(template, data)
        if go != jinja:
            found.append({"messages": messages, "chat_template": jinja, "modelfile_template": go})
    return found


def _quoted(value: str) -> str:
    if '"' in value or "\n" in value:
        raise TemplateNotPortable(f"stop string {value!r} cannot be written as a Modelfile parameter")
    return f'"{value}"'


def template_leaves_out(chat_template: str) -> str | None:
    """What of the chat template the TEMPLATE does not carry: the tool-calling branches (Qwen2.5's, Llama 3.2's,
    Qwen3's), which molting neither trains nor evaluates, and Qwen3's dropping of earlier turns' reasoning; None
    when the template has neither."""
    left_out = []
    if "tools" in chat_template or "tool_calls" in chat_template:
        left_out.append(
            "The chat template's tool-calling branches (a tools list, assistant tool_calls, tool results) are left "
            "out: this TEMPLATE renders the plain chat path only (system, user and assistant messages)."
        )
    if "</think>" in chat_template:
        left_out.append(
            "The chat template drops the reasoning (<think>...</think>) of earlier assistant turns; this TEMPLATE "
            "prints earlier turns as they are sent, so send them without it. Its thinking switch (enable_thinking) "
            "is left out too: the generation prompt is the template's default."
        )
    return " ".join(left_out) or None


def modelfile_text(
    gguf_name: str,
    template: str,
    system_prompt: str,
    stops: list[str],
    generation,
    source: str,
    leaves_out: str | None = None,
) -> str:
    """The Modelfile. `generation` is the run's GenerationSettings; `leaves_out` says what of the chat template
    the TEMPLATE does not render (`template_leaves_out`)."""
    if '"""' in system_prompt:
        raise TemplateNotPortable('the inference system prompt contains """, which a Modelfile cannot quote')
    lines = [
        f"# Exported by molting from {source}. Create the model with: ollama create NAME -f Modelfile",
        f"FROM ./{gguf_name}",
        "",
        "# The run's chat template, rendered identically (checked by molting export).",
        *([f"# {leaves_out}"] if leaves_out else []),
        f'TEMPLATE """{template}"""',
        "",
        "# The persona's inference system prompt; a request with its own system message replaces it.",
        f'SYSTEM """{system_prompt}"""',
        "",
        "# Every end-of-turn token, and the run's generation settings.",
        *(f"PARAMETER stop {_quoted(s)}" for s in stops),
        f"PARAMETER temperature {generation.temperature:g}",
        f"PARAMETER top_p {generation.top_p:g}",
        f"PARAMETER repeat_penalty {generation.repetition_penalty:g}",
        f"PARAMETER num_predict {generation.max_new_tokens}",
    ]
    if generation.temperature > 0:
        lines.append(f"PARAMETER seed {generation.seed}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict:
    """The instructions of a Modelfile as molting writes them (for checks and tests): FROM, TEMPLATE,
    SYSTEM as strings, PARAMETER as name → list of values."""
    out: dict = {"PARAMETER": {}}
    i = 0
    while i < len(text):
        line_end = text.find("\n", i)
        line_end = len(text) if line_end < 0 else line_end
        line = text[i:line_end]
        if not line.strip() or line.startswith("#"):
            i = line_end + 1
            continue
        keyword, _, rest = line.partition(" ")
        if rest.startswith('"""'):
            close = text.index('"""', i + len(keyword) + 4)
            value = text[i + len(keyword) + 4 : close]
            i = close + 3
            i = text.find("\n", i) + 1 or len(text)
        else:
            value = rest
            i = line_end + 1
        if keyword == "PARAMETER":
            name, _, raw = value.partition(" ")
            out["PARAMETER"].setdefault(name, []).append(raw.strip('"') if raw.startswith('"') else raw)
        else:
            out[keyword] = value
    return out
