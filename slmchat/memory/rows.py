"""Checking memory rows: kinds, texts, and whole imports (nothing is written unless every row is good).

Ids that slmchat makes itself are stable where that prevents doubles: a fact's id comes from its
normalised text (two processes storing the same fact write one record), and an imported row
without an id gets one from its kind, text and place in the file (importing the file again
replaces the row instead of adding it twice).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from slmchat.infra.errors import SlmchatError
from slmchat.memory.types import Kind, MemoryItem

KINDS: tuple[Kind, ...] = ("fact", "exchange")
MAX_TEXT_CHARS = 2000
_TRAILING = re.compile(r"[\s.!;]+$")


def check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise SlmchatError(f"a memory's kind is fact or exchange, not {kind!r}")


def check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise SlmchatError("a memory's text must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise SlmchatError(f"a memory's text is at most {MAX_TEXT_CHARS} characters, not {len(text)}")
    return text


def fact_id(text: str) -> str:
    """The id of a fact: 32 hex digits of its text, case, spacing and final full stop ignored."""
    normal = _TRAILING.sub("", " ".join(text.split()).casefold())
    return _digest("fact", normal)


def exchange_id(conversation_id: str | None, turn_id: int | None) -> str | None:
    """The id of a stored exchange from its turn (None without one): storing it twice keeps one copy.

    Memory work runs in the background and may run again after an interruption (or in another
    process that finds it pending), so writing the same turn's exchange must not add a duplicate.
    """
    if conversation_id is None or turn_id is None:
        return None
    return _digest("exchange", conversation_id, str(turn_id))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_row(row: object, where: str, index: int, now: float) -> MemoryItem:
    """One exported row as a MemoryItem; SlmchatError naming ``where`` ("memory row 3") when it is bad.

    A row without an id gets one from its kind, text and ``index``; without timestamps it gets ``now``.
    """

    def bad(problem: str) -> SlmchatError:
        return SlmchatError(f"{where}: {problem}", "nothing was imported; fix the row and retry")

    if not isinstance(row, dict):
        raise bad(f"expected an object, got {type(row).__name__}")
    kind = row.get("kind")
    if kind not in KINDS:
        raise bad(f"kind must be fact or exchange, not {_short(kind)}")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad("text is missing or empty")
    if len(text) > MAX_TEXT_CHARS:
        raise bad(f"text is {len(text)} characters, more than {MAX_TEXT_CHARS}")
    if not _encodable(text):
        raise bad("text holds a lone surrogate escape (\\ud800 to \\udfff), which is no character")
    id = row.get("id")
    if id is None:
        id = _digest("row", kind, text, str(index))
    elif not isinstance(id, str) or not id.strip() or not _encodable(id):
        raise bad(f"id must be a non-empty string, not {_short(id)}")
    created = row.get("created_at", now)
    if not _number(created):
        raise bad(f"created_at must be a number of seconds, not {_short(created)}")
    updated = row.get("updated_at", created)
    if not _number(updated):
        raise bad(f"updated_at must be a number of seconds, not {_short(updated)}")
    conversation_id = row.get("conversation_id")
    if conversation_id is not None and (not isinstance(conversation_id, str) or not _encodable(conversation_id)):
        raise bad(f"conversation_id must be a string, not {_short(conversation_id)}")
    turn_id = row.get("turn_id")
    if turn_id is not None and (not isinstance(turn_id, int) or isinstance(turn_id, bool)):
        raise bad(f"turn_id must be an integer, not {_short(turn_id)}")
    source = row.get("source") or "imported"
    if not isinstance(source, str) or not _encodable(source):
        raise bad(f"source must be a string, not {_short(source)}")
    confidence = row.get("confidence")
    if confidence is not None and (not _number(confidence) or not 0 <= confidence <= 1):
        raise bad(f"confidence must be a number from 0 to 1, not {_short(confidence)}")
    return MemoryItem(
        id=id,
        kind=kind,
        text=text,
        created_at=float(created),
        updated_at=float(updated),
        conversation_id=conversation_id,
        turn_id=turn_id,
        source=source,
        confidence=None if confidence is None else float(confidence),
    )


def _short(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class IdsSeen:
    """The ids of an import so far, to refuse a repeated one: a set of 16-byte digests, not the ids."""

    def __init__(self) -> None:
        self._rows: dict[bytes, str] = {}

    def add(self, id: str, where: str, label: str) -> None:
        """Note ``id`` (of the row at ``where``, called ``label`` by later rows); a repeat is SlmchatError."""
        key = hashlib.blake2b(id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        first = self._rows.get(key)
        if first is not None:
            shown = id if len(id) <= 60 else id[:59] + "…"
            raise SlmchatError(f"{where}: id {shown} is also in {first}", "nothing was imported; fix the row and retry")
        self._rows[key] = label

    def __len__(self) -> int:
        return len(self._rows)


def validate_rows(rows: Sequence[dict[str, Any]]) -> list[MemoryItem]:
    """Every row as a MemoryItem, or SlmchatError for the first bad one ("memory row 2: ...")."""
    if not isinstance(rows, list | tuple):
        raise SlmchatError("memories to import must be a list of objects", "give what export wrote")
    now = round(time.time(), 3)
    seen = IdsSeen()
    items = []
    for index, row in enumerate(rows):
        item = check_row(row, f"memory row {index}", index, now)
        seen.add(item.id, f"memory row {index}", f"row {index}")
        items.append(item)
    return items


#: metadata keys a record may lack; written as None so that an update removes an old value
_OPTIONAL_KEYS = ("conversation_id", "turn_id", "confidence")


def items_from_chroma(ids: Sequence[str], documents: Sequence[str | None] | None, metadatas: Any) -> list[MemoryItem]:
    """Items from the parallel lists Chroma returns."""
    documents = documents or [None] * len(ids)
    metadatas = metadatas or [None] * len(ids)
    return [
        MemoryItem.from_chroma(id, text or "", dict(metadata or {}))
        for id, text, metadata in zip(ids, documents, metadatas, strict=True)
    ]


def full_metadata(item: MemoryItem) -> dict[str, Any]:
    """Metadata that replaces a stored record's whole metadata (Chroma merges, None removes a key)."""
    return {**dict.fromkeys(_OPTIONAL_KEYS), **item.metadata()}
