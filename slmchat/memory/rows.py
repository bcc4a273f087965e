"""Checking memory rows: kinds, texts, and whole imports (nothing is written unless every row is good)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from slmchat.infra.errors import SlmchatError
from slmchat.memory.types import Kind, MemoryItem

KINDS: tuple[Kind, ...] = ("fact", "exchange")
MAX_TEXT_CHARS = 2000


def check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise SlmchatError(f"a memory's kind is fact or exchange, not {kind!r}")


def check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise SlmchatError("a memory's text must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise SlmchatError(f"a memory's text is at most {MAX_TEXT_CHARS} characters, not {len(text)}")
    return text


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_rows(rows: Sequence[dict[str, Any]]) -> list[MemoryItem]:
    if not isinstance(rows, list | tuple):
        raise SlmchatError("memories to import must be a list of objects", "give what export wrote")
    items: list[MemoryItem] = []
    seen: dict[str, int] = {}
    now = round(time.time(), 3)
    for index, row in enumerate(rows):

        def bad(problem: str, index: int = index) -> SlmchatError:
            return SlmchatError(f"memory row {index}: {problem}", "nothing was imported; fix the row and retry")

        if not isinstance(row, dict):
            raise bad(f"expected an object, got {type(row).__name__}")
        kind = row.get("kind")
        if kind not in KINDS:
            raise bad(f"kind must be fact or exchange, not {kind!r}")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad("text is missing or empty")
        if len(text) > MAX_TEXT_CHARS:
            raise bad(f"text is {len(text)} characters, more than {MAX_TEXT_CHARS}")
        id = row.get("id")
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str) or not id.strip():
            raise bad(f"id must be a non-empty string, not {id!r}")
        if id in seen:
            raise bad(f"id {id} is also in row {seen[id]}")
        seen[id] = index
        created = row.get("created_at", now)
        if not _number(created):
            raise bad(f"created_at must be a number of seconds, not {created!r}")
        updated = row.get("updated_at", created)
        if not _number(updated):
            raise bad(f"updated_at must be a number of seconds, not {updated!r}")
        conversation_id = row.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise bad(f"conversation_id must be a string, not {conversation_id!r}")
        turn_id = row.get("turn_id")
        if turn_id is not None and (not isinstance(turn_id, int) or isinstance(turn_id, bool)):
            raise bad(f"turn_id must be an integer, not {turn_id!r}")
        source = row.get("source") or "imported"
        if not isinstance(source, str):
            raise bad(f"source must be a string, not {source!r}")
        confidence = row.get("confidence")
        if confidence is not None and (not _number(confidence) or not 0 <= confidence <= 1):
            raise bad(f"confidence must be a number from 0 to 1, not {confidence!r}")
        items.append(
            MemoryItem(
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
        )
    return items
