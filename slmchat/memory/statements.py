"""What a user's message states: its statement clauses, first person or not, and the fact in a short
answer to the assistant's question.

Fact extraction (:mod:`slmchat.memory.facts`) reads only what these functions keep: a lasting fact
comes from a statement, not from the questions, orders, requests and passing states around it.
Chosen on the tuning split of ``tests/bench/bench_extraction.py`` (see docs/memory.md).
"""

from __future__ import annotations

import re

_FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|i'd|i'll|me|my|mine|myself|we|we're|we've|our|ours|us)\b", re.IGNORECASE)
#: a fact from a bare answer is as sure as the model's usual 0.9
ANSWER_CONFIDENCE = 0.9
MAX_ANSWER_WORDS = 4
_NOT_A_VALUE = {
    "yes", "yeah", "yep", "yup", "no", "nope", "nah", "ok", "okay", "sure", "thanks", "thank", "fine", "correct",
    "right", "maybe", "perhaps", "dunno", "none", "nothing", "not", "that", "it", "it's", "this", "great",
}  # fmt: skip
#: "What's your order?" asks about this turn, not about the user
_NOT_A_THING = {"order", "question", "problem", "issue", "request", "choice", "pick", "order id", "reason"}
_ANSWER_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b(what should i call you|what(?:'s| is) your name|who are you|"
            r"(?:may|can|could) i (?:have|get|ask|take) your name)\b",
            re.I,
        ),
        "The user's name is {value}",
    ),
    (re.compile(r"\bwhere do you live\b", re.I), "The user lives in {value}"),
    (re.compile(r"\bwhere are you from\b", re.I), "The user is from {value}"),
    (re.compile(r"\bwhere are you based\b", re.I), "The user is based in {value}"),
    (
        re.compile(r"\bwhat(?:'s| is) your (?P<thing>[a-z' -]+?) (?:called|named)\s*\?", re.I),
        "The user's {thing} is named {value}",
    ),
    (
        re.compile(
            r"\b(?:what(?:'s| is| are)|(?:may|can|could) i (?:have|get|ask)) your (?P<thing>[a-z' -]+?)"
            r"(?:,? please)?\s*\?",
            re.I,
        ),
        "The user's {thing} is {value}",
    ),
)
#: sentences, each with its end mark
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
_CLAUSE = re.compile(r",|;|\b(?:and|but|so|because|since)\b", re.I)
_LEAD = re.compile(r"^(?:(?:hi|hello|hey|oh|ah|um|uh|well|ok|okay|yes|yeah|no|sorry|please|then|also|actually|"
                   r"just|anyway|there)\b[\s,!]*)+", re.I)  # fmt: skip
#: clause starts that make no lasting statement: requests, orders, commands, passing states, hedges
_NOT_A_STATEMENT = re.compile(
    r"^(?:(?:can|could|may|would|will|shall|should|do|does|did|is|are|what|how|why|where|when|who|which)\b"
    r"|(?:i'd|i would|we'd|we would|i'll|i will|we'll|i'm going to|im going to|i am going to|"
    r"i want|i wanna|we want|i'm wondering|i was wondering|i wonder)\b"
    r"|i need (?:a|an|some|the|one|two|three|to (?:get|order|buy|book|return|know|check|change|see))\b"
    r"|i (?:think|guess|mean|meant|see|changed|hope|just wanted|wanted)\b"
    r"|(?:i'm|i am|im) (?:hungry|sorry|sure|not sure|confused|done|ready|back|here|fine|good|"
    r"okay|ok|glad|happy|going|about to|trying|just|still)\b"
    r"|(?:get|give|make|book|order|send|remind|tell|show|find|translate|write|explain|help|bring|add|put|"
    r"let|set|buy|call|check|look|cancel|fix|pick)\b"
    r"|(?:he|she|they|it|someone|people|some people|everyone|nobody)\b)"  # about someone else
    r"|\bplease\b",  # a request wherever it is said
    re.IGNORECASE,
)
_WHEN = re.compile(
    r"\b(?:today|tonight|tomorrow|yesterday|later|right now|this (?:morning|evening|afternoon|week))\b", re.I
)


def has_first_person(text: str) -> bool:
    """Whether ``text`` says something in the first person ("I", "my", "we", "our", ...): the pre-filter."""
    return _FIRST_PERSON.search(text.replace("’", "'")) is not None


def statement_text(text: str) -> str:
    """``text`` without its questions, orders, requests and passing states: what a lasting fact may come from.

    The text is cut into clauses (at sentence ends, commas, semicolons, "and", "but", "so"); a sentence with
    a question mark goes whole, and so does a clause that starts as a request or order ("I'd like ...",
    "Can I get ...", "Get me ..."), a passing state ("I'm hungry", "I think ...") or that says when
    ("today", "tonight", "later"). "I would like a latte and my name is Tisha" keeps "my name is Tisha".
    """
    kept: list[str] = []
    for sentence in _SENTENCE.findall(text.replace("’", "'")):
        if sentence.rstrip().endswith("?"):
            continue
        for clause in _CLAUSE.split(sentence):
            clause = _LEAD.sub("", clause.strip(" .!,;:-")).strip()
            if clause and not _NOT_A_STATEMENT.search(clause) and not _WHEN.search(clause):
                kept.append(clause)
    return ". ".join(kept)


def answer_fact(question: str | None, answer: str) -> str | None:
    """The fact in a short answer to a question about the user, or None.

    Only the plainest forms: "What's your X?" / "May I have your X?" -> "The user's X is <answer>",
    "What's your X called?" -> "The user's X is named <answer>", "What should I call you?" / "What's
    your name?" -> a name, "Where do you live?" -> "The user lives in <answer>". The answer must be a
    short value (at most :data:`MAX_ANSWER_WORDS` words, no yes/no, no question, no first person: a
    sentence goes to the model instead). Questions about several things ("name or account ID") give None.
    """
    if not question:
        return None
    value = " ".join(answer.replace("’", "'").split()).strip(" .!")
    words = value.split()
    if not words or len(words) > MAX_ANSWER_WORDS or "?" in value or has_first_person(value):
        return None
    if words[0].lower().strip(",") in _NOT_A_VALUE:
        return None
    asked = " ".join(question.replace("’", "'").split())
    for pattern, template in _ANSWER_FORMS:
        match = pattern.search(asked)
        if not match:
            continue
        thing = match.groupdict().get("thing")
        if thing is not None:
            thing = thing.strip().lower()
            if not thing or " or " in thing or "," in thing or " and " in thing or thing in _NOT_A_THING:
                return None
            if thing == "name":
                template = "The user's name is {value}"
        if "name is" in template and not all(w[:1].isupper() for w in words):
            return None  # a name is capitalised; "no worries" is not a name
        return template.format(thing=thing, value=value)
    return None
