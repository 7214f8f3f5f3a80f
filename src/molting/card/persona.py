"""The persona card (persona.yaml): the single source the preflight, the trainer and the scorer read.

Reached through `load_persona(path)`. The schema is the dataclasses below; each field's comment is the
documentation a user sees in `molt init`'s template.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import regex

from molting.card.text_match import BoundedPattern, compile_any, compile_pattern, find_first, fold
from molting.errors import UserError
from molting.yaml_source import FieldValueError, build, dotted, load_yaml, placeholder_problems

# The eight kinds of wrong answer a persona's small model gives, each scored in one rubric dimension.
ClaimCategory = Literal[
    "relationship",  # João as father/son/creator          -> D2
    "identity",  # "I am ChatGPT", identity collapse         -> D1
    "task_planning",  # "Vou começar por…"                   -> D4
    "project",  # Molting as a web framework                 -> D2
    "organization",  # Softtor as a consultancy              -> D2
    "language",  # answering in the wrong language           -> D3 (detector; patterns optional)
    "prompt_leak",  # system prompt pasted as bullets        -> D4 (detector; patterns optional)
    "out_of_scope",  # going along with booking a hotel      -> D4
]
CATEGORY_DIMENSION = {
    "relationship": "D2",
    "identity": "D1",
    "task_planning": "D4",
    "project": "D2",
    "organization": "D2",
    "language": "D3",
    "prompt_leak": "D4",
    "out_of_scope": "D4",
}
DETECTOR_CATEGORIES = {"language", "prompt_leak"}


def _compile_all(owner: str, patterns: list[str], field_name: str) -> list[BoundedPattern]:
    for p in patterns:
        try:
            compile_pattern(p)
        except regex.error as e:
            raise FieldValueError(field_name, f"{owner}: pattern {p!r} is not a valid regex ({e}).") from None
    try:
        return compile_any(patterns)
    except regex.error as e:  # valid alone, not together: numbered backreferences shift in an alternation
        raise FieldValueError(
            field_name, f"{owner}: patterns cannot be combined ({e}); avoid backreferences."
        ) from None


@dataclass
class Identity:
    summary: str  # one sentence: who the persona is
    aliases: list[str] = field(default_factory=list)  # other spellings of the persona's name


@dataclass
class Fact:
    id: str  # snake_case, unique; the suite's must_mention refers to it
    text: str  # the fact, stated positively
    shows: list[str]  # regexes (accent-free, case-insensitive); the fact is shown when any matches
    # Optional, for `molt augment`: other positive wordings of the fact, in the persona's voice and in both
    # directions ("O João é o dev com quem eu trabalho" / "Trabalho com o João, que é dev full-stack"). Each
    # must match `shows`. Never a negation: "não é meu filho" teaches "meu filho" (see README, molt augment).
    restatements: list[str] = field(default_factory=list)
    # Optional, for `molt augment`: questions the fact answers ("Quem é o João?"). Without them augment
    # asks a generic question of the card's language.
    questions: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.shows:
            raise FieldValueError("shows", f"fact {self.id!r} needs at least one pattern in `shows`.")
        self.compiled = _compile_all(f"fact {self.id!r}", self.shows, "shows")
        for i, sentence in enumerate(self.restatements):
            if not find_first(self.compiled, sentence):
                raise FieldValueError(
                    "restatements",
                    f"fact {self.id!r}: restatements[{i}] {sentence!r} does not match any of its `shows` patterns, "
                    "so a scorer would not count it as stating the fact. Reword it or widen `shows`.",
                )


@dataclass
class Relationship:
    name: str  # full name of a person the persona works with
    relation: str  # what they are to the persona, in one phrase
    aliases: list[str] = field(default_factory=list)  # short forms of the name ("João")


@dataclass
class Trait:
    id: str
    text: str  # the trait in a word or two ("curioso")
    shows: list[str]  # regexes of words an answer showing the trait contains

    def __post_init__(self):
        self.compiled = _compile_all(f"trait {self.id!r}", self.shows, "shows")


@dataclass
class Knowledge:
    stack: list[str] = field(default_factory=list)  # technologies the persona knows; others count as invented


@dataclass
class LogprobProbe:
    """One teacher-forced check of a forbidden claim (`molt probe`): after the inference system prompt and
    `question`, the assistant's answer starts with `prefix`; the model should find `right` more likely
    than `wrong` as the continuation. Example: question "Quem é o João?", prefix "O João é", right
    " o dev com quem eu trabalho", wrong " meu filho". Start both continuations with the space that
    separates them from the prefix."""

    question: str  # the user turn
    prefix: str  # the start of the assistant's answer, shared by both continuations ("" is allowed)
    right: str  # a continuation that answers rightly
    wrong: str  # a continuation that makes the forbidden claim
    # Held-out probes are never turned into training data by `molt augment`, so they measure whether a
    # correction generalises (bench/corrective.py reports on them alone).
    held_out: bool = False

    def __post_init__(self):
        for name in ("question", "right", "wrong"):
            if not getattr(self, name).strip():
                raise FieldValueError(name, f"probe {name} is empty.")
        if fold(self.right.strip()).lower() == fold(self.wrong.strip()).lower():
            raise FieldValueError("wrong", "probe right and wrong continuations are the same text.")


@dataclass
class ForbiddenClaim:
    id: str
    category: ClaimCategory
    text: str  # the wrong claim in words
    patterns: list[str] = field(default_factory=list)  # regexes matching an answer that makes the claim
    # Log-probability probes of this claim (see LogprobProbe). Their `wrong` continuations are also the
    # claim's key phrases: `molt check` warns about training answers that carry one after a negation.
    probes: list[LogprobProbe] = field(default_factory=list)

    def __post_init__(self):
        if not self.patterns and self.category not in DETECTOR_CATEGORIES:
            raise FieldValueError(
                "patterns", f"forbidden claim {self.id!r} ({self.category}) needs at least one pattern."
            )
        self.compiled = _compile_all(f"forbidden claim {self.id!r}", self.patterns, "patterns")
        self.dimension = CATEGORY_DIMENSION[self.category]
        for n, probe in enumerate(self.probes, start=1):
            probe.id = f"{self.id}.p{n}"  # stable as long as the card's order is


@dataclass
class SystemPrompts:
    train: str  # short prompt added to every training conversation (~100 tokens)
    inference: str  # full prompt used when the model answers (~300 tokens)

    def __post_init__(self):
        for name in ("train", "inference"):
            if not getattr(self, name).strip():
                raise FieldValueError(name, f"system_prompts.{name} is empty; write the prompt.")


@dataclass
class Persona:
    name: str
    language: Literal["pt", "en"]  # the language answers must be in
    identity: Identity
    system_prompts: SystemPrompts
    facts: list[Fact] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)
    traits: list[Trait] = field(default_factory=list)
    knowledge: Knowledge = field(default_factory=Knowledge)
    forbidden_claims: list[ForbiddenClaim] = field(default_factory=list)

    def __post_init__(self):
        for kind in ("facts", "traits", "forbidden_claims"):
            seen = set()
            for item in getattr(self, kind):
                if item.id in seen:
                    raise FieldValueError(kind, f"id {item.id!r} appears twice in {kind}; ids must be unique.")
                seen.add(item.id)
        self.fact_by_id = {f.id: f for f in self.facts}
        self.claim_by_id = {c.id: c for c in self.forbidden_claims}
        self.names = [self.name, *self.identity.aliases]


def load_persona(path: str | Path) -> Persona:
    doc = load_yaml(path)
    problems = placeholder_problems(doc)
    if problems:
        raise UserError(problems)
    persona = build(Persona, doc)
    # Where each pattern is written, for the message of a search that runs out of time (BoundedPattern).
    for kind, field_name in (("facts", "shows"), ("traits", "shows"), ("forbidden_claims", "patterns")):
        for i, item in enumerate(getattr(persona, kind)):
            for bounded in item.compiled:
                at = [(kind, i, field_name, j) for j in range(len(bounded.patterns))]
                bounded.where = [f"{doc.where(path)}: {dotted(path)}" for path in at]
    return persona
