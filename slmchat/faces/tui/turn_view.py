"""What the app knows about one turn, built from its events; the inspector draws it.

Pure data, no widgets: the same ``TurnView`` is filled live from a running turn's events and,
for an earlier turn, from the events stored with it, so the inspector shows both the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slmchat.engine.destination import Destination
from slmchat.engine.events import (
    AnswerReset,
    Compacted,
    Escalated,
    Event,
    MemoryFailed,
    MemoryRecalled,
    MemorySaved,
    Recovery,
    RouteDecided,
    Token,
    ToolCall,
    ToolResult,
    TurnDone,
    TurnFailed,
    TurnStats,
)
from slmchat.routing import RouteDecision


@dataclass
class ToolStep:
    """A tool call and, once it ran, its result."""

    call: ToolCall
    result: ToolResult | None = None


@dataclass
class TurnView:
    """One turn as the app shows it: the question, the answer so far, and every figure known yet."""

    text: str
    decision: RouteDecision | None = None
    destination: Destination | None = None
    answer: str = ""
    replaced: list[str] = field(default_factory=list)  # answers set aside by an escalation
    tokens: int = 0  # tokens streamed so far (live; the stats have the counted figure)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    recalled: MemoryRecalled | None = None
    compacted: Compacted | None = None
    escalations: list[Escalated] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    tools: list[ToolStep] = field(default_factory=list)
    stats: TurnStats | None = None
    failure: TurnFailed | None = None
    saved: MemorySaved | None = None
    memory_error: str | None = None

    @property
    def turn_id(self) -> int | None:
        if self.stats is not None:
            return self.stats.turn_id
        return self.failure.turn_id if self.failure is not None else None

    @property
    def finished(self) -> bool:
        return self.stats is not None or self.failure is not None

    @property
    def tier(self) -> str | None:
        """The tier whose answer stands (the routed one until an escalation says otherwise)."""
        if self.stats is not None and self.stats.answered_by:
            return self.stats.answered_by
        if self.escalations and self.escalations[-1].to_tier == "large":
            return "large"
        return self.decision.tier if self.decision else None

    def live_rate(self) -> float | None:
        """Tokens per second since the first token, while the turn streams."""
        if self.first_token_at is None or self.last_token_at is None or self.tokens < 2:
            return None
        elapsed = self.last_token_at - self.first_token_at
        return (self.tokens - 1) / elapsed if elapsed > 0 else None

    def apply(self, event: Event) -> None:
        """Take one event of this turn (or a memory event about it) into the view."""
        if isinstance(event, Token):
            now = time.perf_counter()
            self.first_token_at = self.first_token_at or now
            self.last_token_at = now
            self.tokens += 1
            self.answer += event.text
        elif isinstance(event, RouteDecided):
            self.decision = event.decision
        elif isinstance(event, AnswerReset):
            if event.reason == "escalated" and self.answer:
                self.replaced.append(self.answer)
            self.answer = event.text
        elif isinstance(event, Escalated):
            self.escalations.append(event)
        elif isinstance(event, MemoryRecalled):
            self.recalled = event
        elif isinstance(event, Compacted):
            self.compacted = event
        elif isinstance(event, Recovery):
            self.recoveries.append(event)
        elif isinstance(event, ToolCall):
            self.tools.append(ToolStep(event))
        elif isinstance(event, ToolResult):
            open_steps = [step for step in self.tools if step.result is None and step.call.name == event.name]
            if open_steps:
                open_steps[0].result = event
        elif isinstance(event, TurnDone):
            self.stats = event.stats
            self.answer = event.stats.answer
        elif isinstance(event, TurnFailed):
            self.failure = event
        elif isinstance(event, MemorySaved):
            self.saved = event
        elif isinstance(event, MemoryFailed):
            self.memory_error = event.error


@dataclass(frozen=True)
class TurnFigures:
    """One finished turn in the session chart."""

    turn_id: int | None
    tier: str
    total_ms: float
    usd: float | None
    saved_usd: float | None


@dataclass
class SessionTotals:
    """The session so far: each finished turn's tier, time and cost, summed honestly."""

    turns: list[TurnFigures] = field(default_factory=list)

    def add(self, stats: TurnStats) -> None:
        cost = stats.cost
        self.turns.append(
            TurnFigures(
                stats.turn_id,
                stats.answered_by or stats.route.tier,
                stats.latency.total_ms,
                cost.usd if cost else None,
                cost.saved_usd if cost else None,
            )
        )

    @property
    def usd(self) -> float:
        """The known part of the session's cost (``unknown`` counts the turns without a price)."""
        return sum(t.usd for t in self.turns if t.usd is not None)

    @property
    def unknown(self) -> int:
        return sum(1 for t in self.turns if t.usd is None)

    @property
    def saved_usd(self) -> float:
        return sum(t.saved_usd for t in self.turns if t.saved_usd is not None)

    def clear(self) -> None:
        self.turns.clear()
