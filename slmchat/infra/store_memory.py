"""The history's record of memory work still to do: a turn is marked when saved, cleared when remembered.

Remembering a turn (storing the exchange, extracting facts with the small model) runs in the
background when the session is idle. A session that closes before it is done, or is killed, leaves
its turns marked; a later session finds them here and does the work then. Nothing is lost, and
the work is idempotent, so a turn done twice is stored once.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any


class PendingMemory:
    """A mixin of ``Store``: the turns whose memory work is still to do."""

    db: sqlite3.Connection
    _lock: threading.RLock

    if TYPE_CHECKING:  # Store's

        def _writing(self, consequence: str) -> AbstractContextManager[None]: ...
        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def set_memory_pending(self, turn_id: int, pending: bool) -> None:
        """Mark a turn's memory work as to do (True) or done (False); an unknown turn is ignored."""
        with self._writing("the memory work was not recorded"), self._transaction() as db:
            db.execute("UPDATE turns SET memory_pending = ? WHERE id = ?", (int(pending), turn_id))

    def memory_pending(self, before: float, limit: int = 50) -> list[dict[str, Any]]:
        """Turns stored before ``before`` (a timestamp) whose memory work is to do, oldest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, conversation_id, user_text, answer FROM turns"
                " WHERE memory_pending = 1 AND created_at < ? ORDER BY id LIMIT ?",
                (before, limit),
            ).fetchall()
        return [dict(r) for r in rows]
