"""One turn's working state inside the engine, and the figures measured from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmchat.accounting.pricing import TurnCost
from slmchat.engine.events import Latency, TurnStats, TurnStatus
from slmchat.infra.backends.base import StreamEnd, Usage
from slmchat.routing import RouteDecision, Tier

if TYPE_CHECKING:  # only annotations: numpy loads when the router or the embedder first needs it
    import numpy as np


@dataclass(frozen=True)
class CallRecord:
    """One model call of a turn (a turn has two when a step was escalated)."""

    tier: Tier
    model: str
    usage: Usage
    model_s: float  # wall time inside the backend's stream


@dataclass
class TurnState:
    """What one turn has gathered so far; the engine's working state, never seen by faces."""

    text: str
    decision: RouteDecision
    started: float
    load_s: float = 0.0
    first_token_at: float | None = None
    finished_at: float = 0.0
    end: StreamEnd | None = None
    dropped: int = 0
    saved: bool = False
    embedding: np.ndarray | None = None
    looping: str | None = None  # the repeating chunk, when the small model went into a loop
    ran_on: Tier | None = None  # the tier whose answer stands (the routed one, or large after escalating)
    escalation: str | None = None
    tool_run: Any = None  # the agent loop's AgentRun, when the turn offered tools
    system: str = ""  # the system prompt of this turn (the config's; the same every turn)
    remember: bool = False  # an ok answer is remembered in the background (its row marked memory_pending)
    question: str = ""  # the user message as sent: recalled memories, then ``text`` (``text`` until recall)
    memory: dict[str, Any] | None = None  # what recall did (Recalled.to_dict())
    compaction: Any = None  # the Compacted event, when the history had to be compacted
    shortened: int = 0
    turn_id: int | None = None  # the stored row of the question, written as the turn began
    store_error: Any = None  # the StorageError that kept the turn (or its question) from being stored

    answer: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    in_flight: tuple[Tier, float] | None = None  # the model call under way: its tier and start time

    def __post_init__(self) -> None:
        self.question = self.question or self.text

    def close_call(self, model: str) -> None:
        """Record the model call in flight with what its stream reported."""
        assert self.in_flight is not None
        tier, call_started = self.in_flight
        usage = self.end.usage if self.end else Usage(None, None, estimated=True)
        self.calls.append(CallRecord(tier, model, usage, time.perf_counter() - call_started))
        self.in_flight = None

    def restart(self, tier: Tier) -> None:
        """Drop the failed attempt's answer; the next call's answer stands."""
        self.answer, self.first_token_at, self.end, self.looping = [], None, None, None
        self.ran_on = tier

    @property
    def text_so_far(self) -> str:
        return "".join(self.answer)

    def stats(
        self,
        status: TurnStatus,
        conversation_id: str,
        count_tokens: Callable[[str], tuple[int, bool]] | None,
        cost: TurnCost | None = None,
    ) -> TurnStats:
        """The turn's figures. Waiting for the model to load is reported apart from ttft.

        ``count_tokens`` fills in (as an estimate) a completion count the backend did not report.
        """
        assert self.end is not None
        usage = self.end.usage
        answer = self.text_so_far
        if usage.completion_tokens is None and answer:
            count = count_tokens(answer)[0] if count_tokens else None
            usage = Usage(usage.prompt_tokens, count, estimated=True)
        first = self.first_token_at
        decode_s = self.finished_at - first if first is not None else 0.0
        tps = usage.completion_tokens / decode_s if usage.completion_tokens and decode_s > 0 else None
        total_s = self.finished_at - self.started
        model_s = sum(call.model_s for call in self.calls)
        run = self.tool_run
        tool_s = run.tool_s if run is not None else 0.0
        latency = Latency(
            ttft_ms=(first - self.started - self.load_s) * 1000 if first is not None else None,
            total_ms=total_s * 1000,
            tokens_per_s=tps,
            load_ms=self.load_s * 1000,
            model_ms=model_s * 1000,
            engine_ms=max(0.0, total_s - model_s - self.load_s - tool_s) * 1000,
            tool_ms=tool_s * 1000,
        )
        return TurnStats(
            conversation_id=conversation_id,
            turn_id=None,
            answer=answer,
            status=status,
            route=self.decision,
            usage=usage,
            latency=latency,
            finish_reason=self.end.finish_reason,
            history_dropped=self.dropped,
            escalation=self.escalation,
            answered_by=self.ran_on or self.decision.tier,
            cost=cost,
            tools=run.summary() if run is not None else None,
            history_shortened=self.shortened,
            memory=self.memory,
        )
