"""slmchat: a small local model that escalates to a large one only when needed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slmchat")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"

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
from slmchat.routing import Route, RouteDecision

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
