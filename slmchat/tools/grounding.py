"""Whether a call's argument values come from the user's words.

A small model offered a tool tends to call it whatever was asked, filling the arguments with
values it made up ("Who wrote Hamlet?" -> ``area(base=10, height=5)``). A value that appears in
the user's message (or in a tool's result) is evidence that the call was asked for; a call
whose values appear nowhere is evidence that it was not. Only the user's messages and tool
results count as sources: the text of a recovery message ("e.g. '2 * (3 + 4)'") never does.

The check is lenient on form: case, punctuation and word order do not matter, numbers may be
written as words ("two"), and a word matches another with the same first letters ("Paris"
in "Parisian"), because the gate must not turn a right call into no call.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from slmchat.tools.base import ToolSpec

#: share of a value's words that must appear in the sources for it to count as grounded
WORD_SHARE = 0.5
#: a word matches a source word sharing this many first characters (or the whole shorter word)
PREFIX = 4

_SCALES = (1e-9, 1e-6, 1e-3, 1e-2, 1e2, 1e3, 1e6, 1e9)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12, "half": 0.5, "quarter": 0.25, "once": 1,
    "twice": 2, "double": 2, "triple": 3, "first": 1, "second": 2, "third": 3, "single": 1, "pair": 2,
}  # fmt: skip


class Sources:
    """The words and numbers of the texts a call may take its values from."""

    def __init__(self, texts: Iterable[str]) -> None:
        text = " ".join(texts)
        self.text = fold(text)
        self.words = set(_WORD.findall(self.text))
        self.prefixes = {word[:PREFIX] for word in self.words if len(word) >= PREFIX}
        self.numbers = {value for match in _NUMBER.findall(text) for value in _number_values(match)}
        self.numbers |= {float(v) for word, v in _NUMBER_WORDS.items() if word in self.words}

    def has_word(self, word: str) -> bool:
        if word in self.words:
            return True
        if word.isdigit():
            return float(word) in self.numbers
        if len(word) >= PREFIX:
            return word[:PREFIX] in self.prefixes
        return False

    def has_number(self, value: float) -> bool:
        """``value`` is a number of the sources, or one scaled by a power of ten (15% -> 0.15,
        50 mH -> 0.05, 100 million -> 100000000)."""
        if float(value) in self.numbers:
            return True
        return value != 0 and any(
            n != 0 and abs(value / (n * scale) - 1) < 1e-9 for n in self.numbers for scale in _SCALES
        )


def value_grounded(value: Any, sources: Sources) -> bool | None:
    """True when ``value`` comes from the sources, False when not (an empty string is never the user's),
    None when it cannot tell (booleans, punctuation, empty lists: the schema or the model's judgement)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return sources.has_number(value)
    if isinstance(value, str):
        if not value.strip():
            return False  # nothing of the user's: SmolLM2 answered "What is 37 * 91?" with calculate("") thrice
        folded = fold(value)
        words = _WORD.findall(folded)
        if not words:
            return None
        if len(folded) >= 3 and folded in sources.text:
            return True
        return sum(sources.has_word(word) for word in words) >= WORD_SHARE * len(words)
    if isinstance(value, list | tuple | dict):
        items = list(value.values()) if isinstance(value, dict) else list(value)
        verdicts = [v for v in (value_grounded(item, sources) for item in items) if v is not None]
        return None if not verdicts else sum(verdicts) >= WORD_SHARE * len(verdicts)
    return None


def ungrounded(spec: ToolSpec, arguments: dict[str, Any], sources: Sources) -> tuple[list[str], int]:
    """The required arguments whose values are not in the sources, and how many could be checked.

    Values the schema fixes (an enum, a const) are not checked: the model only picked one.
    """
    missing, checked = [], 0
    for name in spec.required:
        if name not in arguments:
            continue
        schema = spec.properties.get(name, {})
        if "enum" in schema or "const" in schema:
            continue
        value = arguments[name]
        # a tool's own name as its value (search_files(query="search_files")) is the model's confusion,
        # not the user's words, even when half of it is in the question (issue 16)
        own_name = isinstance(value, str) and words(fold(value)) == words(fold(spec.name))
        verdict = False if own_name else value_grounded(value, sources)
        if verdict is None:
            continue
        checked += 1
        if not verdict:
            missing.append(name)
    return missing, checked


def is_grounded(spec: ToolSpec, arguments: dict[str, Any], sources: Sources) -> bool:
    """Whether a call may stand: at least one checkable required value comes from the sources
    (a call with nothing checkable stands too: there is no evidence against it)."""
    missing, checked = ungrounded(spec, arguments, sources)
    return checked == 0 or len(missing) < checked


def fold(text: str) -> str:
    """Lower case without accents, so "Zürich" matches "zurich"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def words(text: str) -> list[str]:
    """The words of an already folded text (letters and digits)."""
    return _WORD.findall(text)


def _number_values(text: str) -> list[float]:
    """``1,000`` -> 1000; ``3,5`` -> 3.5 and 3, 5 (the comma is ambiguous); ``2.5`` -> 2.5."""
    out = []
    plain = text.replace(",", "")
    for candidate in {plain, text.replace(",", "."), *text.split(",")}:
        try:
            out.append(float(candidate))
        except ValueError:
            continue
    return out


#: the longest span of the user's words a string argument may be (``value_spans``)
SPAN_WORDS = 6
_EDGES = " \t\n.,;:!?'\"`()[]{}<>"


def value_spans(text: str, max_words: int = SPAN_WORDS) -> list[str]:
    """Every run of up to ``max_words`` words of ``text``, without the punctuation at its ends:
    the values a string argument may take when it must be copied from the user's words."""
    tokens = text.split()
    spans: dict[str, None] = {}
    for start in range(len(tokens)):
        for end in range(start + 1, min(len(tokens), start + max_words) + 1):
            if span := " ".join(tokens[start:end]).strip(_EDGES):
                spans[span] = None
    return list(spans)
