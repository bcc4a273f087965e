"""Importing a memory file: every row checked before any is written, in bounded memory, resumable.

Two passes over the file. The first checks every row (nothing is kept but a 16-byte digest of
each id, to refuse a repeated one) and counts them; one bad row stops the import before anything
is written. The second reads the rows again and writes them ``IMPORT_BATCH`` at a time.

Chroma has no transaction across batches, so an import stopped half way (Ctrl-C, a full disk) has
written the batches before it. It is resumable instead of all or nothing: rows keep their ids (a row
without one gets an id from its kind, text and place in the file), and a row already stored exactly
so is skipped, so running the same import again writes only the rest. ``written`` says how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from slmchat.memory.import_file import RowReader
from slmchat.memory.rows import IdsSeen, check_row

if TYPE_CHECKING:
    from slmchat.memory.store import MemoryStore
    from slmchat.memory.types import MemoryItem


@dataclass
class ImportReport:
    """What an import did: ``rows`` in the file, ``written`` now, ``unchanged`` (already stored so)."""

    rows: int
    written: int
    unchanged: int


class FileImport:
    """One import of a file. ``open_file`` opens the file afresh for each pass.

    After a failure or an interrupt, ``checked`` says whether the first pass finished and ``done``
    how many rows of the file are stored (written, or found already there), a batch cut short included.
    """

    def __init__(self, open_file: Callable[[], BinaryIO], name: str) -> None:
        self.store: MemoryStore | None = None
        self.open_file = open_file
        self.name = name
        self.rows = 0
        self.checked = False
        self.done = 0
        self.written = 0
        self._pending: list[MemoryItem] = []
        self._now = round(time.time(), 3)  # the same for both passes: the same ids and timestamps

    def check(self) -> int:
        """Check every row (SlmchatError names the first bad one and its line); the number of rows."""
        seen = IdsSeen()
        count = 0
        for line, item in self._items():
            seen.add(item.id, f"{self.name} line {line}", f"line {line}")
            count += 1
        self.rows, self.checked = count, True
        return count

    def write(self, store: MemoryStore, progress: Callable[[int], None] | None = None) -> ImportReport:
        """Write the checked rows to ``store`` in batches; ``progress(n)`` after each batch of ``n`` rows."""
        from slmchat.memory.store_writes import IMPORT_BATCH

        if not self.checked:
            self.check()
        self.store = store
        batch: list[MemoryItem] = []
        try:
            for _line, item in self._items():
                batch.append(item)
                if len(batch) >= IMPORT_BATCH:
                    self._write(batch, progress)
                    batch = []
            self._write(batch, progress)
        except BaseException:  # Ctrl-C or a failure: count what the batch cut short stored
            self._count_pending()
            raise
        return ImportReport(self.rows, self.written, self.done - self.written)

    def _count_pending(self) -> None:
        """Add the rows of an unfinished batch that reached the store to ``done`` (a batch is one call per kind)."""
        pending, self._pending = self._pending, []
        if not pending or self.store is None:
            return
        try:
            self.done += self.store.count_stored(pending)
        except BaseException:  # the store may be unusable after what stopped the import
            pass

    def _write(self, batch: list[MemoryItem], progress: Callable[[int], None] | None) -> None:
        if not batch:
            return
        assert self.store is not None
        self._pending = batch
        self.written += self.store.write_items(batch)
        self._pending = []
        self.done += len(batch)
        if progress is not None:
            progress(len(batch))

    def _items(self) -> Iterator[tuple[int, MemoryItem]]:
        with self.open_file() as stream:
            for index, (line, row) in enumerate(RowReader(stream, self.name)):
                yield line, check_row(row, f"{self.name} line {line}", index, self._now)
