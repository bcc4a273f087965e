"""What memory stores and returns: long-term facts and past exchanges, with where they came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from slmchat.infra.errors import SlmchatError

Kind = Literal["fact", "exchange"]


class MemoryUnavailable(SlmchatError):
    """Memory cannot be used (corrupt or locked database, unreachable server); the chat goes on without it."""


@dataclass(frozen=True)
class MemoryItem:
    """One stored memory. ``text`` is what is embedded and recalled.

    A fact is one short sentence about the user or their work ("prefers metric units"). An
    exchange is a past question and answer. Timestamps are Unix seconds.
    """

    id: str
    kind: Kind
    text: str
    created_at: float
    updated_at: float
    conversation_id: str | None = None
    turn_id: int | None = None  # the turn it came from (slmchat's history database)
    source: str = "extracted"  # extracted | user (/remember) | imported
    confidence: float | None = None  # facts: the extractor's confidence, 0 to 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metadata(self) -> dict[str, Any]:
        """Chroma metadata (no None values: Chroma refuses them)."""
        data = {k: v for k, v in self.to_dict().items() if k not in ("id", "text") and v is not None}
        return data

    @classmethod
    def from_chroma(cls, id: str, text: str, metadata: dict[str, Any]) -> MemoryItem:
        return cls(
            id=id,
            kind=metadata.get("kind", "fact"),
            text=text,
            created_at=float(metadata.get("created_at", 0.0)),
            updated_at=float(metadata.get("updated_at", metadata.get("created_at", 0.0))),
            conversation_id=metadata.get("conversation_id"),
            turn_id=metadata.get("turn_id"),
            source=metadata.get("source", "extracted"),
            confidence=metadata.get("confidence"),
        )


@dataclass(frozen=True)
class Hit:
    """A recalled item: cosine ``similarity`` to the query, and the ``score`` with recency added."""

    item: MemoryItem
    similarity: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.item.to_dict(), "similarity": round(self.similarity, 4), "score": round(self.score, 4)}


@dataclass(frozen=True)
class FactChange:
    """What storing a new fact did: ``add``, ``update`` (``replaced`` is the old text), ``delete`` or ``none``."""

    action: Literal["add", "update", "delete", "none"]
    fact: str
    item_id: str | None = None
    replaced: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recalled:
    """What recall put in the prompt for one turn (reported in ``TurnStats.memory``)."""

    hits: list[Hit] = field(default_factory=list)
    tokens: int = 0
    ms: float = 0.0
    note: str | None = None  # why memory was not used, when it was not

    def to_dict(self) -> dict[str, Any]:
        return {
            "recalled": [{"id": h.item.id, "kind": h.item.kind, "text": h.item.text, "score": round(h.score, 3)}
                         for h in self.hits],
            "tokens": self.tokens,
            "ms": round(self.ms, 2),
            "note": self.note,
        }  # fmt: skip
