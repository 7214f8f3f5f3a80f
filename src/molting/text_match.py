"""Accent- and case-insensitive pattern matching over answers, with spans that point into the original text.

The persona card's patterns are written without accents ("joao", "portabilidade"); answers come with
them ("João"). `fold` maps every character to exactly one character, so a match found in the folded text
has the same span in the original, and evidence can quote the user's own words.
"""

import re
import unicodedata
from dataclasses import dataclass


def fold(text: str) -> str:
    """Strip accents one character at a time, keeping the length (and so every span) unchanged."""
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        decomposed = unicodedata.normalize("NFD", ch)
        out.append(decomposed[0] if not unicodedata.combining(decomposed[0]) else ch)
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern:
    """Compile a card pattern: accents folded, case-insensitive. Raises re.error for a bad regex."""
    return re.compile(fold(pattern), re.IGNORECASE)


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    text: str


def find_first(patterns: list[re.Pattern], text: str, folded: str | None = None) -> Match | None:
    folded = fold(text) if folded is None else folded
    for pattern in patterns:
        m = pattern.search(folded)
        if m:
            return Match(m.start(), m.end(), text[m.start() : m.end()])
    return None
