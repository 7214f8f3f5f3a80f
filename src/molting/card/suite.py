"""The evaluation suite (suite.yaml): the questions `molt eval` asks and what a right answer shows.

Reached through `load_suite(path, persona)`, which also checks that every fact and forbidden-claim id
the suite names exists in the persona card.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from molting.card.persona import Persona
from molting.errors import UserError
from molting.yaml_source import FieldValueError, build, load_yaml, placeholder_problems


@dataclass
class Question:
    id: str  # Q1, Q2, … (the rubric tables of reports and comparisons use these)
    question: str  # asked as the user turn, with the card's inference system prompt
    must_mention: list[str] = field(default_factory=list)  # fact ids a right answer shows
    # Forbidden-claim ids this question is designed to provoke. Every forbidden claim of the card is
    # checked on every answer; these are the ones the report lists next to the question.
    must_not: list[str] = field(default_factory=list)
    reference: str = ""  # a model answer in the persona's voice
    area: str = ""  # free label: relationships, project, stack, self, …
    # Other wordings of the same question. `molt eval` asks each one too (answer ids Q1.p1#0, Q1.p2#0, …)
    # and scores it with this question's must_mention and must_not; they count towards this question's mean.
    paraphrases: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", self.id):
            raise FieldValueError("id", f"question id {self.id!r} must be a short name like Q1.")
        if not self.question.strip():
            raise FieldValueError("question", f"question {self.id} is empty.")
        if any(not p.strip() for p in self.paraphrases):
            raise FieldValueError("paraphrases", f"question {self.id} has an empty paraphrase; remove it.")


@dataclass
class Suite:
    questions: list[Question]

    def __post_init__(self):
        if not self.questions:
            raise FieldValueError("questions", "the suite has no questions; add at least one.")
        seen = set()
        for q in self.questions:
            if q.id in seen:
                raise FieldValueError("questions", f"question id {q.id!r} appears twice; ids must be unique.")
            seen.add(q.id)
        self.by_id = {q.id: q for q in self.questions}


def load_suite(path: str | Path, persona: Persona) -> Suite:
    doc = load_yaml(path)
    problems = placeholder_problems(doc)
    if problems:
        raise UserError(problems)
    suite = build(Suite, doc)
    for i, q in enumerate(suite.questions):
        for j, fid in enumerate(q.must_mention):
            if fid not in persona.fact_by_id:
                problems.append(
                    f"{doc.where(('questions', i, 'must_mention', j))}: questions[{i}].must_mention: "
                    f"{fid!r} is not a fact id in the persona card (known: {', '.join(persona.fact_by_id)})."
                )
        for j, cid in enumerate(q.must_not):
            if cid not in persona.claim_by_id:
                problems.append(
                    f"{doc.where(('questions', i, 'must_not', j))}: questions[{i}].must_not: {cid!r} is not a "
                    f"forbidden claim id in the persona card (known: {', '.join(persona.claim_by_id)})."
                )
    if problems:
        raise UserError(problems)
    return suite
