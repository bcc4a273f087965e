"""Observable properties of a request, each a number in [0, 1], computed before any model runs.

Two groups, as DESIGN.md describes: the five complexity factors of the message itself, and
task-structure signals that need the conversation. Word lists match whole words only
(``\\bapi\\b`` does not fire inside "capital"). Each factor also says, in a few words, why it
fired, so the route decision can explain itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmchat.infra.backends.base import Message


def _words(*phrases: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching any of ``phrases`` as whole words."""
    alternatives = sorted((re.escape(p).replace(r"\ ", r"\s+") for p in phrases), key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


#: subject areas; a request touching several of them needs broader knowledge
DOMAINS: dict[str, re.Pattern[str]] = {
    "math": _words(
        "equation",
        "integral",
        "derivative",
        "probability",
        "matrix",
        "theorem",
        "prove",
        "algebra",
        "geometry",
        "calculus",
        "percent",
        "percentage",
        "ratio",
        "sum",
        "product",
        "average",
    ),
    "code": _words(
        "code",
        "function",
        "python",
        "javascript",
        "sql",
        "regex",
        "api",
        "bug",
        "compile",
        "class",
        "algorithm",
        "recursion",
        "database",
        "script",
    ),
    "law": _words(
        "law",
        "legal",
        "court",
        "contract",
        "statute",
        "plaintiff",
        "defendant",
        "liability",
        "tort",
        "constitution",
        "jurisdiction",
    ),
    "medicine": _words(
        "patient", "diagnosis", "symptom", "disease", "dose", "clinical", "treatment", "drug", "medical", "therapy"
    ),
    "finance": _words(
        "tax", "interest rate", "investment", "stock", "bond", "inflation", "gdp", "revenue", "profit", "loan", "budget"
    ),
    "science": _words(
        "physics",
        "chemistry",
        "molecule",
        "energy",
        "force",
        "velocity",
        "cell",
        "gene",
        "reaction",
        "quantum",
        "electron",
    ),
    "history": _words("century", "war", "empire", "treaty", "revolution", "ancient", "dynasty"),
}

#: words that ask for reasoning rather than recall
REASONING = _words(
    "why",
    "explain",
    "prove",
    "derive",
    "justify",
    "step by step",
    "compare",
    "analyze",
    "analyse",
    "evaluate",
    "how many",
    "how much",
    "calculate",
    "compute",
    "estimate",
    "infer",
    "therefore",
    "implies",
    "if and only if",
    "trade-off",
    "tradeoff",
    "pros and cons",
)
#: things a model cannot do from memory: fresh data, files, exact arithmetic, side effects
TOOL_NEEDS: dict[str, re.Pattern[str]] = {
    "search": _words("search", "look up", "latest", "current", "today", "news", "website", "browse"),
    "files": _words("file", "folder", "directory", "document", "pdf", "spreadsheet", "csv"),
    "calculator": _words("calculate", "compute", "convert", "exactly"),
    "actions": _words("send", "email", "book", "schedule", "order", "cancel", "refund", "purchase", "buy"),
}
#: phrases by which a user tells the assistant it was wrong
CORRECTION = _words(
    "that's wrong",
    "that is wrong",
    "that's not right",
    "not correct",
    "incorrect",
    "you're wrong",
    "you are wrong",
    "wrong answer",
    "not what i asked",
    "try again",
    "you misunderstood",
    "that's not what",
    "no, i meant",
    "i said",
)
#: verbs that open a separate request ("return this and exchange that")
REQUEST_VERBS = _words(
    "return",
    "exchange",
    "refund",
    "cancel",
    "change",
    "update",
    "write",
    "explain",
    "list",
    "summarize",
    "summarise",
    "translate",
    "find",
    "give",
    "tell",
    "show",
    "make",
    "create",
    "fix",
    "check",
    "book",
    "order",
    "send",
    "compare",
    "calculate",
    "describe",
)
_CONNECTOR = re.compile(
    r"\b(?:and also|and then|as well as|also|plus|additionally)\b|[;?]\s|\n\s*(?:\d+[.)]|[-*•])\s", re.IGNORECASE
)
_LIST_ITEM = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•]|[a-z][.)])\s+")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")


@dataclass(frozen=True)
class Factor:
    """One observation: its value in [0, 1] and a short phrase saying what was seen."""

    value: float
    why: str = ""


@dataclass(frozen=True)
class RouteContext:
    """What the router may look at: the message and the conversation before it."""

    text: str
    history: Sequence[Message] = ()
    context_tokens: int = 0  # tokens the prompt would hold (history + question), counted or estimated
    long_context_tokens: int = 3000  # past this, the context is long


def _scale(count: float, full: float) -> float:
    """0 for nothing, 1 at ``full`` or more, smooth in between."""
    return max(0.0, min(1.0, count / full))


def complexity_factors(text: str) -> dict[str, Factor]:
    """The five complexity factors of a message on its own."""
    words = len(text.split())
    length = Factor(min(1.0, math.log1p(words) / math.log1p(400)), f"{words} words")

    items = len(_LIST_ITEM.findall(text))
    sentences = len(_SENTENCE.findall(text))
    demands = len(re.findall(r"\b(?:must|should|need to|make sure|at least|at most|exactly|without)\b", text, re.I))
    requirement_count = items + demands + max(0, sentences - 1) * 0.5
    requirements = Factor(
        _scale(requirement_count, 6), f"{items} listed items, {demands} constraints, {sentences} sentences"
    )

    domains = sorted(name for name, pattern in DOMAINS.items() if pattern.search(text))
    breadth = Factor(_scale(len(domains), 3), " + ".join(domains))

    # the "tool requirements" and "number of tools needed" are one signal: how many kinds of tool
    tools = sorted(name for name, pattern in TOOL_NEEDS.items() if pattern.search(text))
    tool_factor = Factor(_scale(len(tools), 2), "needs " + ", ".join(tools))

    reasoning_hits = len(REASONING.findall(text))
    numbers = len(_NUMBER.findall(text))
    depth = _scale(reasoning_hits, 3) * 0.6 + _scale(numbers, 6) * 0.4
    reasoning = Factor(depth, "multi-step math" if numbers >= 2 and reasoning_hits else "reasoning asked")
    return {
        "length": length,
        "requirements": requirements,
        "domain_breadth": breadth,
        "tool_needs": tool_factor,
        "reasoning_depth": reasoning,
    }


def count_intents(text: str) -> int:
    """Separate requests in one message: request verbs in distinct clauses joined by connectors."""
    clauses = [c for c in _CONNECTOR.split(text) if c and c.strip()]
    with_request = sum(1 for c in clauses if REQUEST_VERBS.search(c) or c.rstrip().endswith("?"))
    questions = text.count("?")
    return max(1, with_request, questions)


def structure_signals(context: RouteContext) -> dict[str, Factor]:
    """Signals that need the conversation: several intents, long context, repeated corrections."""
    intents = count_intents(context.text)
    long_context = context.context_tokens > context.long_context_tokens
    corrections = sum(
        1
        for m in [*context.history, Message("user", context.text)]
        if m.role == "user" and CORRECTION.search(m.content)
    )
    return {
        "several_intents": Factor(_scale(intents - 1, 2), f"{intents} separate requests"),
        "long_context": Factor(1.0 if long_context else 0.0, f"context of {context.context_tokens} tokens"),
        "user_corrections": Factor(1.0 if corrections >= 2 else 0.5 * corrections, f"corrected {corrections} times"),
    }


def all_factors(context: RouteContext) -> dict[str, Factor]:
    return {**complexity_factors(context.text), **structure_signals(context)}
