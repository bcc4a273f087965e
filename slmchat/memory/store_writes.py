"""Writing many memories at once (``memory import``): a mixin of ``MemoryStore``.

Items keep their ids and timestamps; one stored exactly so already is not embedded again, so an
interrupted import run again skips what the first run wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from slmchat.memory.rows import KINDS, full_metadata, items_from_chroma, validate_rows
from slmchat.memory.types import MemoryItem

#: rows written per Chroma call by an import
IMPORT_BATCH = 128


class BulkWrites:
    """``import_items``, ``write_items`` and ``count_stored`` over the store's collections."""

    _collections: dict[str, Any]

    if TYPE_CHECKING:  # MemoryStore's

        def _operation(self, action: str) -> AbstractContextManager[None]: ...

    def import_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store exported rows, keeping their ids and timestamps (an existing id is replaced).

        Every row is checked first; one bad row raises SlmchatError naming it and nothing is written.
        For a file, ``slmchat.memory.importer`` does the same in bounded memory.
        """
        items = validate_rows(rows)
        for start in range(0, len(items), IMPORT_BATCH):
            self.write_items(items[start : start + IMPORT_BATCH])
        return len(items)

    def write_items(self, items: Sequence[MemoryItem]) -> int:
        """Write items as they are (ids, timestamps), replacing any with the same id; returns how many changed.

        An item stored exactly so already is left alone, not embedded again: running an interrupted
        import again skips what the first run wrote. An id stored under the other kind moves.
        """
        if not items:
            return 0
        changed = 0
        with self._operation("import memories"):
            stored = self._stored(items)
            for kind in KINDS:
                mine = [item for item in items if item.kind == kind and stored.get(item.id) != item]
                if not mine:
                    continue
                moved = [item.id for item in mine if item.id in stored and stored[item.id].kind != kind]
                if moved:
                    self._collections["exchange" if kind == "fact" else "fact"].delete(ids=moved)
                self._collections[kind].upsert(
                    ids=[item.id for item in mine],
                    documents=[item.text for item in mine],
                    metadatas=[full_metadata(item) for item in mine],
                )
                changed += len(mine)
        return changed

    def count_stored(self, items: Sequence[MemoryItem]) -> int:
        """How many of ``items`` are stored exactly so (after an import was cut short)."""
        with self._operation("read memories"):
            stored = self._stored(items)
        return sum(1 for item in items if stored.get(item.id) == item)

    def _stored(self, items: Sequence[MemoryItem]) -> dict[str, MemoryItem]:
        ids = list(dict.fromkeys(item.id for item in items))
        stored: dict[str, MemoryItem] = {}
        for collection in self._collections.values():
            found = collection.get(ids=ids, include=["documents", "metadatas"])
            found_items = items_from_chroma(found["ids"], found["documents"], found["metadatas"])
            stored.update((old.id, old) for old in found_items)
        return stored
