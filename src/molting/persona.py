"""The persona card (persona.yaml): the single source the preflight, the trainer and the scorer read.

Reached through `load_persona(path)`. The schema is the dataclasses below; each field's comment is the
documentation a user sees in `molt init`'s template.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from molting.errors import UserError
from molting.text_match import compile_any, compile_pattern
from molting.yaml_source import FieldValueError, build, load_yaml, placeholder_problems

# The eight kinds of wrong answer of the phase 8 log, each scored in one rubric dimension.
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


def _compile_all(owner: str, patterns: list[str], field_name: str) -> list[re.Pattern]:
    for p in patterns:
        try:
            compile_pattern(p)
        except re.error as e:
            raise FieldValueError(field_name, f"{owner}: pattern {p!r} is not a valid regex ({e}).") from None
    try:
        return compile_any(patterns)
    except re.error as e:  # valid alone, not together: numbered backreferences shift in an alternation
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

    def __post_init__(self):
        if not self.shows:
            raise FieldValueError("shows", f"fact {self.id!r} needs at least one pattern in `shows`.")
        self.compiled = _compile_all(f"fact {self.id!r}", self.shows, "shows")


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
class ForbiddenClaim:
    id: str
    category: ClaimCategory
    text: str  # the wrong claim in words
    patterns: list[str] = field(default_factory=list)  # regexes matching an answer that makes the claim

    def __post_init__(self):
        if not self.patterns and self.category not in DETECTOR_CATEGORIES:
            raise FieldValueError(
                "patterns", f"forbidden claim {self.id!r} ({self.category}) needs at least one pattern."
            )
        self.compiled = _compile_all(f"forbidden claim {self.id!r}", self.patterns, "patterns")
        self.dimension = CATEGORY_DIMENSION[self.category]


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
    return build(Persona, doc)
