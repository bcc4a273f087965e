"""Every event the engine emits. The same objects feed every face, ``ask --json`` and the store.

Turn events come from ``Session.turn`` (and ``stream``), in the order things happened; what is
stored with a turn equals what was yielded, so ``event_from_dict`` rebuilds it exactly. Session
events (models loading, background memory writes) go to ``Session.events()`` subscribers, and
into the running turn's stream when they happen during one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from slmchat.accounting.pricing import TurnCost
from slmchat.infra.backends.base import Usage
from slmchat.infra.wire import EVENT_TYPES, Event, Token, decode, event_from_dict
from slmchat.routing.decision import RouteDecision
from slmchat.routing.escalation import Escalated
from slmchat.tools.events import ApprovalRequested, Recovery, ToolCall, ToolResult

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnStats:
        return decode(cls, data)

    def _repr_markdown_(self) -> str:
        """In a notebook, ``session.ask(...)`` shows the answer and the footer a ``%%slm`` cell shows."""
        from html import escape

        from slmchat.engine.transcript import footer_line

        return f"{self.answer}\n\n<sub>{escape(footer_line(self))}</sub>"


@dataclass(frozen=True)
class RouteDecided(Event):
    """Where the turn runs and why; always the first event of a turn."""

    kind: ClassVar[str] = "route_decided"
    decision: RouteDecision


@dataclass(frozen=True)
class AnswerReset(Event):
    """The text streamed so far is replaced: the tokens that follow start the answer again.

    ``reason`` is "escalated" (a failed small-tier answer is redone on the large tier) or
    "tool_answer" (the tool loop settled on ``text``, which replaces what streamed).
    ``text`` is the new answer so far.
    """

    kind: ClassVar[str] = "answer_reset"
    reason: str
    text: str = ""


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
    """The turn finished (or was interrupted); ``stats`` has every figure, the turn id included."""

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


# -- session events: not part of one turn's record ------------------------------------------


@dataclass(frozen=True)
class ModelLoading(Event):
    """A tier's model started loading (on the first turn that needs it, or ``start_loading``)."""

    kind: ClassVar[str] = "model_loading"
    tier: str
    model: str


@dataclass(frozen=True)
class ModelReady(Event):
    """A tier's model is loaded; ``load_ms`` is how long it took."""

    kind: ClassVar[str] = "model_ready"
    tier: str
    model: str
    load_ms: float


@dataclass(frozen=True)
class ModelFailed(Event):
    """A tier's model could not load; the next turn that needs it tries again."""

    kind: ClassVar[str] = "model_failed"
    tier: str
    model: str
    error: str
    hint: str | None = None


@dataclass(frozen=True)
class MemorySaved(Event):
    """A turn's background memory write finished: the exchange stored, and these fact changes."""

    kind: ClassVar[str] = "memory_saved"
    conversation_id: str
    turn_id: int
    changes: list[dict[str, Any]]
    ms: float


@dataclass(frozen=True)
class MemoryFailed(Event):
    """A turn's background memory write failed; the answer and the history are kept."""

    kind: ClassVar[str] = "memory_failed"
    conversation_id: str
    turn_id: int
    error: str


TurnEvent = (
    RouteDecided | MemoryRecalled | Compacted | Token | AnswerReset | ToolCall | ToolResult | Recovery | Escalated
    | ApprovalRequested | TurnDone | TurnFailed
)  # fmt: skip
SessionEvent = ModelLoading | ModelReady | ModelFailed | MemorySaved | MemoryFailed
AnyEvent = TurnEvent | SessionEvent
#: session events: published to ``Session.events()``, never stored with a turn
SESSION_EVENTS = (ModelLoading, ModelReady, ModelFailed, MemorySaved, MemoryFailed)

__all__ = [
    "EVENT_TYPES",
    "SESSION_EVENTS",
    "AnswerReset",
    "AnyEvent",
    "ApprovalRequested",
    "Compacted",
    "Escalated",
    "Event",
    "Latency",
    "MemoryFailed",
    "MemoryRecalled",
    "MemorySaved",
    "ModelFailed",
    "ModelLoading",
    "ModelReady",
    "Recovery",
    "RouteDecided",
    "SessionEvent",
    "Token",
    "ToolCall",
    "ToolResult",
    "TurnDone",
    "TurnEvent",
    "TurnFailed",
    "TurnStats",
    "TurnStatus",
    "event_from_dict",
]
