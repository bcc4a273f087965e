"""Conversations, turns, events and usage in SQLite (WAL), with numbered migrations."""

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

from slmchat.infra.errors import SlmchatError

#: Numbered migrations; the position in this list + 1 is the schema version (PRAGMA user_version).
#: Never edit one that has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        user_text TEXT NOT NULL,
        answer TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('ok', 'interrupted', 'failed')),
        tier TEXT,
        model TEXT,
        route_reason TEXT,
        error TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX turns_by_conversation ON turns(conversation_id, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
        tier TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        estimated INTEGER NOT NULL,
        ttft_ms REAL,
        total_ms REAL NOT NULL,
        tokens_per_s REAL
    );
    """,
    # 2: thumbs up/down per turn, the labels `slmchat route calibrate --error-costs` learns from
    """
    CREATE TABLE feedback (
        turn_id INTEGER PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
        good INTEGER NOT NULL CHECK (good IN (0, 1)),
        created_at REAL NOT NULL
    );
    """,
    # 3: what each model call cost (NULL = unknown price, never 0), the large-tier equivalent, model time
    """
    ALTER TABLE usage ADD COLUMN usd REAL;
    ALTER TABLE usage ADD COLUMN large_equivalent_usd REAL;
    ALTER TABLE usage ADD COLUMN price_source TEXT;
    ALTER TABLE usage ADD COLUMN model_ms REAL;
    """,
    # 4: a turn set aside (the answer not kept after a compare): stored and labelled, but not history
    """
    ALTER TABLE turns ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
    """,
]


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


class Store:
    """One SQLite file. Each turn is written in one transaction: all of it or nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
            migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise SlmchatError(
                f"cannot open the history database {path}: {exc}",
                "move the file aside to start a new one (nothing else is touched)",
            ) from exc

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:  # turns are saved from worker threads; one transaction at a time
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def new_conversation(self, title: str = "") -> str:
        """Create an empty conversation now (sessions create theirs with the first turn instead)."""
        conversation_id = new_conversation_id()
        now = time.time()
        self.db.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (conversation_id, title, now, now),
        )
        return conversation_id

    def latest_conversation(self) -> str | None:
        row = self.db.execute("SELECT id FROM conversations ORDER BY updated_at DESC, rowid DESC LIMIT 1").fetchone()
        return row["id"] if row else None

    def find_conversation(self, prefix: str) -> str:
        """The conversation whose id starts with ``prefix`` (ids are shown shortened)."""
        rows = self.db.execute(
            "SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\'",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if len(rows) != 1:
            what = "no conversation" if not rows else f"{len(rows)} conversations"
            raise SlmchatError(f"{what} with id {prefix!r}", "see `slmchat history list`")
        return rows[0]["id"]

    def save_turn(self, record: TurnRecord) -> int:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at) VALUES (?, '', ?, ?)",
                (record.conversation_id, now, now),
            )
            cur = db.execute(
                "INSERT INTO turns (conversation_id, user_text, answer, status, tier, model, route_reason,"
                " error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.conversation_id,
                    record.user_text,
                    record.answer,
                    record.status,
                    record.tier,
                    record.model,
                    record.route_reason,
                    record.error,
                    now,
                ),
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
            title = record.user_text.strip().splitlines()[0][:60] if record.user_text.strip() else ""
            db.execute(
                "UPDATE conversations SET updated_at = ?, title = CASE WHEN title = '' THEN ? ELSE title END"
                " WHERE id = ?",
                (now, title, record.conversation_id),
            )
        return turn_id

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
        with self._transaction() as db:
            if db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)).rowcount == 0:
                raise SlmchatError(f"no conversation {conversation_id!r}", "see `slmchat history list`")

    def delete_conversation(self, conversation_id: str) -> int:
        """Delete a conversation with its turns, events, usage and feedback; returns the turns deleted."""
        with self._transaction() as db:
            turns = db.execute("SELECT COUNT(*) FROM turns WHERE conversation_id = ?", (conversation_id,)).fetchone()
            if db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise SlmchatError(f"no conversation {conversation_id!r}", "see `slmchat history list`")
        return int(turns[0])

    def set_superseded(self, turn_id: int, superseded: bool = True) -> None:
        """Set a turn aside (or bring it back): it stays stored and labelled, but is not history."""
        with self._transaction() as db:
            if db.execute("UPDATE turns SET superseded = ? WHERE id = ?", (int(superseded), turn_id)).rowcount == 0:
                raise SlmchatError(f"no turn {turn_id}", "turn ids are in `slmchat history export --format json`")

    def tokens_since(self, since: float, tier: str = "large") -> tuple[int, int]:
        """Prompt and completion tokens used on ``tier`` by turns stored since ``since`` (a timestamp)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(u.prompt_tokens), 0), COALESCE(SUM(u.completion_tokens), 0) FROM usage u"
            " JOIN turns t ON t.id = u.turn_id WHERE u.tier = ? AND t.created_at >= ?",
            (tier, since),
        ).fetchone()
        return int(row[0]), int(row[1])

    def call_rows(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every model call since ``since``, oldest first, with its turn's time, routed tier and override."""
        rows = self.db.execute(
            "SELECT t.id AS turn_id, t.created_at, t.conversation_id, t.tier AS routed_tier, t.status,"
            " u.id AS call_id, u.tier, u.model, u.prompt_tokens, u.completion_tokens, u.estimated, u.usd,"
            " u.large_equivalent_usd, u.price_source, u.ttft_ms, u.total_ms, u.tokens_per_s,"
            " (SELECT json_extract(payload, '$.decision.override') FROM events e"
            "  WHERE e.turn_id = t.id AND e.kind = 'route_decided') AS override,"
            " EXISTS(SELECT 1 FROM events x WHERE x.turn_id = t.id AND x.kind = 'escalated') AS escalated"
            " FROM turns t JOIN usage u ON u.turn_id = t.id WHERE t.created_at >= ? ORDER BY t.id, u.id",
            (since,),
        ).fetchall()
        return [dict(r) for r in rows]

    def latest_turn_id(self) -> int | None:
        return self.db.execute("SELECT MAX(id) FROM turns").fetchone()[0]

    def set_feedback(self, turn_id: int, good: bool) -> None:
        """Record (or change) the user's verdict on a turn."""
        if self.db.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
            raise SlmchatError(f"no turn {turn_id}", "turn ids are in `slmchat history export --format json`")
        self.db.execute(
            "INSERT INTO feedback (turn_id, good, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT(turn_id) DO UPDATE SET good = excluded.good, created_at = excluded.created_at",
            (turn_id, int(good), time.time()),
        )

    def routed_turns(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Recent turns the router scored, newest first: tier, score, override and any feedback."""
        rows = self.db.execute(
            "SELECT t.id, t.tier, t.superseded, e.payload, f.good,"
            " EXISTS(SELECT 1 FROM events x WHERE x.turn_id = t.id AND x.kind = 'escalated') AS escalated FROM turns t"
            " JOIN events e ON e.turn_id = t.id AND e.kind = 'route_decided'"
            " LEFT JOIN feedback f ON f.turn_id = t.id ORDER BY t.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for row in rows:
            decision = json.loads(row["payload"])["decision"]
            if decision.get("score") is None:
                continue
            good = None if row["good"] is None else bool(row["good"])
            out.append({"turn_id": row["id"], "tier": row["tier"], "score": decision["score"],
                        "override": decision.get("override"), "good": good,
                        "escalated": bool(row["escalated"]), "superseded": bool(row["superseded"])})  # fmt: skip
        return out

    def events(self, turn_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT payload FROM events WHERE turn_id = ? ORDER BY seq", (turn_id,))
        return [json.loads(r["payload"]) for r in rows]


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:12]


def migrate(db: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations the database has not seen, each in its own transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise SlmchatError(
            f"the history database is from a newer slmchat (schema {version}, this one knows {len(migrations)})",
            "upgrade slmchat",
        )
    for number, sql in enumerate(migrations[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(migrations)
