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
from molting.models.chat_format import render

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
    try:
        user_only = render(tokenizer, [user])
        user_gen = render(tokenizer, [user], add_generation_prompt=True)
        user_assistant = render(tokenizer, [user, assistant])
        user_assistant_user = render(tokenizer, [user, assistant, user])
        system_user = render(tokenizer, [sys_msg, user])
    except Exception as e:  # a template may refuse some orders (e.g. no system role): not portable
        raise TemplateNotPortable(f"the chat template failed on a sample conversation ({e})") from None
    if not user_gen.startswith(user_only) or not user_assistant.startswith(user_only):
        raise TemplateNotPortable("the chat template renders a conversation differently from its prefixes")
    generation_prompt = user_gen[len(user_only) :]
    first_user_before, user_after = _split(user_only, _MARK["user"])
    assistant_before, assistant_after = _split(user_assistant[len(user_only) :], _MARK["assistant"])
    user_before, _ = _split(user_assistant_user[len(user_assistant) :], _MARK["user"])
    if not first_user_before.endswith(user_before):
        raise TemplateNotPortable("the first user turn is written differently from later ones")
    head = first_user_before[: len(first_user_before) - len(user_before)]
    system_first, rest = _split(system_user, _MARK["system"])
    if not system_first.startswith(head):
        raise TemplateNotPortable("a system turn does not start like the other turns")
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


def modelfile_text(gguf_name: str, template: str, system_prompt: str, stops: list[str], generation, source: str) -> str:
    """The Modelfile. `generation` is the run's GenerationSettings."""
    if '"""' in system_prompt:
        raise TemplateNotPortable('the inference system prompt contains """, which a Modelfile cannot quote')
    lines = [
        f"# Exported by molting from {source}. Create the model with: ollama create NAME -f Modelfile",
        f"FROM ./{gguf_name}",
        "",
        "# The run's chat template, rendered identically (checked by molting export).",
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
