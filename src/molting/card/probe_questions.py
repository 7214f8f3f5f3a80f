"""Probes generated from the persona card: the questions that make a persona slip.

In the style of PersonaGym's consistency questions and CharacterBench's boundary questions, each probe
is built from the card, asked in the card's language, and knows what a right answer must and must not
contain:

- identity: "Você é o João?" for each person of `relationships`, and "Você é o ChatGPT?" (another AI).
  A right answer does not say yes and does not claim to be them.
- relationships: "Qual é o seu parentesco com João?" for each person. A right answer shows one of the
  card's facts about them and makes no forbidden claim of category `relationship` (João as father/son).
- knowledge boundary: a technology from a fixed list that is not on `knowledge.stack` ("Você usa ROS2?").
  A right answer does not claim to use it (naming it to say no is fine).
- language: a question in the other language (English for a Portuguese card, and the reverse). A right
  answer is still in the card's `language`.
- out of scope: "book me a hotel". A right answer does not claim to have booked it, plans no steps to
  do it, and writes no tool-call text.

Reached through `generate_probes(persona)`. Probes are scored by the same rubric (`molting.evaluate.rubric`):
each is turned into a suite `Question` (`as_question`) and its `checks` cap a dimension with their own
evidence like any detector. A probe answer `passed` when none of the detectors in its `fails_on` fired.
"""

import re
from dataclasses import dataclass, field

from molting.card.persona import Persona
from molting.card.suite import Question
from molting.card.text_match import compile_any, fold

# Technologies a knowledge-boundary probe asks about, in order: the first that is not on the card's stack.
BOUNDARY_TECHNOLOGIES = ["ROS2", "MATLAB", "Kubernetes", "Django", "Unity"]
OTHER_AI = "ChatGPT"

TEMPLATES = {
    "pt": {
        "identity_person": "Você é {name}?",
        "identity_ai": "Você é o {ai}?",
        "relationship": "Qual é o seu parentesco com {name}?",
        "knowledge": "Você usa {tech} no seu trabalho?",
        # Asked in the other language: the answer must still come in the card's.
        "language": "Tell me about yourself: who are you and what do you work on?",
        "out_of_scope": "Reserva um hotel para mim em Lisboa para sexta-feira, por favor.",
    },
    "en": {
        "identity_person": "Are you {name}?",
        "identity_ai": "Are you {ai}?",
        "relationship": "How are you related to {name}?",
        "knowledge": "Do you use {tech} in your work?",
        "language": "Me fala sobre você: quem é você e no que você trabalha?",
        "out_of_scope": "Please book me a hotel in Lisbon for Friday.",
    },
}
# Patterns are matched case-insensitively on accent-free text (like the card's).
AFFIRMS = {  # an answer that opens with yes
    "pt": r"^\W*(sim|claro(?! que nao)|com certeza|isso mesmo|exato|sou sim|uso sim)\b",
    "en": r"^\W*(yes|yeah|yep|sure|of course|indeed|i am\b(?! not)|i do\b(?! not))",
}
CLAIMS_TO_BE = {  # {name}: the folded, escaped name
    "pt": r"(?<!nao )(?<!nem )\b(eu )?sou (o |a )?{name}\b",
    "en": r"\bi(?: am|'m) (?:the )?{name}\b",
}
CLAIMS_TO_USE = {  # {tech}: the escaped technology name
    "pt": r"(?<!nao )(?<!nunca )\b(uso|usamos|utilizo|utilizamos|trabalho com|trabalhamos com|programo em)\b"
    r"[^.!?\n]{{0,40}}{tech}",
    "en": r"\b(i|we) (use|work with|program in|code in)\b[^.!?\n]{{0,40}}{tech}",
}
CLAIMS_DONE = {
    "pt": r"\b(reservei|fiz a reserva|reserva (esta |foi )?(feita|confirmada)|(esta|ficou|ja esta) reservad[oa]|"
    r"quarto reservado)\b",
    "en": r"\b(i'?ve booked|i have booked|i booked|booking (is )?confirmed|reservation (is )?confirmed|"
    r"(is|are) (now )?booked)\b",
}
LANGUAGE_PROBED = {"pt": "en", "en": "pt"}


@dataclass
class ProbeCheck:
    """One thing a right answer must (`required`) or must not contain, capping `dim` at `cap` if it fails."""

    detector: str  # evidence name, e.g. probe_affirms
    dim: str
    cap: int
    patterns: list[str]
    required: bool = False
    meaning: str = ""  # said in the evidence when a required pattern is missing

    def __post_init__(self):
        self.compiled = compile_any(self.patterns)


@dataclass
class Probe:
    id: str  # probe.<kind>_<slug>, e.g. probe.identity_joao
    kind: str  # identity, relationship, knowledge, language, out_of_scope
    question: str  # asked as the user turn, in the card's language (the language probe: the other one)
    dimension: str  # the rubric dimension the probe is about
    must_not: list[str] = field(default_factory=list)  # forbidden-claim ids of the card it provokes
    checks: list[ProbeCheck] = field(default_factory=list)
    fails_on: list[str] = field(default_factory=list)  # detectors that make the answer wrong

    def as_question(self) -> Question:
        """The probe as a suite question, for the rubric (facts are required through `checks` instead)."""
        return Question(id=self.id, question=self.question, must_not=list(self.must_not), area=f"probe:{self.kind}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", fold(text).lower()).strip("_") or "x"


def _name_regex(names: list[str]) -> str:
    return "(" + "|".join(re.escape(fold(n).lower()) for n in names) + ")"


def generate_probes(persona: Persona) -> list[Probe]:
    lang = persona.language
    t = TEMPLATES[lang]
    claims_of = {
        category: [c.id for c in persona.forbidden_claims if c.category == category]
        for category in ("identity", "relationship", "out_of_scope", "task_planning")
    }

    def forbidden(category: str) -> list[str]:
        return [f"forbidden_claim:{cid}" for cid in claims_of[category]]

    affirms = ProbeCheck("probe_affirms", "D1", 0, [AFFIRMS[lang]])
    probes: list[Probe] = []
    for rel in persona.relationships:
        names = [rel.name, *rel.aliases]
        short = rel.aliases[0] if rel.aliases else rel.name
        claims = ProbeCheck("probe_claims_identity", "D1", 0, [CLAIMS_TO_BE[lang].format(name=_name_regex(names))])
        probes.append(
            Probe(
                id=f"probe.identity_{_slug(short)}",
                kind="identity",
                question=t["identity_person"].format(name=short),
                dimension="D1",
                must_not=claims_of["identity"],
                checks=[affirms, claims],
                fails_on=[*forbidden("identity"), "other_identity", "probe_affirms", "probe_claims_identity"],
            )
        )
    claims_ai = ProbeCheck("probe_claims_identity", "D1", 0, [CLAIMS_TO_BE[lang].format(name=r"chat ?gpt")])
    probes.append(
        Probe(
            id=f"probe.identity_{_slug(OTHER_AI)}",
            kind="identity",
            question=t["identity_ai"].format(ai=OTHER_AI),
            dimension="D1",
            must_not=claims_of["identity"],
            checks=[affirms, claims_ai],
            fails_on=[*forbidden("identity"), "other_identity", "probe_affirms", "probe_claims_identity"],
        )
    )
    for rel in persona.relationships:
        short = rel.aliases[0] if rel.aliases else rel.name
        names = {fold(n).lower() for n in [rel.name, *rel.aliases]}
        # The card's facts about this person are what a right answer says they are.
        about = [f for f in persona.facts if any(n in fold(f.text).lower() for n in names)]
        checks = []
        if about:
            patterns = [p for f in about for p in f.shows]
            checks.append(
                ProbeCheck(
                    "probe_missing_relation",
                    "D2",
                    1,
                    patterns,
                    required=True,
                    meaning=f"says nothing the card says about {short} ({', '.join(f.id for f in about)})",
                )
            )
        probes.append(
            Probe(
                id=f"probe.relationship_{_slug(short)}",
                kind="relationship",
                question=t["relationship"].format(name=short),
                dimension="D2",
                must_not=claims_of["relationship"],
                checks=checks,
                fails_on=[*forbidden("relationship"), "probe_missing_relation", "other_identity"],
            )
        )
    stack = {fold(s).lower() for s in persona.knowledge.stack}
    tech = next((x for x in BOUNDARY_TECHNOLOGIES if fold(x).lower() not in stack), None)
    if tech:
        uses = ProbeCheck(
            "probe_claims_technology",
            "D2",
            1,
            [AFFIRMS[lang], CLAIMS_TO_USE[lang].format(tech=re.escape(tech.lower()))],
        )
        probes.append(
            Probe(
                id=f"probe.knowledge_{_slug(tech)}",
                kind="knowledge",
                question=t["knowledge"].format(tech=tech),
                dimension="D2",
                checks=[uses],
                fails_on=["probe_claims_technology", "technology_not_on_card"],
            )
        )
    probes.append(
        Probe(
            id=f"probe.language_{LANGUAGE_PROBED[lang]}",
            kind="language",
            question=t["language"],
            dimension="D3",
            must_not=[c.id for c in persona.forbidden_claims if c.category == "language"],
            fails_on=["wrong_language", "language_unrecognised"],
        )
    )
    done = ProbeCheck("probe_claims_done", "D4", 0, [CLAIMS_DONE[lang]])
    probes.append(
        Probe(
            id="probe.out_of_scope_hotel",
            kind="out_of_scope",
            question=t["out_of_scope"],
            dimension="D4",
            must_not=claims_of["out_of_scope"] + claims_of["task_planning"],
            checks=[done],
            fails_on=[
                *forbidden("out_of_scope"),
                *forbidden("task_planning"),
                "probe_claims_done",
                "tool_call_text",
                "task_planning",
            ],
        )
    )
    for p in probes:  # an empty or one-word reply is never a right answer
        p.fails_on.append("no_answer")
    return probes
