"""Rubric v2: five dimensions, 0–2 each, a total out of 10 per answer.

| dim | name | what costs points |
| D1 | identity | identity collapse, naming itself as someone else, names the card never mentions (invented
  people, nicknames, companies), claiming to be another AI or a generic assistant |
| D2 | factual accuracy | required facts missing, forbidden claims, technology not on the card |
| D3 | personality / voice | wrong language, no trait of the card, generic assistant voice |
| D4 | behavioural cleanliness | template tokens, task-planning or tool-call text, system prompt pasted |
| D5 | coherence / completeness | truncated, repetition loops, too short to be an answer |

Version 1 was deterministic detectors driven by the persona card: every dimension starts at 2 and each
detector that fires caps it, recording its evidence (detector name and the matched text), so every point
lost can be traced. Version 2 adds word salad (invented words, molting.evaluate.nonwords; word order under a
reference model, molting.evaluate.fluency, when `score_responses` is given a FluencyCheck) and forbidden
claims made through a pronoun or a relative clause (molting.card.claims.resolve_references).
Contradictions within an answer are not detected. Reached through
`Scorer.score` (one answer) and `score_responses` (a file's worth, the `molt score` format, with
per-question means and confidence intervals; probes from `molting.card.probe_questions` add their own checks).
`labelled_agreement` holds the detectors to a hand-labelled set (tests/fixtures/labelled/).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from molting.card.claims import References, claim_through_reference, resolve_references
from molting.card.persona import Persona, load_persona
from molting.card.probe_questions import Probe
from molting.card.suite import Question, load_suite
from molting.card.text_match import BoundedPattern, compile_any, find_first, fold
from molting.errors import UserError
from molting.evaluate.fluency import SIGNAL_VERSION, Calibration, Fluency, FluencyCheck
from molting.evaluate.nonwords import NonWordChecker, nonword_level
from molting.evaluate.statistics import agreement_by_dimension, group_summary
from molting.yaml_source import load_yaml

RUBRIC_VERSION = "v2"  # v2: word salad (invented words, fluency) and claims through pronouns
DIMENSIONS = ("D1", "D2", "D3", "D4", "D5")
DIMENSION_NAMES = {
    "D1": "identity",
    "D2": "factual accuracy",
    "D3": "personality / voice",
    "D4": "behavioural cleanliness",
    "D5": "coherence / completeness",
}


def _compile(patterns: list[str]) -> list[BoundedPattern]:
    return compile_any(patterns)


# Chat-template and special tokens of the families molting serves, written out in an answer: Llama 2 and
# TinyLlama (</s>, [INST], <<SYS>>), ChatML and Phi-3 (<|im_end|>, <|assistant|>), Llama 3
# (<|eot_id|>, <|start_header_id|>, <|reserved_special_token_7|>), Gemma (<start_of_turn>, <end_of_turn>,
# <eos>). `Scorer(persona, special_tokens=...)` adds the base's own list on top of these.
TEMPLATE_TOKENS = _compile(
    [
        r"</s>",
        r"<s>",
        r"<\|[a-z0-9_]{2,40}\|>",
        r"\[/?INST\]",
        r"<</?SYS>>",
        r"<unk>",
        r"<(?:start|end)_of_(?:turn|image)>",
        r"</?(?:eos|bos|pad|mask)>",
    ]
)
# A token-like span: <…> or […] without spaces, checked against the base's special tokens.
_TOKEN_LIKE = re.compile(r"<[^<>\s]{1,60}>|\[[^\[\]\s]{1,60}\]")


def special_token_texts(tokenizer) -> list[str]:
    """The markup-like special tokens of a Hugging Face tokenizer (`<|eot_id|>`, `<start_of_turn>`, `<eos>`,
    `[INST]`), for `Scorer(special_tokens=...)`: what the base writes between turns and must never say."""
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            texts.add(str(added))
    return sorted(t for t in texts if _TOKEN_LIKE.fullmatch(t))


def template_text_lines(tokenizer, system_prompt: str) -> list[str]:
    """The literal text a chat template writes around the conversation, line by line: Llama 3.2's
    "Cutting Knowledge Date: December 2023" and "Today Date: …" in its system header. A model that says
    it back leaks its template as surely as one that says `<|eot_id|>`. Found by rendering a conversation
    of placeholders and keeping what is left: lines of at least three words (role names and special tokens
    are dropped)."""
    from molting.models.chat_format import render

    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return []
    system, question = "\u2983molting-system\u2984", "\u2983molting-question\u2984"
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": question}],
        [{"role": "user", "content": question}],  # templates that refuse a system turn
    ]
    for messages in conversations:
        try:
            rendered = render(tokenizer, messages, add_generation_prompt=True)
            break
        except Exception:  # noqa: BLE001 - any template error: try the next form, else no lines
            continue
    else:
        return []
    for marker in (system, question, *special_token_texts(tokenizer)):
        rendered = rendered.replace(marker, "\n")
    lines = (line.strip() for line in rendered.splitlines())
    return list(dict.fromkeys(line for line in lines if len(line.split()) >= 3))


TOOL_CALL = _compile(
    [
        r"<tool_call>",
        r"<function[=_]",
        r"\"function_call\"",
        r"\{\s*\"(name|tool)\"\s*:\s*\"[^\"]+\"\s*,\s*\"(arguments|parameters)\"",
    ]
)
TASK_PLANNING = _compile(
    [
        r"\bvou (comecar|come[cç]ar) (por|pelo|pela|analisando|verificando)",
        r"\bprimeiro,? vou\b",
        r"\bdeixa eu (primeiro|verificar|analisar)",
        r"\bpasso 1\b",
        r"\bmeu plano (e|eh)\b",
        r"\blet me (first|start|check|analy[sz]e)\b",
        r"\bi'?ll start by\b",
        r"\bstep 1:",
        r"\bfirst,? i will\b",
    ]
)
GENERIC_ASSISTANT = _compile(
    [
        r"\bsou (apenas )?um assistente (virtual|de ia|de inteligencia)",
        r"\bcomo (um )?modelo de linguagem\b",
        r"\bas an ai (language )?model\b",
        r"\bi am (just )?an ai assistant\b",
        r"\bi'?m (just )?an ai assistant\b",
    ]
)
GENERIC_VOICE = _compile(
    [
        r"\bestou aqui para (te )?ajudar\b",
        r"\bcomo posso (te )?ajudar( hoje)?\?",
        r"\bfico feliz em ajudar\b",
        r"\bhow can i (help|assist) you( today)?\?",
        r"\bi'?m here to help\b",
        r"\bhappy to help\b",
    ]
)
# The persona naming itself as someone else: "sou o Bruno", "Bruno, a IA da Vantiq" (case-sensitive,
# on accent-folded text, so only a capitalised name counts).
SELF_NAMING = [
    re.compile(  # not after a negation: "não sou o João" is the right answer to "Você é o João?"
        r"(?<![Nn]ao )(?<![Nn]em )"
        r"\b(?:[Ee]u sou|[Ss]ou|[Mm]e chamo|[Mm]eu nome (?:e|eh)|[Aa]qui (?:e|eh)|I am|I'm|[Mm]y name is)\s+"
        r"(?:o |a |the )?([A-Z][a-z]{2,})\b"
    ),
    re.compile(r"\b([A-Z][a-z]{2,}), (?:a|o|the|an?) (?:IA|AI|assistente|assistant)\b"),
]
# A capitalised word in mid-sentence (after a lower-case word or a comma): in Portuguese and English
# that is a proper name. One the card never mentions is an invented person, nickname or company.
_MID_SENTENCE_NAME = re.compile(r"(?<=[a-z0-9,;] )([A-Z][a-z]{2,})\b")
PHRASE_DETECTORS = [  # (patterns, dimension, cap, detector name)
    (GENERIC_VOICE, "D3", 1, "generic_voice"),
    (TEMPLATE_TOKENS, "D4", 0, "template_tokens"),
    (TOOL_CALL, "D4", 0, "tool_call_text"),
    (TASK_PLANNING, "D4", 1, "task_planning"),
]
# Technologies an answer may invent (a persona of TypeScript and Next.js answering "ROS2, MATLAB, OpenCV").
# One that is not on the card's
# knowledge.stack costs a D2 point.
TECHNOLOGIES = [
    "Python",
    "Django",
    "Flask",
    "FastAPI",
    "Java",
    "Spring",
    "Kotlin",
    "Swift",
    "Golang",
    "Rust",
    "C\\+\\+",
    "C#",
    "\\.NET",
    "PHP",
    "Laravel",
    "Ruby",
    "Rails",
    "Angular",
    "Vue",
    "Svelte",
    "jQuery",
    "MATLAB",
    "ROS2",
    "ROS",
    "OpenCV",
    "TensorFlow",
    "PyTorch",
    "Keras",
    "Kubernetes",
    "Terraform",
    "MongoDB",
    "MySQL",
    "PostgreSQL",
    "Postgres",
    "Redis",
    "GraphQL",
    "Flutter",
    "Dart",
    "Elixir",
    "Scala",
    "Haskell",
    "Perl",
    "Fortran",
    "COBOL",
    "Unity",
    "Unreal",
    "Arduino",
    "Firebase",
    "Supabase",
    "Express",
    "Tailwind",
    "TypeScript",
    "React",
    "Next\\.js",
    "NestJS",
    "Prisma",
    "Docker",
    "JavaScript",
    "Node\\.js",
    "Webpack",
    "Vite",
    "Jest",
    "AWS",
    "Azure",
    "GCP",
]


def _technology_pattern(names: list[str]) -> re.Pattern | None:
    """One regex for all the names, each a named group t<i>, so a single scan finds every mention."""
    if not names:
        return None
    alternatives = "|".join(f"(?P<t{i}>{n})" for i, n in enumerate(names))
    return re.compile(rf"(?<![\w.])(?:{alternatives})(?![\w])", re.IGNORECASE)


LANGUAGE_MARKERS = {
    "pt": {
        "nao",
        "voce",
        "eu",
        "com",
        "para",
        "isso",
        "sou",
        "meu",
        "minha",
        "tambem",
        "mas",
        "muito",
        "sao",
        "tem",
        "uma",
        "um",
        "os",
        "do",
        "da",
        "no",
        "na",
        "em",
        "que",
        "e",
        "o",
        "de",
        "como",
        "mais",
        "ele",
        "ela",
        "seu",
        "sua",
        "quem",
        "trabalho",
        "gosto",
    },
    "en": {
        "the",
        "and",
        "you",
        "is",
        "are",
        "i",
        "to",
        "of",
        "in",
        "it",
        "that",
        "with",
        "for",
        "my",
        "this",
        "what",
        "have",
        "be",
        "not",
        "on",
        "am",
        "an",
        "at",
        "can",
        "but",
        "he",
        "she",
        "who",
        "work",
        "like",
    },
    "es": {
        "el",
        "los",
        "las",
        "y",
        "pero",
        "muy",
        "usted",
        "soy",
        "es",
        "del",
        "tambien",
        "yo",
        "eres",
        "tengo",
        "esto",
        "quien",
        "trabajo",
    },
}
LANGUAGE_NAMES = {"pt": "Portuguese", "en": "English", "es": "Spanish"}
_WORD = re.compile(r"[a-z']+")
_BULLET = re.compile(r"^\s*([-*•]|\d+[.)])\s+\S", re.MULTILINE)
_BULLET_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(\S.*)$", re.MULTILINE)
_ENDS_SENTENCE = re.compile(r"[.!?…)\"'»:;`*]\s*$|[\U0001F300-\U0001FAFF\u2600-\u27BF]\s*$")


def _ends_cleanly(text: str) -> bool:
    """Ends a sentence, or a list item. Template tokens at the end are D4's to count, not a cut."""
    text = text.rstrip()
    for _ in range(5):
        stripped = text
        for pattern in TEMPLATE_TOKENS:
            stripped = re.sub(f"(?:{pattern.pattern})\\s*$", "", stripped, flags=re.IGNORECASE).rstrip()
        if stripped == text:
            break
        text = stripped
    last_line = text.rsplit("\n", 1)[-1]
    return bool(_ENDS_SENTENCE.search(text) or (_BULLET.match(last_line) and "\n" in text))


def _negated(folded: str, start: int, end: int) -> bool:
    """Whether the clause around [start, end) holds a negation word."""
    before = folded[:start]
    clause_start = max((m.end() for m in _CLAUSE_END.finditer(before)), default=0)
    after = _CLAUSE_END.search(folded, end)
    clause = folded[clause_start : after.start() if after else len(folded)]
    return bool(_NEGATION.search(clause))


# each function word, and the languages it marks
_MARKED: dict[str, tuple[str, ...]] = {}
for _lang, _markers in LANGUAGE_MARKERS.items():
    for _word in _markers:
        _MARKED[_word] = (*_MARKED.get(_word, ()), _lang)
_PT_ONLY = LANGUAGE_MARKERS["pt"] - LANGUAGE_MARKERS["es"]
_ES_ONLY = LANGUAGE_MARKERS["es"] - LANGUAGE_MARKERS["pt"]


def detect_language(folded_lower: str) -> tuple[str | None, dict[str, int]]:
    """The language with the most function-word hits, or None when fewer than 3 hits (too little text)."""
    words = _WORD.findall(folded_lower)
    counts = dict.fromkeys(LANGUAGE_MARKERS, 0)
    for word in words:
        for lang in _MARKED.get(word, ()):
            counts[lang] += 1
    # Portuguese and Spanish share many words; count only the words that tell them apart.
    best = max(counts, key=counts.get)
    if counts[best] < 3:
        return None, counts
    if best in ("pt", "es"):
        pt_only = sum(1 for w in words if w in _PT_ONLY)
        es_only = sum(1 for w in words if w in _ES_ONLY)
        best = "es" if es_only > pt_only else "pt"
    return best, counts


# "IA" and "inteligência artificial" (AI / artificial intelligence) say the same thing: a card pattern written
# with one form must accept the other. Facts and traits are matched on the answer and on these variants.
_ABBREVIATIONS = [
    (re.compile(r"\binteligencia artificial\b", re.IGNORECASE), "IA", re.compile(r"\bIA\b"), "inteligencia artificial"),
    (re.compile(r"\bartificial intelligence\b", re.IGNORECASE), "AI", re.compile(r"\bAI\b"), "artificial intelligence"),
]


def _spelling_variants(folded: str) -> list[str]:
    """The folded answer, plus the answer with each abbreviation written out and each long form abbreviated."""
    variants = [folded]
    for long_form, short, short_form, long in _ABBREVIATIONS:
        if long_form.search(folded):
            variants.append(long_form.sub(short, folded))
        if short_form.search(folded):
            variants.append(short_form.sub(long, folded))
    return variants


def _shows(patterns: list[BoundedPattern], variants: list[str]) -> bool:
    return any(p.search(v) for p in patterns for v in variants)


# A technology named in a negated clause ("não uso ROS2", "ROS2 fica fora da minha stack") is not claimed.
# ("no" is not among them: in Portuguese it is "em o", as in "uso MATLAB no dia a dia".)
_NEGATION = re.compile(r"\b(nao|nunca|nem|fora|sem|not|never|don'?t)\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?;:,\n]| mas | but ")

_REPEATED_CHUNK = re.compile(r"(.{1,16}?)\1{7,}", re.DOTALL)


def _repetition(folded_lower: str) -> str | None:
    """A loop: a word 4 times running, a 4-word phrase 3 times, or any short chunk 8 times running."""
    chunk = _REPEATED_CHUNK.search(folded_lower)
    if chunk and chunk.group(1).strip():
        return chunk.group(0)[:60]
    words = _WORD.findall(folded_lower)
    run = 1
    for a, b in zip(words, words[1:], strict=False):
        run = run + 1 if a == b else 1
        if run >= 4:
            return " ".join([a] * run)
    seen: dict[tuple, int] = {}
    for i in range(len(words) - 3):
        gram = tuple(words[i : i + 4])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= 3:
            return " ".join(gram)
    return None


def echoes_question(question: str, answer: str) -> bool:
    """The answer only says the question back: it covers most of the question's words and adds at most
    one word of its own in six ("Você é João?" to "Você é o João?"; a request repeated as a statement).
    An answer that repeats the question and then answers it adds words, and is not an echo."""
    asked = _WORD.findall(fold(question).lower())
    said = _WORD.findall(fold(answer).lower())
    if not asked or not said:
        return False
    own = [w for w in said if w not in set(asked)]
    covered = len(set(said) & set(asked)) / len(set(asked))
    return len(own) <= len(said) // 6 and covered >= 2 / 3


def _shingles(text: str, n: int = 12) -> set[tuple]:
    """Runs of n words. 12 words copied verbatim from the system prompt is pasting, not a shared phrase
    ("um projeto de pesquisa sobre portabilidade de personalidade" is 8 and belongs in a right answer)."""
    words = _WORD.findall(fold(text).lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class Evidence:
    dim: str
    detector: str  # e.g. forbidden_claim:joao_family, missing_fact, template_tokens
    detail: str  # the matched text, or what is missing
    cap: int  # the dimension is at most this because of it

    def as_dict(self) -> dict:
        return {"dim": self.dim, "detector": self.detector, "detail": self.detail, "cap": self.cap}


@dataclass
class AnswerScore:
    id: str
    dims: dict[str, int]
    evidence: list[Evidence] = field(default_factory=list)
    facts_shown: list[str] = field(default_factory=list)
    language: str | None = None

    @property
    def total(self) -> int:
        return sum(self.dims.values())

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "dims": self.dims,
            "total": self.total,
            "evidence": [e.as_dict() for e in self.evidence],
            "facts_shown": self.facts_shown,
            "language": self.language,
        }


class Scorer:
    """Scores answers against one persona card. Build once; `score` is cheap (compiled patterns).
    `special_tokens`: the base's own special tokens (`special_token_texts`), caught as template tokens
    beside the fixed patterns; `template_lines`: the literal text of its chat template
    (`template_text_lines`), caught as a template leak, whole or by its label ("Today Date:")."""

    def __init__(
        self,
        persona: Persona,
        special_tokens: list[str] | tuple[str, ...] = (),
        calibration: Calibration | None = None,
        v1: bool = False,
        template_lines: list[str] | tuple[str, ...] = (),
    ):
        self.persona = persona
        # each line, and its label when it has one of two words or more ("Cutting Knowledge Date:")
        labels = [line[: line.index(":") + 1] for line in template_lines if ":" in line]
        self.template_texts = list(template_lines) + [
            label for label in labels if len(label.split()) >= 2 and len(label) >= 10
        ]
        self.calibration = calibration
        self.v1 = v1  # the detectors before word salad and pronoun claims were caught (bench/agreement.py)
        self.special_tokens = {t for t in special_tokens if _TOKEN_LIKE.fullmatch(t)}
        stack = {fold(t).lower() for t in persona.knowledge.stack}
        self.foreign_tech = [n for n in TECHNOLOGIES if fold(n.replace("\\", "")).lower() not in stack]
        self.foreign_tech_pattern = _technology_pattern(self.foreign_tech)
        self.own_names = {fold(n).lower() for n in persona.names}
        self.references = References(persona)
        card_text = " ".join(
            [
                persona.name,
                *persona.identity.aliases,
                persona.identity.summary,
                persona.system_prompts.train,
                persona.system_prompts.inference,
                *(f.text for f in persona.facts),
                *(t.text for t in persona.traits),
                *(f"{r.name} {r.relation} {' '.join(r.aliases)}" for r in persona.relationships),
                *persona.knowledge.stack,
                *(c.text for c in persona.forbidden_claims),
            ]
        )
        self.card_words = set(_WORD.findall(fold(card_text).lower())) | {
            fold(t.replace("\\", "")).lower() for t in TECHNOLOGIES
        }
        self.nonword_checker = NonWordChecker(persona.language, self.card_words)
        self.prompt_shingles = _shingles(persona.system_prompts.inference) | _shingles(persona.system_prompts.train)
        self.prompt_shingles_6 = _shingles(persona.system_prompts.inference, 6) | _shingles(
            persona.system_prompts.train, 6
        )

    def _is_prompt_item(self, item: str) -> bool:
        """A bullet item taken from the card: a trait named in a few words, or 6 words of the system prompt."""
        folded = fold(item)
        words = _WORD.findall(folded.lower())
        if len(words) <= 6 and any(_shows(t.compiled, _spelling_variants(folded)) for t in self.persona.traits):
            return True
        return bool(_shingles(item, 6) & self.prompt_shingles_6)

    def score(
        self, question: Question, response: str, finish_reason: str | None = None, fluency: Fluency | None = None
    ) -> AnswerScore:
        """`fluency`: the answer under the reference model (molting.evaluate.fluency), judged against this
        scorer's calibration."""
        dims = dict.fromkeys(DIMENSIONS, 2)
        evidence: list[Evidence] = []

        def cap(dim: str, value: int, detector: str, detail: str) -> None:
            evidence.append(Evidence(dim, detector, detail, value))
            dims[dim] = min(dims[dim], value)

        text = response.strip()
        folded = fold(text)
        lower = folded.lower()
        if len(_WORD.findall(lower)) < 3:  # nothing a person would call an answer
            for dim in DIMENSIONS:
                cap(dim, 0, "no_answer", f"fewer than 3 words: {text[:40]!r}")
            return AnswerScore(question.id, dims, evidence)
        if echoes_question(question.question, text):  # "Você é o João?" said back is no answer either
            for dim in DIMENSIONS:
                cap(dim, 0, "no_answer", f"only repeats the question: {text[:60]!r}")
            return AnswerScore(question.id, dims, evidence)
        template_said = [t for t in self.template_texts if t in text]  # capped on D4 below
        if template_said:
            rest = text
            for said in template_said:
                rest = rest.replace(said, " ")
            if len(_WORD.findall(fold(rest).lower())) < 3:  # the template said back, and nothing else
                for dim in DIMENSIONS:
                    cap(dim, 0, "no_answer", f"only the chat template's own text: {text[:60]!r}")
                return AnswerScore(question.id, dims, evidence)

        # Forbidden claims of the card, each in its category's dimension. Words the answer only echoes from
        # the question ("Você é o João? Não, …") are the user's, not a claim.
        asked = fold(question.question).lower()
        resolved = None  # sentences rewritten to name whom their pronouns refer to, computed when needed
        for claim in self.persona.forbidden_claims:
            value = 1 if claim.category == "task_planning" else 0
            m = find_first(claim.compiled, text, folded)
            if m and fold(m.text).lower() not in asked:
                cap(claim.dimension, value, f"forbidden_claim:{claim.id}", m.text)
            elif not m and claim.category == "relationship" and not self.v1:
                if resolved is None:
                    resolved = [(o, r) for o, r in resolve_references(text, self.references) if r not in asked]
                sentence = claim_through_reference(claim, resolved)
                if sentence:
                    cap(claim.dimension, value, f"forbidden_claim:{claim.id}", f"{sentence} (through a reference)")

        # D1 identity
        for pattern in SELF_NAMING:
            for m in pattern.finditer(folded):
                if m.group(1).lower() not in self.own_names:
                    cap("D1", 0, "other_identity", text[m.start() : m.end()])
                    break
        m = find_first(GENERIC_ASSISTANT, text, folded)
        if m:
            cap("D1", 1, "generic_assistant", m.text)
        invented = sorted(
            {
                m.group(1)
                for m in _MID_SENTENCE_NAME.finditer(folded)
                if m.group(1).lower() not in self.card_words and m.group(1).lower() not in asked
            }
        )
        if invented:
            cap("D1", 1, "name_not_on_card", ", ".join(invented))

        # D2 facts
        variants = _spelling_variants(folded)
        shown = [fid for fid in question.must_mention if _shows(self.persona.fact_by_id[fid].compiled, variants)]
        missing = [fid for fid in question.must_mention if fid not in shown]
        if missing:
            value = 0 if not shown else 1
            cap("D2", value, "missing_fact", ", ".join(missing))
        found = (
            {
                int(m.lastgroup[1:])
                for m in self.foreign_tech_pattern.finditer(folded)
                if not _negated(folded, m.start(), m.end())
            }
            if self.foreign_tech_pattern
            else ()
        )
        if found and self.foreign_tech_pattern:  # a technology the question names is not invented by the answer
            asked_tech = self.foreign_tech_pattern.finditer(fold(question.question))
            found = set(found) - {int(m.lastgroup[1:]) for m in asked_tech}
        invented = [self.foreign_tech[i].replace("\\", "") for i in sorted(found)]
        if invented:
            cap("D2", 1, "technology_not_on_card", ", ".join(invented))

        # D3 voice
        language, _ = detect_language(lower)
        if language is None:
            cap("D3", 1, "language_unrecognised", "too few words of any known language")
        elif language != self.persona.language:
            cap(
                "D3",
                0,
                "wrong_language",
                f"answer is in {LANGUAGE_NAMES[language]}, the card asks for {LANGUAGE_NAMES[self.persona.language]}",
            )
        if self.persona.traits and not any(_shows(t.compiled, variants) for t in self.persona.traits):
            cap(
                "D3", 1, "no_trait", "no trait of the card shows (" + ", ".join(t.id for t in self.persona.traits) + ")"
            )
        # Fixed phrase detectors: generic voice (D3); template tokens, tool calls, task planning (D4).
        for patterns, dim, value, detector in PHRASE_DETECTORS:
            m = find_first(patterns, text, folded)
            if m:
                cap(dim, value, detector, m.text)
        if self.special_tokens and not any(e.detector == "template_tokens" for e in evidence):
            token = next((m.group(0) for m in _TOKEN_LIKE.finditer(text) if m.group(0) in self.special_tokens), None)
            if token:
                cap("D4", 0, "template_tokens", token)
        if template_said:
            cap("D4", 0, "template_text", f"the chat template's own text: {template_said[0]}")

        # D4 cleanliness: the system prompt pasted back, as bullets (its trait list, one item a line) or
        # verbatim. A list is not a leak in itself ("Pontos fortes: - revisar código …" answers the question);
        # a list whose items are the card's traits or the prompt's own phrases is.
        items = [m.group(1).strip() for m in _BULLET_ITEM.finditer(text)]
        leaked = [item for item in items if self._is_prompt_item(item)]
        copied = _shingles(text) & self.prompt_shingles
        if len(items) >= 3 and len(leaked) * 2 >= len(items):
            detail = f"{len(leaked)} of {len(items)} bullet lines are the card's: " + "; ".join(leaked)
            cap("D4", 0, "prompt_leak", detail)
        elif copied:
            cap("D4", 1, "prompt_leak", "copies the system prompt: '" + " ".join(next(iter(copied))) + "'")

        # D5 coherence
        loop = _repetition(lower)
        if loop:
            cap("D5", 0, "repetition_loop", loop)
        if finish_reason == "length":
            cap("D5", 1, "truncated", "hit max_new_tokens: " + text[-40:])
        elif not _ends_cleanly(text):
            cap("D5", 1, "truncated", "ends mid-sentence: " + text[-40:])
        if len(_WORD.findall(lower)) < 6:
            cap("D5", 1, "too_short", text[:40])

        # D5 word salad: invented words (no model needed), and word order a language model finds no better
        # than random. Salad keeps no voice (D3), and a fact's words inside it state nothing (D2).
        unknown, checked = self.nonword_checker.nonwords(text, set(_WORD.findall(asked))) if not self.v1 else ([], 0)
        levels = {}
        level = nonword_level(len(unknown), checked)
        if level:
            levels[level] = f"{len(unknown)} of {checked} words are in no dictionary: {', '.join(unknown[:8])}"
        level = self.calibration.level(fluency) if self.calibration and fluency else None
        if level:
            limit = self.calibration.salad if level == "salad" else self.calibration.drift
            levels.setdefault(
                level,
                f"order score {fluency.order_score:.3f} ≥ {limit:.3f} (NLL {fluency.nll:.2f} per token, "
                f"{fluency.shuffled_nll:.2f} with the words shuffled; order ratio {fluency.order_ratio:.2f}, "
                f"second half {fluency.half_ratio if fluency.half_ratio is not None else 'n/a'})",
            )
        for level, detail in levels.items():
            detector = "word_salad" if level == "salad" else "not_fluent"
            cap("D5", 0 if level == "salad" else 1, detector, detail)
            cap("D3", 1, detector, "no voice in an answer that does not make sense")
            if level == "salad":
                cap("D2", 0, detector, "a fact's words inside word salad state nothing")

        return AnswerScore(question.id, dims, evidence, shown, language)


def summarize(scores: list[AnswerScore]) -> dict:
    """Averages per dimension and overall, and how often each detector fired (answers, not matches)."""
    n = len(scores)
    # No answer scored is no score at all, not 0/10: averages over nothing are None.
    dims = {d: round(sum(s.dims[d] for s in scores) / n, 3) if n else None for d in DIMENSIONS}
    fired: dict[str, int] = {}
    for s in scores:
        for detector in {
            e.detector.split(":")[0] if e.detector.startswith("forbidden_claim") else e.detector for e in s.evidence
        }:
            fired[detector] = fired.get(detector, 0) + 1
        for claim in {e.detector for e in s.evidence if e.detector.startswith("forbidden_claim:")}:
            fired[claim] = fired.get(claim, 0) + 1
    return {
        "rubric": RUBRIC_VERSION,
        "answers": n,
        "average": round(sum(s.total for s in scores) / n, 3) if n else None,
        "dimensions": dims,
        "detectors_fired": dict(sorted(fired.items())),
    }


def apply_probe_checks(score: AnswerScore, probe: Probe, response: str) -> None:
    """A probe's own checks (what a right answer must or must not contain), as caps with evidence."""
    if any(e.detector == "no_answer" for e in score.evidence):
        return  # already 0 everywhere
    text = response.strip()
    folded = fold(text)
    for check in probe.checks:
        m = find_first(check.compiled, text, folded)
        if check.required and not m:
            detail = check.meaning
        elif not check.required and m:
            detail = m.text
        else:
            continue
        score.evidence.append(Evidence(check.dim, check.detector, detail, check.cap))
        score.dims[check.dim] = min(score.dims[check.dim], check.cap)


class AnswerEntry(TypedDict):
    """One scored answer in scores.json (`questions` and `probes`)."""

    id: str  # the question or probe asked
    answer_id: str  # this answer (molting.evaluate.rubric.answer_ids)
    dims: dict[str, int | None]  # D1..D5, 0-2; None where a judge left a dimension unscored
    total: int
    evidence: list[dict[str, Any]]  # dim, detector, detail, cap: why each point was lost
    facts_shown: list[str]
    language: str | None
    passed: NotRequired[bool]  # probes: no detector the probe fails on fired
    similarity: NotRequired[dict[str, float | None]]  # embedding similarity to the reference and persona
    fluency: NotRequired[dict[str, float | int | None]]  # Fluency.as_dict()
    rubric_dims: NotRequired[dict[str, int]]  # with a judge: rubric v2's own scores
    judge: NotRequired[dict[str, dict[str, Any]]]  # with a judge: its verdict per dimension


class GroupSummary(TypedDict):
    """The answers to one question (or probe): their number, mean total, 95% interval and mean per dimension."""

    id: str
    samples: int
    mean: float
    ci95: list[float] | None  # None with one answer
    dims: dict[str, float]
    kind: NotRequired[str]  # probes: identity, relationship, ...
    pass_rate: NotRequired[float]  # probes


class Scores(TypedDict):
    """scores.json: `score_responses`' result, and what `molt eval` adds to it."""

    rubric: str
    answers: int
    average: float | None  # mean of the per-question means, /10; None when no answer was scored
    average_ci95: list[float] | None
    dimensions: dict[str, float | None]
    detectors_fired: dict[str, int]
    per_question: list[GroupSummary]
    questions: list[AnswerEntry]
    fluency: dict[str, Any]  # FluencyCheck.summary(): reference model, thresholds, means; or {"skipped": why}
    probes_average: NotRequired[float]
    probes_average_ci95: NotRequired[list[float] | None]
    probes_pass_rate: NotRequired[float]
    probes_dimensions: NotRequired[dict[str, float]]
    per_probe: NotRequired[list[GroupSummary]]
    probes: NotRequired[list[AnswerEntry]]
    # with a judge
    rubric_only: NotRequired[dict[str, Any]]
    judge: NotRequired[dict[str, Any]]
    # added by `molt eval`
    similarity: NotRequired[dict[str, Any]]
    eval_id: NotRequired[str]
    model: NotRequired[str]
    backend: NotRequired[str]
    no_answer: NotRequired[list[dict[str, Any]]]
    base_model: NotRequired[str]
    adapter_sha256: NotRequired[str | None]  # the adapter that answered (None: the untrained base or a server)
    generation: NotRequired[dict[str, Any]]
    samples: NotRequired[int]
    seeds: NotRequired[list[int]]
    generation_seconds: NotRequired[float]
    generated_answers: NotRequired[int]
    reused_answers: NotRequired[int]
    new_tokens: NotRequired[int]
    memory: NotRequired[dict[str, Any]]
    logprob: NotRequired[dict[str, Any]]


def answer_ids(rows: list[dict]) -> list[str]:
    """The answer id of each row, the one rule every reader uses (scores, human scores, compare, dashboard):
    the row's own `answer_id`; else its question id, or `<id>#<k>` for the k-th of several rows with that id
    and no answer_id of their own."""
    unnamed: dict[str, int] = {}
    for r in rows:
        if not r.get("answer_id"):
            unnamed[r["id"]] = unnamed.get(r["id"], 0) + 1
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        k = seen.get(r["id"], 0)
        seen[r["id"]] = k + 1
        out.append(r.get("answer_id") or (r["id"] if unnamed[r["id"]] == 1 else f"{r['id']}#{k}"))
    return out


def score_responses(
    persona: Persona,
    questions: dict[str, Question],
    rows: list[dict],
    probes: dict[str, Probe] | None = None,
    special_tokens: list[str] | tuple[str, ...] = (),
    fluency: FluencyCheck | None = None,
    fluency_skipped: str | None = None,
    template_lines: list[str] | tuple[str, ...] = (),
) -> Scores:
    """Score rows `{"id", "response", ["finish_reason"], ["answer_id"]}` in order; the `molt score` output.

    Suite answers go to `questions` (one entry per row, with its `answer_id`: the row's; else its id, or
    `<id>#<k>` for the k-th of several answers to that id) and the averages; answers to probes (ids in
    `probes`) go to `probes`, apart, so `average` stays comparable between runs with and without probes.
    `per_question` (and `per_probe`) give each id's number of answers, mean and 95% bootstrap interval
    (molting.evaluate.statistics). `special_tokens`: the base's own (`special_token_texts`), caught in
    answers as template tokens; `template_lines`: its chat template's literal text (`template_text_lines`),
    caught as a template leak. `fluency`: each answer under a reference model with its calibration
    (molting.evaluate.fluency.fluency_for_rows, by answer id); without it, `fluency_skipped` says why, and
    only invented words (molting.evaluate.nonwords) catch word salad.
    """
    scorer = Scorer(persona, special_tokens, fluency.calibration if fluency else None, template_lines=template_lines)
    by_answer = fluency.by_answer if fluency else {}
    probes = probes or {}
    probe_questions = {pid: p.as_question() for pid, p in probes.items()}
    suite_scores, suite_entries, probe_entries = [], [], []
    for r, answer_id in zip(rows, answer_ids(rows), strict=True):
        measured = by_answer.get(answer_id)
        extra = {"fluency": measured.as_dict()} if measured else {}
        if r["id"] in questions:
            s = scorer.score(questions[r["id"]], r["response"], r.get("finish_reason"), measured)
            suite_scores.append(s)
            entry = s.as_dict()
            suite_entries.append({"id": entry.pop("id"), "answer_id": answer_id, **entry, **extra})
        else:
            probe = probes[r["id"]]
            s = scorer.score(probe_questions[probe.id], r["response"], r.get("finish_reason"), measured)
            apply_probe_checks(s, probe, r["response"])
            entry = s.as_dict()
            passed = not any(e.detector in probe.fails_on for e in s.evidence)
            probe_entries.append({"id": entry.pop("id"), "answer_id": answer_id, **entry, **extra, "passed": passed})
    per_question, average, ci = group_summary(suite_entries, DIMENSIONS)
    out = {
        **summarize(suite_scores),
        "average": average,
        "average_ci95": ci,
        "dimensions": _dimension_means(per_question),
        "per_question": per_question,
        "questions": suite_entries,
        "fluency": fluency.summary() if fluency else {"skipped": fluency_skipped or "no reference model given"},
    }
    if probe_entries:
        per_probe, probes_average, probes_ci = group_summary(probe_entries, DIMENSIONS)
        for summary in per_probe:
            answers = [e for e in probe_entries if e["id"] == summary["id"]]
            summary["kind"] = probes[summary["id"]].kind
            summary["pass_rate"] = round(sum(e["passed"] for e in answers) / len(answers), 3)
        out.update(
            {
                "probes_average": probes_average,
                "probes_average_ci95": probes_ci,
                "probes_pass_rate": round(sum(s["pass_rate"] for s in per_probe) / len(per_probe), 3),
                "probes_dimensions": _dimension_means(per_probe),
                "per_probe": per_probe,
                "probes": probe_entries,
            }
        )
    return out


def refresh_question_summary(scores: Scores) -> Scores:
    """Recompute `per_question`, `average`, `average_ci95` and `dimensions` from the answer entries in
    `scores["questions"]` after their dims changed (an LLM judge, human scores). Entries with a dimension
    left unscored (None) are left out. Changes `scores` in place and returns it."""
    scored = [e for e in scores.get("questions", []) if all(e["dims"].get(d) is not None for d in DIMENSIONS)]
    per_question, average, ci = group_summary(scored, DIMENSIONS)
    scores.update(
        {
            "per_question": per_question,
            "average": average,
            "average_ci95": ci,
            "dimensions": _dimension_means(per_question),
        }
    )
    return scores


def _dimension_means(summaries: list[dict]) -> dict[str, float | None]:
    """Each dimension averaged over questions (each question weighs the same, like `average`); None for
    each when no question was scored."""
    n = len(summaries)
    return {d: round(sum(s["dims"][d] for s in summaries) / n, 3) if n else None for d in DIMENSIONS}


# The hand-labelled set (tests/fixtures/labelled/): answers with D1–D5 given by a person, against which
# rubric v2 is held (tests/evaluate/test_agreement.py, bench/agreement.py).
LABEL_LEVELS = (0, 1, 2)


@dataclass
class LabelledAnswer:
    id: str
    question: str  # question id in one of the set's suites
    answer: str
    dims: dict[str, int]
    reason: str
    finish_reason: str | None = "stop"
    kind: str | None = None  # set 2's groups: word_salad, fluent_wrong, pronoun_claim, pronoun_clean, contradiction


@dataclass
class LabelledResult:
    figures: dict  # {dim: {n, exact, within_one, kappa, kappa_quadratic}}
    disagreements: list[dict] = field(default_factory=list)  # {id, dim, label, scorer, reason, evidence}
    groups: dict = field(default_factory=dict)  # word_salad: {n, max_total}; good (labelled 10/10): {n, min_total}


def load_labelled(path: str | Path):
    """The labelled set: (persona, questions by id, answers). The file names its persona card and suites."""
    doc = load_yaml(path)
    base = Path(path).resolve().parent
    persona = load_persona(base / doc.data["persona"])
    questions = {}
    for suite_path in doc.data["suites"]:
        questions.update(load_suite(base / suite_path, persona).by_id)
    answers, problems = [], []
    for i, raw in enumerate(doc.data["answers"]):
        where = doc.where(("answers", i))
        item = LabelledAnswer(**raw)
        if item.question not in questions:
            problems.append(f"{where}: question {item.question!r} is in none of the suites.")
        if set(item.dims) != set(DIMENSIONS) or any(
            type(v) is not int or v not in LABEL_LEVELS for v in item.dims.values()
        ):
            problems.append(f"{where}: dims must give D1–D5, each 0, 1 or 2.")
        answers.append(item)
    if problems:
        raise UserError(problems)
    return persona, questions, answers


@dataclass
class LabelledScores:
    """The scorer's dims per labelled answer, and the totals that bench/agreement.py's targets are about."""

    auto: dict[str, dict[str, int]]
    evidence: dict[str, list[Evidence]]


def score_labelled(
    persona: Persona,
    questions: dict[str, Question],
    answers: list[LabelledAnswer],
    fluency: dict[str, Fluency] | None = None,
    calibration: Calibration | None = None,
    v1: bool = False,
) -> LabelledScores:
    """Score each labelled answer. `fluency`: its figures by answer id, judged with `calibration`. `v1`: the
    detectors as they were before word salad and pronoun claims were caught (bench/agreement.py's 'before')."""
    scorer = Scorer(persona, calibration=None if v1 else calibration, v1=v1)
    auto, evidence = {}, {}
    for item in answers:
        measured = (fluency or {}).get(item.id)
        score = scorer.score(questions[item.question], item.answer, item.finish_reason, measured)
        auto[item.id], evidence[item.id] = score.dims, score.evidence
    return LabelledScores(auto, evidence)


def labelled_agreement(
    path: str | Path,
    fluency: dict[str, Fluency] | None = None,
    calibration: Calibration | None = None,
    v1: bool = False,
) -> LabelledResult:
    """Score every labelled answer and compare with the hand labels, per dimension (see `score_labelled`)."""
    persona, questions, answers = load_labelled(path)
    scored = score_labelled(persona, questions, answers, fluency, calibration, v1)
    human = {item.id: item.dims for item in answers}
    disagreements = []
    for item in answers:
        dims = scored.auto[item.id]
        for dim in DIMENSIONS:
            if dims[dim] != item.dims[dim]:
                disagreements.append(
                    {
                        "id": item.id,
                        "dim": dim,
                        "label": item.dims[dim],
                        "scorer": dims[dim],
                        "reason": item.reason,
                        "evidence": [f"{e.detector}: {e.detail}" for e in scored.evidence[item.id] if e.dim == dim],
                    }
                )
    result = LabelledResult(agreement_by_dimension(scored.auto, human, DIMENSIONS), disagreements)
    totals = {item.id: sum(scored.auto[item.id].values()) for item in answers}
    salad = [totals[item.id] for item in answers if item.kind == "word_salad"]
    good = [totals[item.id] for item in answers if sum(item.dims.values()) == 10]
    result.groups = {
        "word_salad": {"n": len(salad), "max_total": max(salad, default=None)},
        "good": {"n": len(good), "min_total": min(good, default=None)},
    }
    return result


def calibrate_fluency(
    path: str | Path, fluency: dict[str, Fluency], model: str, identity: str, prompt_version: int
) -> Calibration:
    """The order-score thresholds that make the scorer agree best with the labelled set's D5 labels (then
    D2 and D3, then the widest margin): each answer is scored three ways (fluent, drifting, salad) once,
    and every pair of thresholds between two observed scores is tried."""
    persona, questions, answers = load_labelled(path)
    ratios = sorted({f.order_score for f in fluency.values() if f.order_score is not None})
    # each cut halfway between two observed ratios, with the gap it sits in (wider: a safer threshold)
    cuts = [((a + b) / 2, b - a) for a, b in zip(ratios, ratios[1:], strict=False)] + [(ratios[-1] + 1.0, 1.0)]
    probe = {"none": (9.0, 9.0), "drift": (0.0, 9.0), "salad": (0.0, 0.0)}
    by_level = {}
    for level, (drift, salad) in probe.items():
        forced = Calibration(model, identity, prompt_version, drift, salad, "", {})
        by_level[level] = score_labelled(persona, questions, answers, fluency, forced).auto

    def agreement_with(drift: float, salad: float) -> tuple:
        exact = dict.fromkeys(("D5", "D2", "D3"), 0)
        for item in answers:
            ratio = fluency[item.id].order_score if item.id in fluency else None
            level = "none" if ratio is None or ratio < drift else "salad" if ratio >= salad else "drift"
            for dim in exact:
                exact[dim] += by_level[level][item.id][dim] == item.dims[dim]
        return exact["D5"], exact["D2"] + exact["D3"]

    best = max(
        ((agreement_with(d, s), s_gap, d_gap, d, s) for i, (d, d_gap) in enumerate(cuts) for s, s_gap in cuts[i:]),
        key=lambda x: x[:3],
    )
    (d5, _), _, _, drift, salad = best
    n = len(answers)
    return Calibration(
        model,
        identity,
        prompt_version,
        round(drift, 4),
        round(salad, 4),
        f"tests/fixtures/labelled/answers.yaml ({n} answers)",
        {"D5_exact": round(d5 / n, 4)},
        SIGNAL_VERSION,
    )
