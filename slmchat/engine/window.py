"""Short-term memory: as much recent conversation as fits a token budget, compacted deterministically.

When the history does not fit: first the long answers of older exchanges (all but the last
``KEEP_FULL``) are shortened, then whole exchanges are dropped oldest first. The system prompt
and the current question are always kept, even when they alone exceed the budget: whether
they fit the model's window is decided by routing.fit (at routing, and again before the call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slmchat.infra.backends.base import Message

#: tokens a chat template adds around each message (role markers, separators)
PER_MESSAGE_OVERHEAD = 4


#: history budget for backends that do not report their context window
DEFAULT_HISTORY_TOKENS = 4096


def history_budget(configured: int | None, context_window: int | None, max_tokens: int) -> int:
    """Tokens the window may use: the tier's setting, else what the model's context leaves for the answer."""
    if configured:
        return configured
    return max(256, context_window - max_tokens) if context_window else DEFAULT_HISTORY_TOKENS


#: the most recent exchanges, never shortened
KEEP_FULL = 2
#: an older answer longer than this many tokens is cut to about this length
SHORT_TOKENS = 48
SHORTENED_MARK = " …[shortened]"


@dataclass(frozen=True)
class Window:
    messages: list[Message]
    tokens: int
    dropped: int  # earlier messages left out to fit
    shortened: int = 0  # older answers cut to fit

    @property
    def compacted(self) -> bool:
        return bool(self.dropped or self.shortened)


def fit_window(
    system: str,
    history: Sequence[Message],
    question: str,
    budget: int,
    count: Callable[[str], int],
    strip: Callable[[str], str] | None = None,
) -> Window:
    """Build ``[system, *recent history, question]`` within ``budget`` tokens.

    ``strip`` takes what is not the user's own words out of an older user message (the memories
    recalled for it): when the history does not fit, that goes first, with the long answers.
    """

    def cost(text: str) -> int:
        return count(text) + PER_MESSAGE_OVERHEAD

    head = [Message("system", system)] if system else []
    used = sum(cost(m.content) for m in head) + cost(question)
    shortened = 0
    if used + sum(cost(m.content) for m in history) > budget:
        history, shortened = _shorten_old_answers(history, count, strip)
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
    shortened_kept = sum(m.content.endswith(SHORTENED_MARK) for m in kept)
    return Window([*head, *kept, Message("user", question)], used, dropped, min(shortened, shortened_kept))


def _shorten_old_answers(
    history: Sequence[Message], count: Callable[[str], int], strip: Callable[[str], str] | None = None
) -> tuple[list[Message], int]:
    """Cut the long answers of all but the last ``KEEP_FULL`` exchanges to about ``SHORT_TOKENS``.

    Their user messages lose what ``strip`` takes out (recalled memories; not counted as shortened).
    """
    starts = [i for i, m in enumerate(history) if m.role == "user"]
    protected = starts[-KEEP_FULL] if len(starts) >= KEEP_FULL else 0
    out, shortened = [], 0
    for i, message in enumerate(history):
        if i < protected and message.role == "user" and strip is not None:
            out.append(Message("user", strip(message.content)))
        elif i < protected and message.role == "assistant" and count(message.content) > SHORT_TOKENS:
            words = message.content.split()
            cut = " ".join(words[: max(1, SHORT_TOKENS * 3 // 4)])  # about 0.75 words per token
            out.append(Message(message.role, cut + SHORTENED_MARK))
            shortened += 1
        else:
            out.append(message)
    return out, shortened
