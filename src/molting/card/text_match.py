"""Accent- and case-insensitive pattern matching over answers, with spans that point into the original text.

The persona card's patterns are written without accents ("joao", "portabilidade"); answers come with
them ("João"). `fold` maps every character to exactly one character, so a match found in the folded text
has the same span in the original, and evidence can quote the user's own words.
"""

import re
import unicodedata
from dataclasses import dataclass


class _FoldTable(dict):
    """str.translate table built on demand: each character maps to its accent-free base character."""

    def __missing__(self, code: int) -> str:
        decomposed = unicodedata.normalize("NFD", chr(code))
        self[code] = decomposed[0] if not unicodedata.combining(decomposed[0]) else chr(code)
        return self[code]


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """Strip accents one character at a time, keeping the length (and so every span) unchanged."""
    return text if text.isascii() else text.translate(_FOLD)


def compile_pattern(pattern: str) -> re.Pattern:
    """Compile a card pattern: accents folded, case-insensitive. Raises re.error for a bad regex."""
    return re.compile(fold(pattern), re.IGNORECASE)


def compile_any(patterns: list[str]) -> list[re.Pattern]:
    """Several patterns as one alternation (one search instead of many), in a list for `find_first`.
    Each pattern is compiled alone first, so a bad one raises re.error naming itself."""
    for p in patterns:
        compile_pattern(p)
    return [compile_pattern("|".join(f"(?:{p})" for p in patterns))] if patterns else []


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
