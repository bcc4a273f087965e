"""The short-term window: as much recent conversation as fits a token budget.

Whole exchanges are dropped oldest first; the system prompt and the current question
are always kept, even when they alone exceed the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slmchat.backends.base import Message

#: tokens a chat template adds around each message (role markers, separators)
PER_MESSAGE_OVERHEAD = 4


#: history budget for backends that do not report their context window
DEFAULT_HISTORY_TOKENS = 4096


def history_budget(configured: int | None, context_window: int | None, max_tokens: int) -> int:
    """Tokens the window may use: the tier's setting, else what the model's context leaves for the answer."""
    if configured:
        return configured
    return max(256, context_window - max_tokens) if context_window else DEFAULT_HISTORY_TOKENS


@dataclass(frozen=True)
class Window:
    messages: list[Message]
    tokens: int
    dropped: int  # earlier messages left out to fit


def fit_window(
    system: str,
    history: Sequence[Message],
    question: str,
    budget: int,
    count: Callable[[str], int],
) -> Window:
    """Build ``[system, *recent history, question]`` within ``budget`` tokens."""

    def cost(text: str) -> int:
        return count(text) + PER_MESSAGE_OVERHEAD

    head = [Message("system", system)] if system else []
    used = sum(cost(m.content) for m in head) + cost(question)
    kept: list[Message] = []
    # walk back over whole exchanges: a user message and what followed it
    exchange: list[Message] = []
    for message in reversed(history):
        exchange.insert(0, message)
        if message.role != "user":
            continue
        exchange_cost = sum(cost(m.content) for m in exchange)
        if used + exchange_cost > budget:
            break
        used += exchange_cost
        kept[:0] = exchange
        exchange = []
    dropped = len(history) - len(kept)
    return Window([*head, *kept, Message("user", question)], used, dropped)
