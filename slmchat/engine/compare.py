"""Compare: the last turn asked again on the other tier, and the user keeps one of the two answers.

``async for event in compare(session)`` reruns the conversation's last turn on the other tier
than the one whose answer stood, with the history the original saw and memory off, and
streams the rerun's events. It is offered tools if the original was; a tool that needs
approval is refused (the original's turn acted already). The rerun is stored as its own turn
but set aside (superseded): until the user keeps it, the session's history and a resumed
conversation see the original.
``keep(session, comparison, "original" | "rerun")`` records the verdict and makes the kept
answer the one the conversation goes on from.

Labels (what ``slmchat route calibrate --error-costs`` learns from): on a small-tier turn,
good means "the small tier was enough" and bad "this needed the large tier"; calibrate reads
no other label. A compare answers exactly that question for its small-tier side, so ``keep``
labels that side only: good when it is kept, bad when the large answer is kept. The large
side gets no label: "bad" would be false when the small answer is kept (the large one was
not wrong, only not needed) and "good" says nothing about routing. When neither answer or
both came from the small tier (a small rerun that escalated), nothing is labelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from slmchat.engine.events import (
    ApprovalRequested,
    Escalated,
    Event,
    RouteDecided,
    TurnDone,
    TurnFailed,
    TurnStats,
    event_from_dict,
)
from slmchat.infra.backends.base import Message
from slmchat.infra.errors import SlmchatError
from slmchat.memory.manager import question_of
from slmchat.routing import Tier

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session

Which = Literal["original", "rerun"]


@dataclass(frozen=True)
class Side:
    """One of the two answers: its turn, the tier and model that wrote it, and its figures.

    ``stats`` is None only for an original that was cut off before it closed (nothing measured
    was stored).
    """

    turn_id: int
    tier: Tier
    model: str
    answer: str
    stats: TurnStats | None


@dataclass(frozen=True)
class Comparison:
    """The question, the answer that stood and the rerun's, for the user to keep one."""

    conversation_id: str
    question: str
    original: Side
    rerun: Side
    _kept: list[Which] = field(default_factory=list, repr=False, compare=False)  # set once, by keep

    @property
    def kept(self) -> Which | None:
        return self._kept[0] if self._kept else None

    def side(self, which: Which) -> Side:
        if which not in ("original", "rerun"):
            raise SlmchatError(f"cannot keep {which!r}", 'keep "original" or "rerun"')
        return self.original if which == "original" else self.rerun


class Rerun:
    """The rerun's events, ``RouteDecided`` to ``TurnDone``/``TurnFailed``; iterate it once.

    ``question`` and ``original`` are known once the first event arrives; ``comparison`` once the
    rerun finished ``ok`` (an interrupted or failed rerun leaves nothing to keep: the original stands).
    """

    def __init__(self, session: Session, turn_id: int | None) -> None:
        self.session = session
        self.question: str | None = None
        self.original: Side | None = None
        self.comparison: Comparison | None = None
        self._events = self._run(turn_id)

    def __aiter__(self) -> Rerun:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the rerun early: it is stored interrupted, set aside; the history is untouched."""
        await self._events.aclose()

    async def _run(self, turn_id: int | None) -> AsyncIterator[Event]:
        session = self.session
        if session._closed:
            raise SlmchatError("this session is closed", "open a new Session")
        if session.turn_running:
            raise SlmchatError("an answer is still coming", "wait for it (or cancel it), then compare")
        original, question = await asyncio.to_thread(_last_turn, session, turn_id)
        other: Tier = "large" if original.tier == "small" else "small"
        await asyncio.to_thread(_check_tier, session, other)
        exchange = _exchange(question, original.answer)
        before, last_before = session.history, session.last_turn_id
        if not _ends_with(before, exchange):
            raise SlmchatError(
                "this session's history does not end with the last stored turn", "reopen the conversation, then compare"
            )
        self.question, self.original = question, original
        session.history = before[: -len(exchange)]  # what the original saw; the turn appends to this copy
        # the original's chance: tools if it was offered any (all of them), none if it was not
        tools = original.stats is not None and original.stats.tools is not None
        seen: list[Event] = []
        closing: Event | None = None
        try:
            async with aclosing(session.turn(question, route=other, tools=tools, memory=False)) as events:
                async for event in events:
                    seen.append(event)
                    if isinstance(event, ApprovalRequested):
                        session.approve(event.request_id, False)  # the original acted already: no second time
                    if isinstance(event, TurnDone | TurnFailed):
                        closing = event  # yielded once the history is back
                    else:
                        yield event
        finally:
            rerun_id = session.last_turn_id if session.last_turn_id != last_before else None
            session.history, session.last_turn_id = before, original.turn_id
            if rerun_id is not None:
                session.store.set_superseded(rerun_id)  # sync: this also runs while being cancelled
        if isinstance(closing, TurnDone) and closing.stats.status == "ok" and closing.stats.turn_id is not None:
            rerun = _side(closing.stats.turn_id, closing.stats.answer, seen)
            self.comparison = Comparison(session.conversation_id, question, original, rerun)
        if closing is not None:
            yield closing


def compare(session: Session, turn_id: int | None = None) -> Rerun:
    """Rerun the conversation's last turn (``turn_id``, if given, must be it) on the other tier.

    Iterate the result for the rerun's events; its ``comparison`` is then ready for ``keep``.
    Raises ``SlmchatError`` (when iterated) if there is no answer to compare, the last turn
    failed, ``turn_id`` is not the last turn, or the other tier is missing or blocked.
    """
    return Rerun(session, turn_id)


def keep(session: Session, comparison: Comparison, which: Which) -> Side:
    """Keep one answer: label the small-tier side (see the module), set the other turn aside.

    Keeping the rerun makes it the answer the history and a resumed conversation see, and the
    session's last turn. Returns the kept side.
    """
    kept = comparison.side(which)
    if comparison.kept is not None:
        raise SlmchatError(f"this comparison was settled already (kept the {comparison.kept})", "compare again")
    exchange = _exchange(comparison.question, comparison.original.answer)
    if (
        session.conversation_id != comparison.conversation_id
        or session.last_turn_id != comparison.original.turn_id
        or not _ends_with(session.history, exchange)
    ):
        raise SlmchatError("the conversation has moved on since this compare", "compare the last answer again")
    small = [s for s in (comparison.original, comparison.rerun) if s.tier == "small"]
    if len(small) == 1:
        session.feedback(small[0] is kept, small[0].turn_id)
    if which == "rerun":
        # set aside first: if the second write fails, the question is missing, not there twice
        session.store.set_superseded(comparison.original.turn_id)
        session.store.set_superseded(comparison.rerun.turn_id, False)
        session.history[-len(exchange) :] = _exchange(comparison.question, comparison.rerun.answer)
        session.last_turn_id = comparison.rerun.turn_id
    comparison._kept.append(which)
    return kept


def _exchange(question: str, answer: str) -> list[Message]:
    """The messages a turn adds to the history (as ``Session`` adds them, but without recalled memory)."""
    return [Message("user", question), *([Message("assistant", answer)] if answer else [])]


def _ends_with(history: list[Message], exchange: list[Message]) -> bool:
    """Whether the history ends with ``exchange``; a user message may carry the memories recalled for it."""
    tail = history[-len(exchange) :]
    return len(tail) == len(exchange) and all(
        a.role == b.role and (question_of(a.content) if a.role == "user" else a.content) == b.content
        for a, b in zip(tail, exchange, strict=True)
    )


def _last_turn(session: Session, turn_id: int | None) -> tuple[Side, str]:
    """The conversation's last turn that stands, as a side, with its question (reads the store)."""
    standing = [row for row in session.store.turns(session.conversation_id) if not row["superseded"]]
    if not standing:
        raise SlmchatError("there is no answer to compare yet", "ask something first")
    row = standing[-1]
    if turn_id is not None and turn_id != row["id"]:
        raise SlmchatError(
            f"only the last turn of this conversation can be compared, not turn {turn_id}",
            "ask the question again to compare its answers",
        )
    if row["status"] == "failed":
        raise SlmchatError("the last turn failed: there is no answer to compare", "ask again, then compare")
    events = []
    for data in session.store.events(row["id"]):
        try:
            events.append(event_from_dict(data))
        except (ValueError, TypeError, KeyError):
            continue  # stored by another version of slmchat
    fallback = (row["tier"] or "small", row["model"] or "")
    return _side(row["id"], row["answer"], events, fallback), row["user_text"]


def _check_tier(session: Session, tier: Tier) -> None:
    if session.model_name(tier) is None:
        raise SlmchatError(f"there is no {tier} tier to compare with", f"set [{tier}] model in the config file")
    if tier == "large" and (blocked := session._budget_block()):
        raise SlmchatError(f"the large tier cannot run now: {blocked}", "raise the cap in [routing], or compare later")


def _side(turn_id: int, answer: str, events: Sequence[Event], fallback: tuple[str, str] = ("small", "")) -> Side:
    """Who wrote a turn's answer, from its events: the routed tier, or large after an escalation."""
    tier, model = fallback
    stats: TurnStats | None = None
    for event in events:
        if isinstance(event, RouteDecided):
            tier, model = event.decision.tier, event.decision.model
        elif isinstance(event, Escalated) and event.to_tier == "large" and event.scope == "answer":
            tier, model = "large", event.model
        elif isinstance(event, TurnDone):
            stats = event.stats
    if stats is not None and stats.answered_by:
        tier = stats.answered_by
    return Side(turn_id, _tier(tier), model, answer, stats)


def _tier(value: Any) -> Tier:
    return "large" if value == "large" else "small"
