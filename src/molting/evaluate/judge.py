"""An optional LLM judge beside rubric v2, on any OpenAI-compatible chat endpoint.

Reached through `apply_judge(scores, rows, persona, questions, settings, cache_dir)`, which `molt eval`
calls after the deterministic scoring when a judge is configured (`judge:` in molt.yaml, or
`--judge-url/--judge-model`). For each answer and each enabled dimension it makes one call at temperature
0 with a rubric prompt built from the persona card: what the dimension means, and an example answer for
each score level (0, 1, 2) made from the card's own facts, traits and forbidden claims. The reply must be
exactly `{"score": 0|1|2, "reason": "..."}`; anything else is garbage. So is a verdict that only copies the
prompt: a reason that is the template's placeholder ("one short sentence", "...") or one of the prompt's own
example answers or level descriptions (small models in JSON mode do this, score and all).

How the scores combine: a judged dimension is min(judge score, rubric v2's score). Rubric v2 starts every
dimension at 2 and only a deterministic detector lowers it, so this is the judge's score unless a
detector capped the dimension, and then never above the cap: detectors keep their veto whatever the judge
says. A judge that is down, slow or returns garbage leaves its dimension `{"unscored": reason}` and the
dimension keeps rubric v2's score; the judge never crashes an evaluation and never invents a score.

Each call asks for the verdict's form in `response_format` (judge.response_format): by default
`json_schema`, the verdict's JSON schema with strict decoding, so a server that constrains its output cannot
reply anything else. A server that refuses it (HTTP 400 or 422: an older llama.cpp or vLLM, a hosted API
without structured outputs) is asked again with `json_object`, then with none; the first call settles the
form, and every other call of the run uses it, so the refusal costs one call, not one per answer.
scores.json's `judge.response_format` records the form used and `judge.response_format_refused` what
the server refused and why.

Replies are cached in eval/<id>/judge_cache/ (the OpenAI client's ChatCache: keyed by the judge model and
the full prompt, which holds the rubric version and text, the card, the question and the answer, but not
the response_format, which changes how the verdict is decoded, not what is asked); only replies that parsed
are stored, so a re-run asks again exactly where the judge failed.
"""

import json
from pathlib import Path

from molting.card.persona import Persona
from molting.card.suite import Question
from molting.card.text_match import fold
from molting.config import JudgeSettings
from molting.evaluate.rubric import DIMENSION_NAMES, DIMENSIONS, TECHNOLOGIES
from molting.openai_client import ChatCache, ChatError, ChatReply, Endpoint, chat, chat_many

JUDGE_RUBRIC_VERSION = "judge-v1"
# The verdict parse_verdict accepts, as the JSON schema a server with structured outputs decodes to.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "enum": [0, 1, 2]}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}
RESPONSE_FORMATS: dict[str, dict | None] = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {"name": "judge_verdict", "schema": VERDICT_SCHEMA, "strict": True},
    },
    "json_object": {"type": "json_object"},
    "none": None,
}
FALLBACK_ORDER = ("json_schema", "json_object", "none")  # judge.response_format auto
REFUSED_REQUEST = (400, 422)  # what a server answers to a response_format it does not support
LANGUAGE_NAMES = {"pt": "Portuguese (Brazil)", "en": "English"}

# What each score means, per dimension (the same meaning as the hand-labelled set's README).
LEVELS = {
    "D1": {
        2: "speaks as {name}, and nothing in it contradicts that identity",
        1: "identity blurred: an invented nickname, a person or company that is not on the card, or talking "
        "about itself in the second person as if reading its instructions",
        0: "identity replaced: claims to be someone else (a person of the card, another AI such as ChatGPT, "
        "another named assistant) or only a generic assistant",
    },
    "D2": {
        2: "states the facts the question needs, as on the card, and nothing false",
        1: "some of the needed facts are missing, or a false detail (a technology not on the card, an invented event)",
        0: "none of the needed facts, or a claim the card forbids, or the core of the answer is false",
    },
    "D3": {
        2: "written in {language}, and the card's voice shows ({traits})",
        1: "in {language} but flat or generic (a customer-service tone), or languages mixed",
        0: "written in another language than {language}",
    },
    "D4": {
        2: "clean conversational text (a list the question asks for is clean)",
        1: "task-planning language ('I'll start by…'), or a sentence of the system prompt copied in",
        0: "chat-template tokens (</s>, <|assistant|>, [INST]), tool-call text, the system prompt or trait list "
        "pasted as bullets, or going along with a request the card says to decline",
    },
    "D5": {
        2: "complete and coherent",
        1: "cut off mid-sentence, too short to be an answer, a contradiction, or drifting into nonsense after a "
        "sound start",
        0: "a repetition loop, word salad throughout, or no answer",
    },
}
PHRASES = {  # the few fixed phrases the examples need, in the persona's language
    "pt": {
        "i_am": "Sou {name}.",
        "nickname": "Sou {name}, mas todo mundo me chama de Max.",
        "i_am_other": "Eu sou {other}.",
        "also_use": "Também uso {tech} no dia a dia.",
        "dont_know": "Não sei nada sobre isso.",
        "generic": "Estou aqui para ajudar! Como posso ajudar você hoje?",
        "planning": "Vou começar por analisar a sua pergunta.",
        "other_language": "I am {name}. I can help you with anything you need.",
    },
    "en": {
        "i_am": "I am {name}.",
        "nickname": "I am {name}, but everyone calls me Max.",
        "i_am_other": "I am {other}.",
        "also_use": "I also use {tech} every day.",
        "dont_know": "I don't know anything about that.",
        "generic": "I'm here to help! How can I assist you today?",
        "planning": "I'll start by analysing your question.",
        "other_language": "Sou {name}. Posso ajudar com o que você precisar.",
    },
}


def judge_for_run(
    run_dir: str | Path,
    url: str | None = None,
    model: str | None = None,
    disabled: bool = False,
    timeout: float | None = None,
    concurrency: int | None = None,
) -> JudgeSettings:
    """The run's `judge:` settings with `molt eval --judge-url/--judge-model/--no-judge` and
    `--judge-timeout/--judge-concurrency` applied (a small server answering one call at a time wants
    concurrency 1 and a timeout long enough for one answer)."""
    import dataclasses

    from molting.config import load_resolved_config
    from molting.errors import UserError

    settings = load_resolved_config(Path(run_dir)).judge
    if disabled:
        return dataclasses.replace(settings, url=None, model=None)
    changes = {"url": url, "model": model, "timeout": timeout, "concurrency": concurrency}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        try:
            return dataclasses.replace(settings, **changes)
        except ValueError as e:
            raise UserError(f"--judge-url/--judge-model/--judge-timeout/--judge-concurrency: {e}") from None
    return settings


class JudgeGarbage(ValueError):
    """The judge answered, but not with the JSON verdict the prompt asks for."""


# The reason placeholders the prompt shows ("reason": "one short sentence" / "...").
PLACEHOLDER_REASONS = {"one short sentence", "...", "…", ""}


def _plain(text: str) -> str:
    """Text compared for copying: accents, case, spacing and closing punctuation ignored."""
    return " ".join(fold(text).lower().split()).rstrip(" .!?;:")


def prompt_copies(persona: Persona, dim: str, question: Question | None) -> set[str]:
    """What a verdict's reason must not be (compared with `_plain`): the prompt's placeholders, its level
    descriptions and its example answers."""
    fill = _fill(persona)
    texts = [
        *(LEVELS[dim][level].format(**fill) for level in (0, 1, 2)),
        *level_examples(persona, dim, question).values(),
    ]
    return PLACEHOLDER_REASONS | {_plain(t) for t in texts}


def parse_verdict(text: str, copies: set[str] = frozenset()) -> tuple[int, str]:
    """`{"score": 0|1|2, "reason": "..."}` and nothing else (whitespace around it is allowed), with a reason
    of the judge's own: one in `copies` (see `prompt_copies`) or made of dots only is garbage."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        raise JudgeGarbage(f"reply is not JSON: {text.strip()[:80]!r}") from None
    if not isinstance(obj, dict) or set(obj) != {"score", "reason"}:
        raise JudgeGarbage(f'reply is not {{"score", "reason"}}: {text.strip()[:80]!r}')
    score, reason = obj["score"], obj["reason"]
    if type(score) is not int or score not in (0, 1, 2):
        raise JudgeGarbage(f"score {score!r} is not 0, 1 or 2")
    if not isinstance(reason, str) or not reason.strip():
        raise JudgeGarbage("reason is missing or empty")
    plain = _plain(reason)
    if plain in PLACEHOLDER_REASONS or plain in copies or not plain.strip(".…"):
        raise JudgeGarbage(f"the verdict copies the prompt's example instead of judging (reason {reason.strip()!r})")
    return score, reason.strip()


def _cut(text: str) -> str:
    words = text.rstrip(" .!?").split()
    return " ".join(words[: max(3, len(words) // 2)])


def level_examples(persona: Persona, dim: str, question: Question | None = None) -> dict[int, str]:
    """An example answer for each score level of `dim`, made from the persona card."""
    say = PHRASES.get(persona.language, PHRASES["en"])
    name = persona.name
    facts = [f.text for f in persona.facts] or [persona.identity.summary]
    if question is not None and question.must_mention:  # the facts this question needs come first
        needed = [persona.fact_by_id[f].text for f in question.must_mention]
        facts = needed + [f for f in facts if f not in needed]
    fact = facts[0]
    two_facts = " ".join(facts[:2])
    stack = {t.lower() for t in persona.knowledge.stack}
    foreign = [t.replace("\\", "") for t in TECHNOLOGIES if t.replace("\\", "").lower() not in stack][:2]
    other = persona.relationships[0].name if persona.relationships else "ChatGPT"
    identity_claims = [c.text for c in persona.forbidden_claims if c.category == "identity"]
    fact_claims = [
        c.text for c in persona.forbidden_claims if c.category in ("relationship", "project", "organization")
    ]
    if dim == "D1":
        return {
            2: f"{say['i_am'].format(name=name)} {persona.identity.summary}",
            1: f"{say['nickname'].format(name=name)} {persona.identity.summary}",
            0: identity_claims[0] if identity_claims else say["i_am_other"].format(other=other),
        }
    if dim == "D2":
        return {
            2: two_facts,
            1: f"{fact} {say['also_use'].format(tech=' / '.join(foreign))}",
            0: fact_claims[0] if fact_claims else say["dont_know"],
        }
    if dim == "D3":
        voiced = question.reference if question is not None and question.reference else two_facts
        return {2: voiced, 1: f"{fact} {say['generic']}", 0: say["other_language"].format(name=name)}
    if dim == "D4":
        bullets = "\n".join(f"- {t.text}" for t in persona.traits[:4]) or f"- {fact}"
        return {2: fact, 1: f"{say['planning']} {fact}", 0: f"{fact}</s>\n<|user|>\n{bullets}"}
    return {2: two_facts, 1: _cut(fact), 0: " ".join([" ".join(fact.split()[:4])] * 6)}


def card_summary(persona: Persona) -> str:
    lines = [
        f"- Name: {persona.name}"
        + (f" (also {', '.join(persona.identity.aliases)})" if persona.identity.aliases else ""),
        f"- Who: {persona.identity.summary}",
        f"- Answers in: {LANGUAGE_NAMES.get(persona.language, persona.language)}",
        "- Facts:",
        *(f"  - {f.id}: {f.text}" for f in persona.facts),
        "- People:",
        *(f"  - {r.name}: {r.relation}" for r in persona.relationships),
        "- Voice: " + ", ".join(t.text for t in persona.traits),
        "- Technologies it knows (any other it claims to use is invented): " + ", ".join(persona.knowledge.stack),
        "- It must never say:",
        *(f"  - {c.text}" for c in persona.forbidden_claims),
    ]
    return "\n".join(lines)


SYSTEM = (
    "You are an exacting evaluator of a chatbot that plays a persona. You score one answer on one dimension "
    "of a rubric, 0, 1 or 2, judging only that dimension. Reply with one JSON object and nothing else: "
    '{"score": 0, 1 or 2, "reason": "one short sentence"}.'
)


def _fill(persona: Persona) -> dict[str, str]:
    return {
        "name": persona.name,
        "language": LANGUAGE_NAMES.get(persona.language, persona.language),
        "traits": ", ".join(t.text for t in persona.traits) or "its character",
    }


def judge_messages(persona: Persona, dim: str, question_text: str, question: Question | None, answer: str) -> list:
    """The rubric prompt for one dimension of one answer."""
    fill = _fill(persona)
    examples = level_examples(persona, dim, question)
    scale = "\n".join(
        f"{level} — {LEVELS[dim][level].format(**fill)}.\n"
        f"    Example answer: {json.dumps(examples[level], ensure_ascii=False)}"
        for level in (2, 1, 0)
    )
    parts = [
        f"Rubric {JUDGE_RUBRIC_VERSION}, dimension {dim}: {DIMENSION_NAMES[dim]}.",
        "",
        "The persona card:",
        card_summary(persona),
        "",
        f"Scores for {dim}:",
        scale,
        "",
        f"Question asked: {json.dumps(question_text, ensure_ascii=False)}",
    ]
    if question is not None and dim == "D2" and question.must_mention:
        facts = {f.id: f.text for f in persona.facts}
        parts.append("Facts a right answer states: " + "; ".join(facts[f] for f in question.must_mention))
    if question is not None and question.reference and dim in ("D2", "D3"):
        parts.append(f"A reference answer: {json.dumps(question.reference, ensure_ascii=False)}")
    parts += [
        "",
        "The answer to score, between the markers:",
        "<<<ANSWER",
        answer,
        "ANSWER>>>",
        "",
        f'Score {dim} only. Reply with JSON only: {{"score": 0|1|2, "reason": "..."}}',
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


def _with_format(request: dict, form: str) -> dict:
    response_format = RESPONSE_FORMATS[form]
    return {**request, "extra": {"response_format": response_format} if response_format else None}


def _ask(
    endpoint: Endpoint, requests: list[dict], copies: list[set[str]], settings: JudgeSettings, cache: ChatCache, on_done
) -> tuple[list, str | None, list[dict]]:
    """Each request's verdict (score, reason) or the reason it has none; `copies[i]` are the texts request i's
    reason must not be. Cached verdicts are reused; only replies that parse are cached, so garbage and
    failures are asked again on the next run. Also returns the response_format the calls used (None when
    every verdict came from the cache) and the forms the server refused ({response_format, reason})."""
    results: list = [None] * len(requests)
    missing = []
    for i, request in enumerate(requests):
        cached = cache.get(endpoint, request)
        if cached is not None:
            try:
                results[i] = parse_verdict(cached.text, copies[i])
                on_done()
                continue
            except JudgeGarbage:
                pass
        missing.append(i)

    def done(i: int, reply) -> None:
        # each verdict is cached as it arrives, so an interrupted run keeps what finished
        if isinstance(reply, ChatError):
            results[i] = f"judge failed: {reply.reason}"
        else:
            try:
                results[i] = parse_verdict(reply.text, copies[i])
            except JudgeGarbage as e:
                results[i] = f"judge returned garbage: {e}"
            else:
                cache.put(endpoint, requests[i], ChatReply(reply.text, reply.finish_reason, {}))
        on_done()

    if not missing:
        return results, None, []
    forms = list(FALLBACK_ORDER) if settings.response_format == "auto" else [settings.response_format]
    refused = []
    first = missing[0]
    while True:  # the first call settles the form; the others then use it
        request = _with_format(requests[first], forms[0])
        try:
            reply = chat(
                endpoint,
                request["messages"],
                temperature=request["temperature"],
                max_tokens=request["max_tokens"],
                extra=request["extra"],
            )
        except ChatError as e:
            if e.status in REFUSED_REQUEST and len(forms) > 1:
                refused.append({"response_format": forms.pop(0), "reason": e.reason})
                continue
            reply = e
        break
    done(first, reply)
    rest = missing[1:]
    chat_many(
        endpoint,
        [_with_format(requests[i], forms[0]) for i in rest],
        concurrency=settings.concurrency,
        on_done=lambda k, reply: done(rest[k], reply),
    )
    return results, forms[0], refused


def response_format_note(judge: dict) -> str:
    """The form the judge's calls asked for, and what the server refused, in words (report.md, `molt eval`);
    "" for a scores.json written before the form was recorded."""
    if "response_format" not in judge:
        return ""
    form = judge["response_format"]
    text = "every verdict from the cache" if form is None else f"response_format {form}"
    refused = judge.get("response_format_refused") or []
    if refused:
        text += " (the server refused " + "; ".join(f"{r['response_format']}: {r['reason']}" for r in refused) + ")"
    return text


def apply_judge(
    scores: dict,
    rows: list[dict],
    persona: Persona,
    questions: dict[str, Question],
    settings: JudgeSettings,
    cache_dir: str | Path,
    show_progress: bool = True,
) -> dict:
    """Judge every scored answer on the enabled dimensions and combine with rubric v2 (see the module
    docstring). `scores["questions"][i]` is the rubric's score of `rows[i]`. Changes `scores` in place and
    returns it: per answer `judge` ({dim: {score, reason} | {unscored: reason}}), `rubric_dims` (rubric v2
    alone) and `dims` (combined); the averages are recomputed and rubric v2's kept as `rubric_only`."""
    from molting.progress import bar

    endpoint = Endpoint(
        settings.url, settings.model, settings.api_key_env, timeout_s=settings.timeout, max_retries=settings.retries
    )
    dims = [d for d in DIMENSIONS if d in settings.dims]
    requests, index, copies = [], [], []
    if len(scores["questions"]) != len(rows):
        raise ValueError("apply_judge: scores['questions'] and rows must be the same answers, in the same order")
    for i, row in enumerate(rows):
        question = questions.get(row["id"])
        for dim in dims:
            messages = judge_messages(persona, dim, row.get("prompt") or question.question, question, row["response"])
            requests.append({"messages": messages, "temperature": 0.0, "max_tokens": 300})
            index.append((i, dim))
            copies.append(prompt_copies(persona, dim, question))
    with bar(f"judging ({settings.model})", len(requests), unit="requests", disable=not show_progress) as progress:
        results, response_format, refused = _ask(
            endpoint, requests, copies, settings, ChatCache(cache_dir), progress.advance
        )

    for entry in scores["questions"]:
        entry["rubric_dims"] = dict(entry["dims"])
        entry["judge"] = {}
    unscored = 0
    for (i, dim), result in zip(index, results, strict=True):
        entry = scores["questions"][i]
        if isinstance(result, str):
            unscored += 1
            entry["judge"][dim] = {"unscored": result}
            continue
        score, reason = result
        entry["judge"][dim] = {"score": score, "reason": reason}
        entry["dims"][dim] = min(score, entry["rubric_dims"][dim])
    for entry in scores["questions"]:
        entry["total"] = sum(entry["dims"].values())
    n = len(scores["questions"])
    scores["rubric_only"] = {"average": scores["average"], "dimensions": scores["dimensions"]}
    if n:
        scores["dimensions"] = {d: round(sum(q["dims"][d] for q in scores["questions"]) / n, 3) for d in DIMENSIONS}
        scores["average"] = round(sum(q["total"] for q in scores["questions"]) / n, 3)
    scores["judge"] = {
        "url": settings.url,
        "model": settings.model,
        "rubric": JUDGE_RUBRIC_VERSION,
        "dims": dims,
        "calls": len(requests),
        "unscored": unscored,
        "response_format": response_format,  # None: every verdict came from the cache
        "response_format_refused": refused,
        "combined": "each judged dimension is min(judge score, rubric v2 score): the judge's score unless a "
        "deterministic detector capped the dimension lower; an unscored dimension keeps rubric v2's score",
    }
    return scores
