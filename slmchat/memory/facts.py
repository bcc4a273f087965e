"""Long-term facts: extract durable facts about the user from their message, and decide how each one changes memory.

Extraction asks the small model, under a JSON schema, for at most three short facts stated in the
user's own message (the assistant's answer is never shown to it, so no fact can come from the
assistant's guesses). A 135M model invents and copies freely, so its reply goes through junk guards
(:func:`clean_facts`) before anything is stored. Texts without a first-person word skip the model
entirely (:func:`has_first_person`).

:func:`decide` is deterministic: given the stored facts nearest to a new one (with their cosine
similarity), it says whether to add it, ignore it as a duplicate, let it replace an old value, or
delete the fact it negates. Measured by ``tests/bench/bench_extraction.py`` on
``tests/data/memory_extraction.jsonl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from slmchat.backends.base import CancelToken, ChatBackend, GenParams, Message
from slmchat.memory.types import FactChange, Hit

MAX_FACT_CHARS = 120
MAX_FACTS = 3
#: the head of a very long message is what the extractor reads (SmolLM2's context is 2,048 tokens)
MAX_INPUT_CHARS = 1500

#: Facts the model rates below this are dropped. SmolLM2-135M copies the confidence of its examples: in the
#: bench runs every fact it wrote had exactly the examples' 0.9 (or 0.95), so this cut never fired there and
#: cost no labelled fact. It is kept for larger extractors, whose confidences mean something.
MIN_CONFIDENCE = 0.6

#: Hallucination guard: at least this share of a fact's content words (stemmed) must occur in the user's
#: message. One shared word let "My dog's name is Biscuit" through as "The user works as a dog trainer".
MIN_GROUNDED = 0.5

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

FACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": MAX_FACTS,
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "string", "maxLength": MAX_FACT_CHARS},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "required": ["fact", "confidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

#: Chosen of three variants by tests/bench/bench_extraction.py: recall 0.50 against 0.47 for the other two,
#: precision 0.45 against 0.42 and 0.49 (differences of one or two facts out of 34). SmolLM2-135M copies the
#: examples' shape more than it follows the rules: after an example "The user has a cat called Luna" it wrote
#: "The user has a ..." for everything, after "The user is a teacher" it wrote "The user is Biscuit" for a
#: dog's name. Varied verbs ("name is", "wants", "lives in", "works as") did best; "confidence 0.1" for
#: requests is not followed (the transient guard drops them instead).
SYSTEM_PROMPT = (
    "You write down lasting facts about the user from their message: name, job, home, family, pets, likes, "
    "health, tools, projects, dates. Start each fact with 'The user'. Use only what the message says. "
    "A one-off order or request gets confidence 0.1."
)
#: few-shot turns, (user message, reply). Their facts leak into replies ("The user's name is Sam" for a
#: message with no name); the grounding guard drops those, as the examples share no word with real messages.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Hi, I'm Sam. Can I get a pizza with olives?",
        '{"facts": [{"fact": "The user\'s name is Sam", "confidence": 0.9}, '
        '{"fact": "The user wants a pizza with olives", "confidence": 0.1}]}',
    ),
    (
        "I live in Oslo and work as a baker.",
        '{"facts": [{"fact": "The user lives in Oslo", "confidence": 0.9}, '
        '{"fact": "The user works as a baker", "confidence": 0.9}]}',
    ),
    ("How do I boil an egg?", '{"facts": []}'),
)

_FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|i'd|i'll|me|my|mine|myself|we|we're|we've|our|ours|us)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9][a-z0-9@.+%:-]*[a-z0-9]|[a-z0-9]", re.IGNORECASE)
_QUESTION_START = {
    "what", "who", "whom", "whose", "which", "when", "where", "why", "how", "can", "could", "would", "should",
    "do", "does", "did", "is", "are", "was", "were", "will", "shall", "may", "might", "have", "has",
}  # fmt: skip
#: a "fact" that is only this turn's request or order: not worth remembering
_TRANSIENT = re.compile(
    r"\b(wants?|would like|'d like|wish(es)?|is asking|asks|asked|is ordering|orders?|ordered|requests?|"
    r"is looking for|is wondering|thanks?|thanked|says?|said|greets?|greeted)\b",
    re.IGNORECASE,
)
_STOPWORDS = {
    "the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "from", "by", "as", "into",
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did", "not",
    "no", "yes", "it", "its", "this", "that", "these", "those", "there", "their", "they", "them", "he", "she",
    "his", "her", "i", "me", "my", "we", "our", "us", "you", "your", "user", "users", "some", "any",
    "very", "so", "too", "just", "also", "please", "would", "could", "can", "will", "like", "likes", "get",
    "want", "wants", "need", "needs", "one", "all", "about", "what", "which", "who", "how", "when", "where",
    "im", "now", "then", "than", "if", "more", "most", "other", "such", "only",
}  # fmt: skip
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
#: "The user is Bob" / "The user's name is Bob": a claim about the user's own name
_NAME_CLAIM = re.compile(r"^The user(?:'s name is| is called| is named| is) ([A-Z][\w'-]*(?: [A-Z][\w'-]*)?)$")
_VALUE_TOKEN = re.compile(r"\b(?:\d[\w:./-]*|[A-Z][\w'-]*)")


def has_first_person(text: str) -> bool:
    """Whether ``text`` says something in the first person ("I", "my", "we", "our", ...): the pre-filter."""
    return _FIRST_PERSON.search(text.replace("’", "'")) is not None


def build_messages(user_text: str) -> list[Message]:
    """The extraction prompt: system rules, the few-shot examples, then the user's message alone."""
    messages = [Message("system", SYSTEM_PROMPT)]
    for example, reply in EXAMPLES:
        messages += [Message("user", example), Message("assistant", reply)]
    messages.append(Message("user", user_text[:MAX_INPUT_CHARS]))
    return messages


async def extract_facts(
    backend: ChatBackend, user_text: str, *, max_tokens: int = 160, prefilter: bool = True
) -> list[tuple[str, float]]:
    """Durable facts about the user stated in ``user_text``, as ``(fact, confidence)``, best guarded.

    Greedy (temperature 0, seed 0) under :data:`FACT_SCHEMA`. With ``prefilter`` (the default) a text
    with no first-person word returns ``[]`` without calling the model.
    """
    text = user_text.strip()
    if not text or (prefilter and not has_first_person(text)):
        return []
    params = GenParams(max_tokens=max_tokens, temperature=0.0, seed=0, json_schema=FACT_SCHEMA)
    pieces: list[str] = []
    async for item in backend.stream(build_messages(text), params, CancelToken()):
        if isinstance(item, str):
            pieces.append(item)
    return clean_facts("".join(pieces), text)


def clean_facts(reply: str | dict[str, Any], user_text: str) -> list[tuple[str, float]]:
    """The junk guards on a model reply (JSON text or parsed): what survives, as ``(fact, confidence)``.

    Dropped: confidence below :data:`MIN_CONFIDENCE` or not a number, longer than :data:`MAX_FACT_CHARS`,
    questions, one-off requests ("The user wants a latte"), facts with less than :data:`MIN_GROUNDED` of
    their content words in ``user_text`` (invented or copied from the prompt's examples), a name the
    user did not give as their own ("My dog's name is Biscuit" is no "The user's name is Biscuit"), and
    duplicates. "I ..." / "My ..." is rewritten to "The user ...", "The user is Bob" to "The user's name
    is Bob". A reply cut off mid-JSON is repaired; an unreadable one gives ``[]``.
    """
    items = _facts_of(reply)
    source_words = _content_stems(user_text)
    kept: list[tuple[str, float]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        fact, confidence = item.get("fact"), item.get("confidence")
        if not isinstance(fact, str) or isinstance(confidence, bool) or not isinstance(confidence, int | float):
            continue
        fact = third_person(" ".join(fact.split()).rstrip(" ."))
        if not fact or confidence < MIN_CONFIDENCE or len(fact) > MAX_FACT_CHARS or _is_question(fact):
            continue
        if _TRANSIENT.search(fact) or _grounded(fact, source_words) < MIN_GROUNDED:
            continue
        name = _NAME_CLAIM.match(fact)
        if name:  # only a name the user gives as theirs: not "My dog's name is Biscuit", "My daughter Emma"
            if not _names_self(user_text, name.group(1)):
                continue
            fact = f"The user's name is {name.group(1)}"
        key = " ".join(w.lower() for w in _WORD.findall(fact))
        if key in seen:
            continue
        seen.add(key)
        kept.append((fact, min(float(confidence), 1.0)))
    return kept[:MAX_FACTS]


def _names_self(text: str, name: str) -> bool:
    """Whether the user gives ``name`` as their own: "my name is Bob", "I'm Bob", "call me Bob"."""
    cue = r"(\bmy name(?: is|'s)?|\bi'm|\bi am|\bim|\bcall me|\bthis is|\bit's)[\s,:]+"
    return re.search(cue + re.escape(name) + r"\b", text.replace("’", "'"), re.IGNORECASE) is not None


def _grounded(fact: str, source_words: set[str]) -> float:
    """The share of the fact's content words found in the source; 0 when it has none."""
    words = _content_stems(fact)
    return len(words & source_words) / len(words) if words else 0.0


def _facts_of(reply: str | dict[str, Any]) -> list[Any]:
    data: Any = reply
    if isinstance(reply, str):
        try:
            data = json.loads(reply)
        except ValueError:
            import json_repair

            data = json_repair.repair_json(reply, return_objects=True)
    facts = data.get("facts") if isinstance(data, dict) else None
    return facts if isinstance(facts, list) else []


_FIRST_PERSON_START = (
    (re.compile(r"^(i am|i'm|im)\b", re.I), "The user is"),
    (re.compile(r"^i have\b", re.I), "The user has"),
    (re.compile(r"^i've\b", re.I), "The user has"),
    (re.compile(r"^i was\b", re.I), "The user was"),
    (re.compile(r"^i (don't|do not)\b", re.I), "The user does not"),
    (re.compile(r"^i (can't|cannot)\b", re.I), "The user cannot"),
    (re.compile(r"^i (no longer|never|also|always|usually|often|mostly)\s+(\w+)", re.I), None),
    (re.compile(r"^i (will|would|should|could|can|must|might)\b", re.I), None),
    (re.compile(r"^i\s+(\w+)", re.I), None),
    (re.compile(r"^my\b", re.I), "The user's"),
    (re.compile(r"^(the )?user's\b", re.I), "The user's"),
    (re.compile(r"^(the )?user\b", re.I), "The user"),
)


def third_person(fact: str) -> str:
    """Rewrite a first-person fact: "I like tea" -> "The user likes tea", "My dog" -> "The user's dog".

    Texts that do not start with "I" or "My" come back unchanged (a leading "User" gains its "The").
    """
    fact = fact.strip().replace("’", "'")
    for pattern, replacement in _FIRST_PERSON_START:
        match = pattern.match(fact)
        if not match:
            continue
        rest = fact[match.end() :]
        if replacement is not None:
            return replacement + rest
        groups = match.groups()
        if len(groups) == 2:  # "I no longer drink" -> "The user no longer drinks"
            return f"The user {groups[0].lower()} {_third_person_verb(groups[1])}{rest}"
        if pattern.pattern.startswith("^i (will"):  # modal verbs do not change
            return "The user " + fact[2:]
        return f"The user {_third_person_verb(groups[0])}{rest}"
    return fact


def _third_person_verb(verb: str) -> str:
    lower = verb.lower()
    if lower in ("have", "do", "go"):
        return {"have": "has", "do": "does", "go": "goes"}[lower]
    if lower.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if lower.endswith("y") and len(lower) > 2 and lower[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _is_question(fact: str) -> bool:
    words = fact.split()
    return "?" in fact or (bool(words) and words[0].lower() in _QUESTION_START)


def _stem(word: str) -> str:
    word = word.lower().removesuffix("'s")
    for suffix in ("ing", "ies", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _content_stems(text: str) -> set[str]:
    words = _WORD.findall(text.replace("’", "'").lower())
    return {_stem(w) for w in words if w not in _STOPWORDS and len(w) > 1}


# -- deciding what a new fact does to memory ------------------------------------------------------


def decide(fact: str, nearest: Sequence[Hit]) -> FactChange:
    """Add, update, delete or ignore ``fact`` given the stored facts nearest to it (``Hit.similarity`` is cosine).

    In order: a negated fact ("The user no longer has a dog") deletes the nearest positive fact on the
    same topic; a near-duplicate with the same values is ignored; the same attribute with another value
    ("dog is named Rex" over "dog is named Biscuit") updates; anything else is added. Deterministic: the
    thresholds are the module constants above. Exchanges among ``nearest`` are ignored.
    """
    hits = sorted((h for h in nearest if h.item.kind == "fact"), key=lambda h: h.similarity, reverse=True)
    negated = _is_negated(fact)
    topic = _content_stems(_strip_negation(fact))
    for hit in hits:
        if hit.similarity < NEGATE:
            break
        if negated and not _is_negated(hit.item.text) and topic & _content_stems(hit.item.text):
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
            if topic & _content_stems(_strip_negation(old)):
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
    words = [w.lower() for w in _WORD.findall(re.sub(r"'s\b", "", text.replace("’", "'")))]
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
    return any(w not in _MANY_VALUED and w not in _STOPWORDS for w in words)
