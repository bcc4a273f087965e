"""The events a tool-using answer emits: calls, results, recoveries and approval requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from slmchat.infra.wire import Event


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
class ApprovalRequested(Event):
    """A tool that touches the outside world wants to run; the turn waits for an answer.

    Any face answers with ``session.approve(request_id, allowed)`` (from any thread); a
    cancelled turn counts as no.
    """

    kind: ClassVar[str] = "approval_requested"
    request_id: str
    name: str
    arguments: dict[str, Any]
    step: int
    tier: str
