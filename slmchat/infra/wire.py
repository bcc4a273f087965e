"""Events on the wire: the base class every event derives from, and rebuilding one from its dict.

Each event type registers its ``kind`` when its class is defined, so ``event_from_dict`` can
rebuild any stored or transmitted event, nested dataclasses included, with no per-type code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from functools import cache
from typing import Any, ClassVar

#: every event class by its ``kind``, filled as the classes are defined
EVENT_TYPES: dict[str, type[Event]] = {}


@dataclasses.dataclass(frozen=True)
class Event:
    """Base of all events; ``kind`` names the type on the wire."""

    kind: ClassVar[str] = "event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind") and cls.kind != "event":
            EVENT_TYPES[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        for item in dataclasses.fields(self):
            data[item.name] = encode(getattr(self, item.name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event from ``to_dict`` output (of this class, or any event when called on ``Event``)."""
        return event_from_dict(data) if cls is Event else decode(cls, data)


@dataclasses.dataclass(frozen=True)
class Token(Event):
    """A piece of answer text as it streams (from a plain answer or the tool loop's answer)."""

    kind: ClassVar[str] = "token"
    text: str


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a dict describes; raises ``ValueError`` for an unknown or malformed one."""
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"not an event: kind {kind!r}")
    return decode(cls, data)


def encode(value: Any) -> Any:
    """A JSON-ready copy of ``value``: dataclasses through their ``to_dict`` (or fields), enums by value."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    return value


def decode(tp: Any, value: Any) -> Any:
    """``value`` (from JSON) as an instance of the annotated type ``tp``."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return decode(options[0], value) if len(options) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        init = {
            f.name: decode(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.init and f.name in value
        }
        return tp(**init)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(tp) or (Any,)
        return [decode(item, v) for v in value]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
