"""Failure signals seen while the small model answers, which escalate that step to the large tier."""

from __future__ import annotations

#: a chunk repeated this many times at the end of the answer is a loop
LOOP_REPEATS = 4
#: shortest and longest repeating chunk considered, in characters
LOOP_MIN_PERIOD, LOOP_MAX_PERIOD = 3, 120


def repetition_loop(text: str) -> str | None:
    """The repeating chunk if ``text`` ends in a loop (the same chunk ``LOOP_REPEATS`` times), else None.

    Short periods must repeat more often, so lists and ordinary prose do not trip it.
    """
    for period in range(LOOP_MIN_PERIOD, LOOP_MAX_PERIOD + 1):
        repeats = LOOP_REPEATS if period >= 10 else LOOP_REPEATS * 2
        span = period * repeats
        if len(text) < span:
            continue
        chunk = text[-period:]
        if chunk.strip() and text[-span:] == chunk * repeats:
            return chunk
    return None


def failure_signal(answer: str, finish_reason: str, looping: str | None) -> str | None:
    """Why this answer should be redone by the large tier, or None if it looks fine."""
    if finish_reason == "cancelled" and looping is None:
        return None  # the user stopped it
    if looping is not None:
        return f"repetition loop ({looping.strip()[:30]!r} repeated)"
    if not answer.strip():
        return "empty answer"
    return None
