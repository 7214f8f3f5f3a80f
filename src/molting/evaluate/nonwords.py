"""Words no dictionary of the card's language knows: the word-salad signal that needs no model.

A small model trained on a few thousand conversations invents words by gluing pieces of real ones together
("refinita", "coisase", "possamcrito"). Those are absent from any dictionary. `nonwords` lists the words of
an answer that are in neither the card's language nor English (technology talk is English in every
language), after leaving out what a dictionary cannot be asked about: capitalised words (names are D1's
business), words of the persona card and of the question, code (`…`, camelCase, digits) and short words.
The word lists are wordfreq's "large" lists (offline; every word seen in its sources, Wikipedia, subtitles,
news, books and the web, at least once in 100 million words), compared without accents. pyspellchecker's
Portuguese list was tried first and is European Portuguese: it lacks "desenvolvedor", "contato", "bilhão",
"registrada", so a Brazilian answer would be full of "non-words". A supplement of the developer words
wordfreq lacks ships beside this file (wordlists/pt-extra.txt).

Reached through `NonWordChecker(language, known).nonwords(text)`, which rubric.Scorer calls for every
answer; `NONWORD_DRIFT` and `NONWORD_SALAD` are the thresholds it caps D5 (and D3, D2) at.
"""

import re
from functools import lru_cache
from pathlib import Path

from molting.card.text_match import fold

# Two invented words (and at least one word in 20) mark an answer that drifts into nonsense; four (and one
# in 8) mark word salad throughout. One unknown word alone is never enough: slang and jargon the lists lack.
NONWORD_DRIFT = (2, 0.05)
NONWORD_SALAD = (4, 0.125)
MIN_LENGTH = 4  # shorter words are mostly function words, abbreviations and typos

# Letters with an optional hyphen or apostrophe inside ("full-stack", "construí-lo", "don't").
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_CODE = re.compile(r"`[^`]*`|https?://\S+|\S+@\S+|\S*[/\\]\S*")
_INNER_CAPITAL = re.compile(r"[a-z][A-Z]")
_JOINERS = re.compile(r"[-'’]")
_SUPPLEMENTS = Path(__file__).parent / "wordlists"


@lru_cache(maxsize=8)
def dictionary(language: str) -> frozenset[str]:
    """Accent-folded, lower-case words of a language: wordfreq's large list plus molting's supplement."""
    import wordfreq

    try:
        words = list(wordfreq.iter_wordlist(language, "large"))
    except LookupError:  # a language wordfreq has no large list for
        words = []
    extra = _SUPPLEMENTS / f"{language}-extra.txt"
    if extra.is_file():
        lines = extra.read_text(encoding="utf-8").splitlines()
        words = [*words, *(w.strip() for w in lines if w.strip() and not w.startswith("#"))]
    return frozenset(fold(w).lower() for w in words)


@lru_cache(maxsize=8)
def _with_english(language: str) -> frozenset[str]:
    """The language's words and English's (technology talk is English in every language)."""
    return dictionary(language) | dictionary("en")


def has_dictionary(language: str) -> bool:
    return bool(dictionary(language))


class NonWordChecker:
    """Words of an answer that no dictionary of `language` (or English) holds and the card does not use."""

    def __init__(self, language: str, known: set[str] | frozenset[str] = frozenset()):
        self.language = language
        self.dictionary = _with_english(language)  # shared, not copied: each scorer built its own 0.5 s union
        self.known = frozenset(fold(w).lower() for w in known)

    def words(self, text: str) -> list[str]:
        """The words a dictionary can be asked about, in order."""
        if any(c in text for c in "`@/\\"):  # what every _CODE alternative needs (scoring speed: bench/score.py)
            text = _CODE.sub(" ", text)
        out = []
        for word in _WORD.findall(text):
            if word[0].isupper() or (not word.islower() and _INNER_CAPITAL.search(word)):
                continue  # a name, an acronym or code (findUnique)
            parts = _JOINERS.split(word) if ("-" in word or "'" in word or "’" in word) else (word,)
            out.extend(part for part in parts if len(part) >= MIN_LENGTH)
        return out

    def nonwords(self, text: str, also_known: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], int]:
        """(the unknown words, the number of words checked). `also_known`: folded words of the question."""
        words = self.words(text)
        unknown = [
            w
            for w in words
            if (f := fold(w).lower()) not in self.dictionary and f not in self.known and f not in also_known
        ]
        return unknown, len(words)


def nonword_level(unknown: int, checked: int) -> str | None:
    """ "salad", "drift" or None, from the count of unknown words and the words checked."""
    share = unknown / checked if checked else 0.0
    if unknown >= NONWORD_SALAD[0] and share >= NONWORD_SALAD[1]:
        return "salad"
    if unknown >= NONWORD_DRIFT[0] and share >= NONWORD_DRIFT[1]:
        return "drift"
    return None
