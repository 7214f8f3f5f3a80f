"""Find forbidden claims in a text, including negated ones ("o João não é meu filho").

Supervised training on a negated statement teaches the statement: a small model learns the tokens
"meu filho" after "João", not the "não" (Kassner & Schütze 2020, "Negated and Misprimed Probes"); 15
training examples denying "João é meu filho" make a small model say it more. So for training data a
negated claim is as bad as a plain one.
Reached through `claims_in_text`, used by `molt check` (a warning per training answer) and `molt augment`
(never writes such an answer into SFT data). Two ways a negated claim is found:
- the text with its negations removed matches one of the claim's patterns ("não é meu filho" → "é meu
  filho"), which catches every pattern-backed claim the rubric knows;
- a negation followed, within the clause, by one of the claim's key phrases: the `wrong` continuations of
  its log-prob probes that have at least two words (" meu filho", " o ChatGPT").

A claim about a person need not name them where it is made. `resolve_references` rewrites each sentence
so that the person it speaks of is named: a pronoun or a short reference ("ele", "ela", "esse cara") after
a person of the card's relationships is named becomes that person's name ("O João … Ele é meu filho" →
"joao e meu filho"), and a relative clause becomes a plain statement ("o João, que é meu pai" → "o joao e
meu pai"). The card's own patterns are then matched on the rewritten sentences (`claim_through_reference`,
which rubric.Scorer calls after a plain match fails). A pronoun goes to the person named last: when
someone else was named in between ("O João trabalha com o Pedro. Ele é meu filho"), it is not João.
"""

import re
from dataclasses import dataclass

from molting.card.persona import ForbiddenClaim, Persona
from molting.card.text_match import find_first, fold

# Accent-folded, case-insensitive. Removing these (and a comma after) turns a denial into the claim.
NEGATION = r"\b(?:nao|nunca|jamais|nem|tampouco|not|never|isn'?t|aren'?t|wasn'?t|don'?t|doesn'?t)\b"
_NEGATION_REMOVED = re.compile(NEGATION + r",?\s*", re.IGNORECASE)


# Words that refer back to the person last named: pronouns and a few short references, accent-folded.
_REFERENCE = re.compile(r"\b(?:ele|ela|he|she|(?:esse|este|aquele) (?:cara|rapaz|moco|sujeito))\b", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")
# A capitalised word after a lower-case word or a comma: a name (the same rule as rubric's invented names).
_NAME = re.compile(r"(?<=[a-z0-9,;] )([A-Z][a-z]{2,})\b")


class References:
    """The people of a card's relationships, by every name they go by, for `resolve_references`."""

    def __init__(self, persona: Persona):
        self.people: dict[str, str] = {}  # folded lower-case name or alias -> the name to write (its first word)
        for r in persona.relationships:
            canonical = fold(r.name).split()[0].lower()
            for name in (r.name, *r.aliases):
                self.people[fold(name).lower()] = canonical
        names = sorted(self.people, key=len, reverse=True)
        self.person = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE) if names else None
        # A relative clause on a person: "joao, que e" -> "joao e"
        self.relative = (
            re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*,?\s+(?:que|quem|who)\s+", re.IGNORECASE)
            if names
            else None
        )
        own = {fold(n).lower() for n in persona.names}
        own |= {word for name in self.people for word in name.split()}  # "Figueiredo" alone is João too
        card = " ".join([*persona.knowledge.stack, persona.identity.summary, *(f.text for f in persona.facts)])
        # capitalised words of the card that are not people (Softtor, Molting, TypeScript): never antecedents
        self.not_people = own | {w.lower() for w in re.findall(r"[A-Z][\w.]+", fold(card))}


def resolve_references(text: str, references: References) -> list[tuple[str, str]]:
    """Each sentence of `text` that speaks of a card person without naming them, rewritten (folded, lower
    case) to name them: [(original sentence, rewritten)]. Sentences that need no rewriting are left out."""
    if references.person is None:
        return []
    folded = fold(text)
    out, last = [], None  # last: the canonical name of the person named last, or "" for someone else
    for m in _SENTENCE.finditer(folded):
        sentence = m.group(0)
        # names and references in order: each reference takes the person named before it in the answer
        events = sorted(
            [(p.start(), "person", references.people[p.group(1).lower()]) for p in references.person.finditer(sentence)]
            + [
                (n.start(), "other", "")
                for n in _NAME.finditer(sentence)
                if n.group(1).lower() not in references.not_people
            ]
            + [(r.start(), "reference", r.group(0)) for r in _REFERENCE.finditer(sentence)]
        )
        replacements = []  # (start, reference, name), in order
        for start, kind, value in events:
            if kind == "person":
                last = value
            elif kind == "other":
                last = ""
            elif last:
                replacements.append((start, value, last))
        rewritten = sentence
        for start, reference, name in reversed(replacements):
            rewritten = rewritten[:start] + name + rewritten[start + len(reference) :]
        if references.relative:
            rewritten = references.relative.sub(lambda r: r.group(1) + " ", rewritten)
        if rewritten != sentence:
            out.append((text[m.start() : m.end()].strip(), rewritten.lower().strip()))
    return out


def claim_through_reference(claim: ForbiddenClaim, resolved: list[tuple[str, str]]) -> str | None:
    """The original sentence that makes `claim` once its references are resolved, or None."""
    for original, rewritten in resolved:
        if find_first(claim.compiled, rewritten, rewritten):
            return original
    return None


@dataclass(frozen=True)
class ClaimFound:
    claim: str  # forbidden claim id
    text: str  # the matched words, from the original text
    negated: bool  # the claim appears denied ("não é meu filho"), which training still teaches


def key_phrase_patterns(claim: ForbiddenClaim) -> list[re.Pattern]:
    """A negation, then within the same clause one of the claim's key phrases."""
    phrases = sorted({fold(p.wrong.strip()).lower() for p in claim.probes if len(p.wrong.split()) >= 2})
    return [
        re.compile(NEGATION + r"[^.!?;\n]{0,40}?\b" + r"\s+".join(map(re.escape, phrase.split())) + r"\b", re.I)
        for phrase in phrases
    ]


def claims_in_text(persona: Persona, text: str) -> list[ClaimFound]:
    """Every forbidden claim the text makes, plainly, through a pronoun or negated (at most one finding per
    claim)."""
    folded = fold(text)
    denegated = _NEGATION_REMOVED.sub("", folded)
    resolved = resolve_references(text, References(persona))
    found = []
    for claim in persona.forbidden_claims:
        m = find_first(claim.compiled, text, folded)
        if m:
            found.append(ClaimFound(claim.id, m.text, False))
            continue
        sentence = claim_through_reference(claim, resolved)
        if sentence:
            found.append(ClaimFound(claim.id, sentence, False))
            continue
        m = find_first(claim.compiled, denegated, denegated)
        if m:
            found.append(ClaimFound(claim.id, m.text, True))
            continue
        for pattern in key_phrase_patterns(claim):
            k = pattern.search(folded)
            if k:
                found.append(ClaimFound(claim.id, text[k.start() : k.end()], True))
                break
    return found
