"""The event saying a small-tier answer (or one step of it) failed and where it is redone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slmchat.infra.backends.base import Usage
from slmchat.infra.wire import Event


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
