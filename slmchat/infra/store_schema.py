"""The history database's schema: numbered migrations and the function that applies them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
    # 5: memory work still to do for a turn (it runs in the background; a later session finishes it)
    """
    ALTER TABLE turns ADD COLUMN memory_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX turns_memory_pending ON turns(id) WHERE memory_pending = 1;
    """,
]


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
