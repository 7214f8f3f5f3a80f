"""Accent- and case-insensitive pattern matching over answers, with spans that point into the original text.

The persona card's patterns are written without accents ("joao", "portabilidade"); answers come with
them ("João"). `fold` maps every character to exactly one character, so a match found in the folded text
has the same span in the original, and evidence can quote the user's own words. Every search of a card
pattern is bounded in time (`BoundedPattern`): a pattern can never hold a command for minutes on one answer.
"""

import unicodedata
from dataclasses import dataclass

import regex

from molting.errors import UserError


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


# The longest one search of the card's patterns may take. A legitimate pattern scans an answer in
# microseconds; one that backtracks catastrophically ((a|aa)+$ on "aaaa…a!") takes time exponential in the
# answer's length, and held `molt score` for minutes on one answer before this bound.
SEARCH_TIMEOUT_S = 2.0


def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a card pattern: accents folded, case-insensitive. Raises regex.error for a bad regex.
    `regex` rather than `re`: its searches take a timeout, and it does not backtrack exponentially on a
    repeat inside a repeat such as (a+)+$, which `re` does."""
    return regex.compile(fold(pattern), regex.IGNORECASE)


class BoundedPattern:
    """Several card patterns searched as one alternation (one search instead of many), each search stopped
    after SEARCH_TIMEOUT_S. A search that runs out raises UserError naming the pattern that took the time,
    at `where[i]` ("persona.yaml:14: facts[0].shows[1]", set by `load_persona`) when known."""

    def __init__(self, patterns: list[str]):
        for p in patterns:  # each alone first, so a bad one raises regex.error naming itself
            compile_pattern(p)
        self.patterns = patterns
        self.where = [""] * len(patterns)
        self.compiled = compile_pattern("|".join(f"(?:{p})" for p in patterns))
        self.pattern = self.compiled.pattern

    def search(self, text: str, pos: int = 0) -> regex.Match | None:
        try:
            return self.compiled.search(text, pos, timeout=SEARCH_TIMEOUT_S)
        except TimeoutError:
            raise UserError(self._too_slow(text)) from None

    def _too_slow(self, text: str) -> str:
        i = next((i for i, p in enumerate(self.patterns) if self._times_out(p, text)), 0)
        where = f"{self.where[i]}: " if self.where[i] else ""
        return (
            f"{where}pattern {self.patterns[i]!r} took over {SEARCH_TIMEOUT_S:g} s on one text "
            f"({len(text)} characters, {text[:40]!r}…) and was stopped: it backtracks catastrophically, its "
            "alternatives or repeats splitting the same letters in many ways, as (a|aa)+ does. Rewrite it so "
            "that each part of a text matches one way only (a+ for (a|aa)+)."
        )

    @staticmethod
    def _times_out(pattern: str, text: str) -> bool:
        try:
            compile_pattern(pattern).search(text, timeout=SEARCH_TIMEOUT_S)
        except TimeoutError:
            return True
        return False


def compile_any(patterns: list[str]) -> list[BoundedPattern]:
    """Several patterns as one BoundedPattern, in a list for `find_first` ([] for none)."""
    return [BoundedPattern(patterns)] if patterns else []


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    text: str


def find_first(patterns: list[BoundedPattern], text: str, folded: str | None = None) -> Match | None:
    folded = fold(text) if folded is None else folded
    for pattern in patterns:
        m = pattern.search(folded)
        if m:
            return Match(m.start(), m.end(), text[m.start() : m.end()])
    return None
