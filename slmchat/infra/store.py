"""Conversations, turns, events and usage in SQLite (WAL); the schema is in store_schema, the errors in store_errors."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError
from slmchat.infra.redact import redact
from slmchat.infra.store_errors import StorageError, storage_error
from slmchat.infra.store_memory import PendingMemory
from slmchat.infra.store_queries import SpendQueries
from slmchat.infra.store_schema import MIGRATIONS, migrate

__all__ = ["MIGRATIONS", "ConversationRow", "StorageError", "Store", "TurnRecord", "migrate", "new_conversation_id",
           "storage_error"]  # fmt: skip


@dataclass(frozen=True)
class ConversationRow:
    id: str
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass(frozen=True)
class TurnRecord:
    """What the engine hands the store at the end of a turn."""

    conversation_id: str
    user_text: str
    answer: str
    status: str
    tier: str | None
    model: str | None
    route_reason: str | None
    error: str | None
    events: Sequence[dict[str, Any]]
    #: each model call's tier, model, token counts, latency and cost; the last is the answer that stands
    usage: dict[str, Any] | Sequence[dict[str, Any]] | None
    #: the closing event (TurnDone, TurnFailed), built once the turn has its id, stored after ``events``
    closing: Callable[[int], dict[str, Any]] | None = None
    #: the row ``Store.begin_turn`` wrote when the turn started: completed instead of a new row
    turn_id: int | None = None
    #: memory work (the exchange, fact extraction) is still to be done for this turn
    memory_pending: bool = False


class Store(PendingMemory, SpendQueries):
    """One SQLite file. Each turn is written in one transaction: all of it or nothing.

    ``readonly=True`` is for commands that only read (history, stats): the file is opened
    read-only, so they work on a full or read-only disk, and migrations do not run. A missing
    file then reads as an empty history (nothing is created).
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        if not readonly:
            paths.ensure_dir(path.parent)
        try:
            self.db = _open_readonly(path) if readonly else _open(path)
        except sqlite3.DatabaseError as exc:
            raise storage_error(exc, path, "cannot open the history") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _writing(self, consequence: str) -> Iterator[None]:
        """Turn a disk or database failure while writing into a ``StorageError`` that names it."""
        if self.readonly:
            raise SlmchatError(f"{self.path} was opened read-only: {consequence}", "open the Store without readonly")
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # a bug in what was written, not a problem of the disk
        except (sqlite3.DatabaseError, OSError) as exc:
            raise storage_error(exc, self.path, consequence) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:  # turns are saved from worker threads; one transaction at a time
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # a failed COMMIT (a full disk) may have rolled back already
                    self.db.execute("ROLLBACK")
                raise

    def new_conversation(self, title: str = "") -> str:
        """Create an empty conversation now (sessions create theirs with the first turn instead)."""
        conversation_id = new_conversation_id()
        now = time.time()
        with self._writing("the conversation was not created"), self._transaction() as db:
            db.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (conversation_id, title, now, now),
            )
        return conversation_id

    def latest_conversation(self) -> str | None:
        row = self.db.execute("SELECT id FROM conversations ORDER BY updated_at DESC, rowid DESC LIMIT 1").fetchone()
        return row["id"] if row else None

    def find_conversation(self, prefix: str) -> str:
        """The conversation whose id starts with ``prefix`` (ids are shown shortened)."""
        if not prefix.strip():
            raise SlmchatError("give a conversation id (or a prefix of one)", "`slmchat history list` shows them")
        rows = self.db.execute(
            "SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\'",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if len(rows) != 1:
            what = "no conversation" if not rows else f"{len(rows)} conversations"
            raise SlmchatError(f"{what} with id {prefix!r}", "see `slmchat history list`")
        return rows[0]["id"]

    def begin_turn(self, conversation_id: str, user_text: str, tier: str | None, model: str | None,
                   route_reason: str | None) -> int:  # fmt: skip
        """Store the question as the turn starts; returns the turn's id for ``save_turn`` to complete.

        Until then the row reads as an interrupted turn with no answer, so even a process killed
        mid-answer loses at most the answer. Its events and usage come with ``save_turn``.
        """
        now = time.time()
        with self._writing("the question was not saved"), self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at) VALUES (?, '', ?, ?)",
                (conversation_id, now, now),
            )
            cur = db.execute(
                "INSERT INTO turns (conversation_id, user_text, answer, status, tier, model, route_reason, created_at)"
                " VALUES (?, ?, '', 'interrupted', ?, ?, ?, ?)",
                (conversation_id, user_text, tier, model, route_reason, now),
            )
            self._touch(db, conversation_id, user_text, now)
        return int(cur.lastrowid or 0)

    def save_turn(self, record: TurnRecord) -> int:
        """Store a finished turn (completing its ``begin_turn`` row, if any) in one transaction."""
        with self._writing("this turn was not saved"):
            return self._save_turn(record)

    def _save_turn(self, record: TurnRecord) -> int:
        now = time.time()
        error = redact(record.error) if record.error else record.error  # a server may have echoed a key
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at) VALUES (?, '', ?, ?)",
                (record.conversation_id, now, now),
            )
            r = record
            values = (r.answer, r.status, r.tier, r.model, r.route_reason, error, int(r.memory_pending))
            if (
                record.turn_id is not None
                and db.execute(
                    "UPDATE turns SET answer = ?, status = ?, tier = ?, model = ?, route_reason = ?, error = ?,"
                    " memory_pending = ? WHERE id = ?",
                    (*values, record.turn_id),
                ).rowcount
            ):
                turn_id = record.turn_id
            else:  # no row was begun (or it was deleted meanwhile): the whole turn now
                cur = db.execute(
                    "INSERT INTO turns (conversation_id, user_text, answer, status, tier, model, route_reason,"
                    " error, memory_pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.conversation_id, record.user_text, *values, now),
                )
                turn_id = int(cur.lastrowid or 0)
            events = [*record.events, record.closing(turn_id)] if record.closing else record.events
            db.executemany(
                "INSERT INTO events (turn_id, seq, kind, payload) VALUES (?, ?, ?, ?)",
                [(turn_id, seq, e["kind"], json.dumps(e)) for seq, e in enumerate(events)],
            )
            calls = [record.usage] if isinstance(record.usage, dict) else list(record.usage or [])
            db.executemany(
                "INSERT INTO usage (turn_id, tier, model, prompt_tokens, completion_tokens, estimated, ttft_ms,"
                " total_ms, tokens_per_s, usd, large_equivalent_usd, price_source, model_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        turn_id,
                        u["tier"],
                        u["model"],
                        u["prompt_tokens"],
                        u["completion_tokens"],
                        int(u["estimated"]),
                        u.get("ttft_ms"),
                        u.get("total_ms", 0.0),
                        u.get("tokens_per_s"),
                        u.get("usd"),
                        u.get("large_equivalent_usd"),
                        u.get("price_source"),
                        u.get("model_ms"),
                    )
                    for u in calls
                ],
            )
            self._touch(db, record.conversation_id, record.user_text, now)
        return turn_id

    @staticmethod
    def _touch(db: sqlite3.Connection, conversation_id: str, user_text: str, now: float) -> None:
        """Mark the conversation updated; its first question is its title until the user gives one."""
        title = user_text.strip().splitlines()[0][:60] if user_text.strip() else ""
        db.execute(
            "UPDATE conversations SET updated_at = ?, title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
            (now, title, conversation_id),
        )

    def conversations(self, limit: int = 20) -> list[ConversationRow]:
        rows = self.db.execute(
            "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) AS turns"
            " FROM conversations c ORDER BY updated_at DESC, c.rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [ConversationRow(r["id"], r["title"], r["created_at"], r["updated_at"], r["turns"]) for r in rows]

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """The turns of a conversation, oldest first, each with the usage of its last model call (or None)."""
        rows = self.db.execute(
            "SELECT t.*, u.prompt_tokens, u.completion_tokens, u.estimated, u.ttft_ms, u.total_ms,"
            " u.tokens_per_s, u.usd, u.large_equivalent_usd, u.price_source FROM turns t"
            " LEFT JOIN usage u ON u.id = (SELECT MAX(id) FROM usage WHERE turn_id = t.id)"
            " WHERE t.conversation_id = ? ORDER BY t.id",
            (conversation_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        """Give a conversation a title of the user's (the first question is the default)."""
        with self._writing("the title was not changed"), self._transaction() as db:
            if db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)).rowcount == 0:
                raise SlmchatError(f"no conversation {conversation_id!r}", "see `slmchat history list`")

    def delete_conversation(self, conversation_id: str) -> int:
        """Delete a conversation with its turns, events, usage and feedback; returns the turns deleted."""
        with self._writing("nothing was deleted"), self._transaction() as db:
            turns = db.execute("SELECT COUNT(*) FROM turns WHERE conversation_id = ?", (conversation_id,)).fetchone()
            if db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise SlmchatError(f"no conversation {conversation_id!r}", "see `slmchat history list`")
        return int(turns[0])

    def set_superseded(self, turn_id: int, superseded: bool = True) -> None:
        """Set a turn aside (or bring it back): it stays stored and labelled, but is not history."""
        with self._writing("nothing was changed"), self._transaction() as db:
            if db.execute("UPDATE turns SET superseded = ? WHERE id = ?", (int(superseded), turn_id)).rowcount == 0:
                raise SlmchatError(f"no turn {turn_id}", "turn ids are in `slmchat history export --format json`")

    def latest_turn_id(self) -> int | None:
        return self.db.execute("SELECT MAX(id) FROM turns").fetchone()[0]

    def set_feedback(self, turn_id: int, good: bool) -> None:
        """Record (or change) the user's verdict on a turn."""
        if self.db.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
            raise SlmchatError(f"no turn {turn_id}", "turn ids are in `slmchat history export --format json`")
        with self._writing("the verdict was not saved"), self._transaction() as db:
            db.execute(
                "INSERT INTO feedback (turn_id, good, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT(turn_id) DO UPDATE SET good = excluded.good, created_at = excluded.created_at",
                (turn_id, int(good), time.time()),
            )

    def events(self, turn_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT payload FROM events WHERE turn_id = ? ORDER BY seq", (turn_id,))
        return [json.loads(r["payload"]) for r in rows]


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create) the database for reading and writing, at the latest schema."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Open the database read-only, without migrating; a missing file is an empty history.

    A WAL database needs its -shm file to be read; where that cannot be made (a read-only
    folder or disk after an unclean exit) the file is opened as immutable, as it stands.
    """
    try:
        path.stat()
    except PermissionError as exc:  # a folder on the way may not be entered: not the same as no file
        raise storage_error(exc, path, "cannot open the history") from None
    except OSError:
        pass
    if not path.exists():
        paths.check_dir(path.parent)
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        migrate(db)
    else:
        db = _connect_ro(path)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < len(MIGRATIONS):
            db.close()
            raise SlmchatError(
                f"the history database {path} is from an older slmchat (schema {version}, this one needs"
                f" {len(MIGRATIONS)}), and this command only reads it",
                'run any slmchat chat command once to upgrade it, e.g. slmchat ask "hi"',
            )
        if version > len(MIGRATIONS):
            db.close()
            raise SlmchatError(
                f"the history database is from a newer slmchat (schema {version}, this one knows {len(MIGRATIONS)})",
                "upgrade slmchat",
            )
    db.row_factory = sqlite3.Row
    return db


#: what a read-only open of a WAL database fails with when its -shm file cannot be made or mapped
_NO_SHARED_MEMORY = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR")


def _connect_ro(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    failure: sqlite3.Error | None = None
    for mode in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(f"{uri}?{mode}", uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file, and the WAL if any
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            failure = exc
            if not (getattr(exc, "sqlite_errorname", "") or "").startswith(_NO_SHARED_MEMORY):
                raise
    assert failure is not None
    raise failure


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:12]
