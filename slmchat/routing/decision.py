"""The typed result of routing, carried by the ``RouteDecided`` event and stored with the turn."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

Tier = Literal["small", "large"]


class Route(StrEnum):
    """What the user asked for: let the router decide, or force a tier."""

    AUTO = "auto"
    SMALL = "small"
    LARGE = "large"


@dataclass(frozen=True)
class RouteDecision:
    """Where a turn runs and why.

    ``wanted`` is the tier the policy chose; ``tier`` is where the turn actually runs
    (they differ when the large tier is wanted but not configured).
    """

    tier: Tier
    wanted: Tier
    model: str
    reason: str
    score: float | None = None
    threshold: float | None = None
    factors: dict[str, float] = field(default_factory=dict)
    override: Route | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["override"] = self.override.value if self.override else None
        return data
