"""slmchat: a small local model that escalates to a large one only when needed.

The names below load on first use (PEP 562), so ``import slmchat`` and ``slmchat.__version__``
stay cheap: importing any submodule (the CLI, the terminal app) no longer builds the Session,
the pydantic config and numpy on the way. ``from slmchat import Session, Token`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmchat.engine.events import (
        AnswerReset,
        AnyEvent,
        ApprovalRequested,
        Compacted,
        Escalated,
        Event,
        Latency,
        MemoryFailed,
        MemoryRecalled,
        MemorySaved,
        ModelFailed,
        ModelLoading,
        ModelReady,
        Recovery,
        RouteDecided,
        SessionEvent,
        Token,
        ToolCall,
        ToolResult,
        TurnDone,
        TurnEvent,
        TurnFailed,
        TurnStats,
        event_from_dict,
    )
    from slmchat.engine.session import Session
    from slmchat.infra.config import Config, TierConfig, load_config
    from slmchat.infra.errors import SlmchatError
    from slmchat.routing.decision import Route, RouteDecision

    __version__: str

__all__ = [
    "AnswerReset",
    "AnyEvent",
    "ApprovalRequested",
    "Compacted",
    "Config",
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
    "Route",
    "RouteDecided",
    "RouteDecision",
    "Session",
    "SessionEvent",
    "SlmchatError",
    "TierConfig",
    "Token",
    "ToolCall",
    "ToolResult",
    "TurnDone",
    "TurnEvent",
    "TurnFailed",
    "TurnStats",
    "__version__",
    "event_from_dict",
    "load_config",
]

#: the module that defines each public name that is not an event (events: slmchat.engine.events)
_HOMES = {
    "Session": "slmchat.engine.session",
    "Config": "slmchat.infra.config",
    "TierConfig": "slmchat.infra.config",
    "load_config": "slmchat.infra.config",
    "SlmchatError": "slmchat.infra.errors",
    "Route": "slmchat.routing.decision",
    "RouteDecision": "slmchat.routing.decision",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slmchat")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0+source"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext slmchat``: the ``%%slm`` and ``%slm`` magics (IPython is imported only then)."""
    from slmchat.faces.notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from slmchat.faces.notebook import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in __all__:
        value = getattr(importlib.import_module(_HOMES.get(name, "slmchat.engine.events")), name)
    else:
        raise AttributeError(f"module 'slmchat' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
