"""Deciding which tier runs a turn: a score from observable factors and a learned model, a
calibrated threshold, and the user's override on top.

``Route``, ``RouteDecision`` and ``Tier`` are plain data and load with the package; the
``Router`` (numpy, the shipped weights) and ``RouteContext`` load on first use (PEP 562), so a
face that only shows decisions does not pay for the router.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slmchat.routing.decision import Route, RouteDecision, Tier

if TYPE_CHECKING:
    from slmchat.routing.factors import RouteContext
    from slmchat.routing.policy import Router

_HOMES = {"RouteContext": "slmchat.routing.factors", "Router": "slmchat.routing.policy"}

__all__ = ["Route", "RouteContext", "RouteDecision", "Router", "Tier"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'slmchat.routing' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_HOMES[name]), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
