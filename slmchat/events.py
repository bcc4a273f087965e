"""Events a turn emits. The same objects feed every face, ``ask --json`` and the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from slmchat.accounting.pricing import TurnCost
from slmchat.backends.base import Usage
from slmchat.routing.decision import RouteDecision

TurnStatus = Literal["ok", "interrupted", "failed"]


@dataclass(frozen=True)
class Latency:
    """Wall-clock figures of one turn, measured by the engine the same way for every backend.

    ``ttft_ms`` runs from the start of the turn to the first token, less ``load_ms``, the time
    spent waiting for the model to load (non-zero only on a tier's first turn); ``total_ms``
    includes everything. ``tokens_per_s`` is decode speed: completion tokens over the time
    after the first token.
    """

    ttft_ms: float | None
    total_ms: float
    tokens_per_s: float | None
    load_ms: float = 0.0
    model_ms: float = 0.0  # inside the models' streams (all calls of the turn)
    engine_ms: float = 0.0  # the rest of the turn until its last token: routing, prompt building
    tool_ms: float = 0.0  # running tools (all calls and retries of the turn)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TurnStats:
    """Everything measured about one finished (or interrupted) turn."""

    conversation_id: str
    turn_id: int | None
    answer: str
    status: TurnStatus
    route: RouteDecision
    usage: Usage
    latency: Latency
    finish_reason: str
    history_dropped: int = 0
    escalation: str | None = None  # why the small tier's answer was redone (or would have been)
    answered_by: str = ""  # the tier whose answer stands: the routed one, or large after an escalation
    cost: TurnCost | None = None  # what the turn's model calls cost, and the large-tier equivalent
    tools: dict[str, Any] | None = None  # tool calls, recoveries and why the agent loop ended
    history_shortened: int = 0  # older answers cut to fit the window
    memory: dict[str, Any] | None = None  # what recall put in the prompt (or why memory was off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "turn_id": self.turn_id,
            "answer": self.answer,
            "status": self.status,
            "route": self.route.to_dict(),
            "usage": self.usage.to_dict(),
            "latency": self.latency.to_dict(),
            "finish_reason": self.finish_reason,
            "history_dropped": self.history_dropped,
            "escalation": self.escalation,
            "answered_by": self.answered_by,
            "cost": self.cost.to_dict() if self.cost else None,
            "tools": self.tools,
            "history_shortened": self.history_shortened,
            "memory": self.memory,
        }


@dataclass(frozen=True)
class Event:
    """Base of all events; ``kind`` names the type on the wire."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data


@dataclass(frozen=True)
class RouteDecided(Event):
    kind: ClassVar[str] = "route_decided"
    decision: RouteDecision


@dataclass(frozen=True)
class Token(Event):
    kind: ClassVar[str] = "token"
    text: str


@dataclass(frozen=True)
class Escalated(Event):
    """A failure signal during the small tier's answer; that step is redone on ``to_tier``.

    ``to_tier`` is "small" when no large tier is configured: the signal is reported, nothing redone.
    ``usage`` is what the abandoned attempt used.
    """

    kind: ClassVar[str] = "escalated"
    reason: str
    from_tier: str
    to_tier: str
    model: str
    usage: Usage
    scope: str = "answer"  # "step": one step of a tool-using turn, after which the small tier resumes

    @property
    def note(self) -> str:
        """The line faces show: why, and what happens to the answer (or the step)."""
        if self.scope == "step":
            target = f"redone on the large tier ({self.model})" if self.to_tier == "large" else "not redone"
            return f"[{self.reason}: this step {target}]"
        target = f"redone on the large tier ({self.model})" if self.to_tier == "large" else "kept"
        return f"[{self.reason}: answer {target}]"


@dataclass(frozen=True)
class ToolCall(Event):
    """The model called a tool; ``approved`` is the user's answer for tools that need approval."""

    kind: ClassVar[str] = "tool_call"
    name: str
    arguments: dict[str, Any]
    step: int
    tier: str
    requires_approval: bool = False
    approved: bool | None = None


@dataclass(frozen=True)
class ToolResult(Event):
    """What a tool returned (``ok``) or why it failed; ``ms`` is its run time over all attempts."""

    kind: ClassVar[str] = "tool_result"
    name: str
    ok: bool
    result: str
    ms: float
    attempts: int = 1


@dataclass(frozen=True)
class Recovery(Event):
    """A recovery template was applied: ``template`` names it, ``message`` is what the model was told."""

    kind: ClassVar[str] = "recovery"
    template: str
    message: str
    step: int
    action: str


@dataclass(frozen=True)
class Compacted(Event):
    """The history did not fit: ``shortened`` older answers were cut and ``dropped`` messages left out."""

    kind: ClassVar[str] = "compacted"
    shortened: int
    dropped: int
    tokens: int  # what the window used after compacting

    @property
    def note(self) -> str:
        parts = []
        if self.shortened:
            parts.append(f"{self.shortened} older answer{'s' if self.shortened != 1 else ''} shortened")
        if self.dropped:
            parts.append(f"{self.dropped // 2 or 1} oldest exchange{'s' if self.dropped > 2 else ''} left out")
        return f"[history compacted to fit the model: {', '.join(parts)}]"


@dataclass(frozen=True)
class MemoryRecalled(Event):
    """Facts and past exchanges put in the prompt for this turn (``recalled`` lists them)."""

    kind: ClassVar[str] = "memory_recalled"
    recalled: list[dict[str, Any]]
    tokens: int
    ms: float


@dataclass(frozen=True)
class TurnDone(Event):
    kind: ClassVar[str] = "turn_done"
    stats: TurnStats


@dataclass(frozen=True)
class TurnFailed(Event):
    """The turn could not finish; ``partial`` is what had been streamed (kept and stored)."""

    kind: ClassVar[str] = "turn_failed"
    error: str
    hint: str | None = None
    partial: str = ""
    conversation_id: str = ""
    turn_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
