"""slmchat: a small local model that escalates to a large one only when needed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slmchat")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"

from slmchat.config import Config, TierConfig, load_config
from slmchat.events import RouteDecided, Token, TurnDone, TurnFailed
from slmchat.routing import Route, RouteDecision
from slmchat.session import Session

__all__ = [
    "Config",
    "Route",
    "RouteDecided",
    "RouteDecision",
    "Session",
    "TierConfig",
    "Token",
    "TurnDone",
    "TurnFailed",
    "__version__",
    "load_config",
]
