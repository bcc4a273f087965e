"""Long-term facts: extract durable facts about the user from their message, with the small model.

Extraction asks the small model, under a JSON schema, for at most three short facts stated in the
user's own message (the assistant's answer is never shown to it, so no fact can come from the
assistant's guesses). A 135M model invents and copies freely, so its reply goes through junk guards
(:func:`clean_facts`) before anything is stored. Texts without a first-person statement skip the model
entirely (:func:`statement_text`, :func:`has_first_person`), and a short answer to a plain question about
the user becomes a fact without it (:func:`answer_fact`).

What each fact then does to memory is decided by :mod:`slmchat.memory.reconcile`. Measured by
``tests/bench/bench_extraction.py --split tune|heldout``: every guard was chosen on the tune split.
"""

from __future__ import annotations

import json
import re
from typing import Any

from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message
from slmchat.memory.statements import ANSWER_CONFIDENCE, answer_fact, has_first_person, statement_text

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

WORD = re.compile(r"[a-z0-9][a-z0-9@.+%:-]*[a-z0-9]|[a-z0-9]", re.IGNORECASE)
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
STOPWORDS = {
    "the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "from", "by", "as", "into",
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did", "not",
    "no", "yes", "it", "its", "this", "that", "these", "those", "there", "their", "they", "them", "he", "she",
    "his", "her", "i", "me", "my", "we", "our", "us", "you", "your", "user", "users", "some", "any",
    "very", "so", "too", "just", "also", "please", "would", "could", "can", "will", "like", "likes", "get",
    "want", "wants", "need", "needs", "one", "all", "about", "what", "which", "who", "how", "when", "where",
    "im", "now", "then", "than", "if", "more", "most", "other", "such", "only",
}  # fmt: skip
#: "The user is Bob" / "The user's name is Bob": a claim about the user's own name
_NAME_CLAIM = re.compile(r"^The user(?:'s name is| is called| is named| is) ([A-Z][\w'-]*(?: [A-Z][\w'-]*)?)$")

#: the last word of a cut-off fact
_DANGLING = {
    "is", "are", "was", "were", "be", "been", "am", "has", "have", "had", "the", "a", "an", "of", "to", "in",
    "on", "at", "for", "with", "from", "by", "as", "and", "or", "but", "my", "his", "her", "their", "its",
    "your", "our", "that", "which", "who", "than", "named", "called", "name", "does", "not", "very", "into",
}  # fmt: skip
#: a longer word in a fact is a runaway repetition ("15.0.0.1.8.8.8.8...")
MAX_WORD_CHARS = 32
#: ground facts in the statement clauses only (not in the requests and questions around them)
GROUND_IN_STATEMENTS = True


def build_messages(user_text: str) -> list[Message]:
    """The extraction prompt: system rules, the few-shot examples, then the user's message alone."""
    messages = [Message("system", SYSTEM_PROMPT)]
    for example, reply in EXAMPLES:
        messages += [Message("user", example), Message("assistant", reply)]
    messages.append(Message("user", user_text[:MAX_INPUT_CHARS]))
    return messages


async def extract_facts(
    backend: ChatBackend,
    user_text: str,
    *,
    question: str | None = None,
    max_tokens: int = 160,
    prefilter: bool = True,
    cancel: CancelToken | None = None,
) -> list[tuple[str, float]]:
    """Durable facts about the user stated in ``user_text``, as ``(fact, confidence)``, best guarded.

    ``question`` is the assistant's previous turn, when there was one: a short answer to a question about
    the user ("Blue." after "What's your favourite colour?") becomes a fact without the model
    (:func:`answer_fact`). Otherwise greedy (temperature 0, seed 0) under :data:`FACT_SCHEMA`. With
    ``prefilter`` (the default) a text with no first-person statement (only questions, orders, requests
    or passing states: :func:`statement_text`) returns ``[]`` without calling the model. The call is made
    ``aside`` (the conversation's prompt cache is kept); when ``cancel`` stops it, the reply is cut short
    and the caller must not store what comes back (check ``cancel.cancelled``).
    """
    text = user_text.strip()
    if not text:
        return []
    answered = answer_fact(question, text) if question else None
    if answered:
        return [(answered, ANSWER_CONFIDENCE)]
    if prefilter and not has_first_person(statement_text(text)):
        return []
    params = GenParams(max_tokens=max_tokens, temperature=0.0, seed=0, json_schema=FACT_SCHEMA, aside=True)
    pieces: list[str] = []
    async for item in backend.stream(build_messages(text), params, cancel or CancelToken()):
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
    source_words = content_stems(statement_text(user_text) if GROUND_IN_STATEMENTS else user_text)
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
        if not is_whole_sentence(fact) or has_first_person(fact) or any(len(w) > MAX_WORD_CHARS for w in fact.split()):
            continue  # cut off, still "I ..." after the rewrite (a rambling reply), or a runaway "15.0.8.8.8.8..."
        if _TRANSIENT.search(fact) or _grounded(fact, source_words) < MIN_GROUNDED:
            continue
        name = _NAME_CLAIM.match(fact)
        if name:  # only a name the user gives as theirs: not "My dog's name is Biscuit", "My daughter Emma"
            if not _names_self(user_text, name.group(1)):
                continue
            fact = f"The user's name is {name.group(1)}"
        key = " ".join(w.lower() for w in WORD.findall(fact))
        stems = content_stems(fact)
        if key in seen or any(stems <= content_stems(earlier) for earlier, _ in kept):
            continue  # the same fact again, or a part of one kept ("is a photographer" after "a freelance ...")
        seen.add(key)
        kept.append((fact, min(float(confidence), 1.0)))
    return kept[:MAX_FACTS]


def is_whole_sentence(fact: str) -> bool:
    """Whether ``fact`` says something whole: not "The user's dog's name is" or "The user has a" (cut off).

    It must say more than its subject ("The user", "The user's dog") and must not end on a verb "to be",
    a possessive, an article, a preposition or a conjunction.
    """
    words = fact.split()
    subject = 3 if fact.startswith("The user's") else 2  # "The user's dog" is a subject alone
    if len(words) <= subject or not content_stems(fact):
        return False
    last = words[-1].lower().strip(",;:")
    return not (last in _DANGLING or last.endswith("'s") or last.endswith("'"))


def _names_self(text: str, name: str) -> bool:
    """Whether the user gives ``name`` as their own: "my name is Bob", "I'm Bob", "call me Bob"."""
    cue = r"(\bmy name(?: is|'s)?|\bi'm|\bi am|\bim|\bcall me|\bthis is|\bit's)[\s,:]+"
    return re.search(cue + re.escape(name) + r"\b", text.replace("’", "'"), re.IGNORECASE) is not None


def _grounded(fact: str, source_words: set[str]) -> float:
    """The share of the fact's content words found in the source; 0 when it has none."""
    words = content_stems(fact)
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


def content_stems(text: str) -> set[str]:
    words = WORD.findall(text.replace("’", "'").lower())
    return {_stem(w) for w in words if w not in STOPWORDS and len(w) > 1}
