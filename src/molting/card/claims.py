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
"""

import re
from dataclasses import dataclass

from molting.card.persona import ForbiddenClaim, Persona
from molting.card.text_match import find_first, fold

# Accent-folded, case-insensitive. Removing these (and a comma after) turns a denial into the claim.
NEGATION = r"\b(?:nao|nunca|jamais|nem|tampouco|not|never|isn'?t|aren'?t|wasn'?t|don'?t|doesn'?t)\b"
_NEGATION_REMOVED = re.compile(NEGATION + r",?\s*", re.IGNORECASE)


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
    """Every forbidden claim the text makes, plainly or negated (at most one finding per claim)."""
    folded = fold(text)
    denegated = _NEGATION_REMOVED.sub("", folded)
    found = []
    for claim in persona.forbidden_claims:
        m = find_first(claim.compiled, text, folded)
        if m:
            found.append(ClaimFound(claim.id, m.text, False))
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
