"""How a new fact changes memory: add it, ignore a duplicate, replace an old value, or delete what it negates.

Deterministic: given the stored facts nearest to the new one (with their MiniLM cosine similarity),
:func:`decide` applies the thresholds below plus word-level checks (same values, same predicate,
a negation sharing a topic word).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from slmchat.memory.facts import STOPWORDS, WORD, content_stems
from slmchat.memory.types import FactChange, Hit

#: decide() thresholds, on MiniLM (all-MiniLM-L6-v2) cosine similarity between the new fact and a stored one.
#: Chosen on hand pairs (tests/test_memory_facts.py). Restatements of one fact score 0.92-0.99 ("The user's
#: dog is named Biscuit" / "The user has a dog called Biscuit" 0.94), but so can a changed value: "deadline is
#: 12 May" / "deadline is 20 June" 0.94. Hence DUP also requires the same values (numbers, names).
DUP = 0.9
#: A new value of the same attribute often scores low ("dog is named Biscuit" / "... Rex" 0.58, "name is
#: Bob" / "... Tisha" 0.51), while two facts that can both be true score higher ("likes tea" / "likes
#: coffee" 0.71, "has a cat" / "has a dog" 0.70, "speaks French" / "speaks Spanish" 0.72). Similarity alone
#: cannot separate them, so an update needs either SAME (above every both-true pair measured), or the same
#: leading predicate ("dog is named ...", "lives in ...") that is not a many-valued verb, and SAME_PREDICATE.
SAME = 0.78
SAME_PREDICATE = 0.4
#: A negated fact deletes the nearest positive fact at or above this and sharing a topic word with it
#: ("no longer has a dog" / "dog is named Biscuit" 0.62; "does not like tea" / "likes coffee" 0.61 is
#: kept apart by the topic word).
NEGATE = 0.55
#: the differing part of two facts with the same predicate: a value is a few words, and the shared words are
#: at least half of the longer fact ("dog is named Biscuit" / "dog is 3 years old" share only "dog is")
MAX_VALUE_WORDS = 4
MIN_SHARED = 0.5
_NEGATION = re.compile(
    r"\b(no longer|not|never|anymore|any more|stopped|quit|gave up|doesn't|don't|isn't|aren't|didn't|"
    r"hasn't|haven't|won't|no)\b|n't\b",
    re.IGNORECASE,
)
#: predicates that can hold several values at once: "likes tea" does not replace "likes coffee"
_MANY_VALUED = {
    "like", "likes", "love", "loves", "enjoy", "enjoys", "has", "have", "own", "owns", "speak", "speaks", "use",
    "uses", "know", "knows", "play", "plays", "visit", "visited", "read", "reads", "watch", "watches", "eat",
    "eats", "drink", "drinks", "collect", "collects", "a", "an", "the", "is", "are", "also",
}  # fmt: skip
_VALUE_TOKEN = re.compile(r"\b(?:\d[\w:./-]*|[A-Z][\w'-]*)")


def decide(fact: str, nearest: Sequence[Hit]) -> FactChange:
    """Add, update, delete or ignore ``fact`` given the stored facts nearest to it (``Hit.similarity`` is cosine).

    In order: a negated fact ("The user no longer has a dog") deletes the nearest positive fact on the
    same topic; a near-duplicate with the same values is ignored; the same attribute with another value
    ("dog is named Rex" over "dog is named Biscuit") updates; anything else is added. Deterministic: the
    thresholds are the module constants above. Exchanges among ``nearest`` are ignored.
    """
    hits = sorted((h for h in nearest if h.item.kind == "fact"), key=lambda h: h.similarity, reverse=True)
    negated = _is_negated(fact)
    topic = content_stems(_strip_negation(fact))
    for hit in hits:
        if hit.similarity < NEGATE:
            break
        if negated and not _is_negated(hit.item.text) and topic & content_stems(hit.item.text):
            return FactChange(
                "delete", fact, hit.item.id, hit.item.text, f"negates a stored fact ({hit.similarity:.2f})"
            )
    for hit in hits:
        if hit.similarity < DUP:
            break
        old = hit.item.text
        if _is_negated(old) == negated and _values(fact) == _values(old) and not _other_predicate(fact, old):
            return FactChange("none", fact, hit.item.id, reason=f"already known ({hit.similarity:.2f})")
    for hit in hits:
        if hit.similarity < SAME_PREDICATE:
            break
        old = hit.item.text
        if _is_negated(old) and not negated:  # "does not drink coffee" -> "drinks coffee"
            if topic & content_stems(_strip_negation(old)):
                return FactChange("update", fact, hit.item.id, old, f"reverses a negated fact ({hit.similarity:.2f})")
            continue
        if _is_negated(old) != negated:
            continue
        if hit.similarity >= SAME and not _other_predicate(fact, old):
            return FactChange("update", fact, hit.item.id, old, f"same subject ({hit.similarity:.2f})")
        if _same_predicate(fact, old):
            return FactChange("update", fact, hit.item.id, old, f"same attribute, new value ({hit.similarity:.2f})")
    return FactChange("add", fact, reason="new" if not hits else f"nearest {hits[0].similarity:.2f}")


def _is_negated(text: str) -> bool:
    return _NEGATION.search(text.replace("’", "'")) is not None


def _strip_negation(text: str) -> str:
    return _NEGATION.sub(" ", text.replace("’", "'"))


def _values(text: str) -> set[str]:
    """Numbers and capitalised words after the first word: the values a restatement must keep."""
    words = text.split(maxsplit=1)
    rest = words[1] if len(words) > 1 else ""
    return {v.lower().strip(".,;:'") for v in _VALUE_TOKEN.findall(rest)}


def _predicate_words(text: str) -> list[str]:
    words = [w.lower() for w in WORD.findall(re.sub(r"'s\b", "", text.replace("’", "'")))]
    if words[:2] == ["the", "user"]:
        words = words[2:]
    elif words[:1] == ["user"]:
        words = words[1:]
    return words


def _same_predicate(new: str, old: str) -> bool:
    """Same leading predicate ("dog is named", "lives in", "prefers ... units"), a short differing value."""
    a, b = _predicate_words(new), _predicate_words(old)
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(a), len(b)) - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    value_a, value_b = a[prefix : len(a) - suffix], b[prefix : len(b) - suffix]
    if not (value_a or value_b) or max(len(value_a), len(value_b)) > MAX_VALUE_WORDS:
        return False
    return (prefix + suffix) / max(len(a), len(b)) >= MIN_SHARED and _meaningful(a[:prefix])


def _other_predicate(new: str, old: str) -> bool:
    """One verb or noun swapped before anything shared: "works in Paris" / "lives in Paris" are two facts."""
    a, b = _predicate_words(new), _predicate_words(old)
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diff) != 1:
        return False
    swapped = a[diff[0]] + b[diff[0]]
    return not _meaningful(a[: diff[0]]) and not any(ch.isdigit() for ch in swapped)


def _meaningful(words: Iterable[str]) -> bool:
    """A predicate that fixes one value: some word that is neither a stopword nor a many-valued verb."""
    return any(w not in _MANY_VALUED and w not in STOPWORDS for w in words)
