"""The SQLite store: migrations, atomic turns, lookups."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from slmchat.infra.errors import SlmchatError
from slmchat.infra.store import MIGRATIONS, Store, TurnRecord, migrate


def record(cid: str, text: str = "hi", **kw) -> TurnRecord:  # type: ignore[no-untyped-def]
    fields = dict(
        conversation_id=cid,
        user_text=text,
        answer="hello",
        status="ok",
        tier="small",
        model="llamacpp:smollm2",
        route_reason="auto",
        error=None,
        events=[{"kind": "route_decided"}, {"kind": "turn_done"}],
        usage={
            "tier": "small",
            "model": "llamacpp:smollm2",
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "estimated": False,
            "ttft_ms": 5.0,
            "total_ms": 9.0,
            "tokens_per_s": 80.0,
        },
    )
    fields.update(kw)
    return TurnRecord(**fields)  # type: ignore[arg-type]


def test_a_new_database_is_at_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_apply_in_order_and_only_once(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    steps = ["CREATE TABLE a (x)", "ALTER TABLE a ADD COLUMN y; CREATE TABLE b (z)"]
    assert migrate(db, steps[:1]) == 1
    assert migrate(db, steps) == 2  # an old database catches up
    assert migrate(db, steps) == 2  # and nothing runs twice
    assert [r[1] for r in db.execute("PRAGMA table_info(a)")] == ["x", "y"]


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(db, ["CREATE TABLE a (x)"])
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, ["CREATE TABLE a (x)", "CREATE TABLE c (x); CREATE TABLE nope nope"])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'c'").fetchall()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "n.db", isolation_level=None)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(SlmchatError, match="newer slmchat"):
        Store(tmp_path / "n.db")


def test_a_corrupt_file_is_a_clear_error_and_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SlmchatError, match="is damaged or not a database"):
        Store(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_turns_events_and_usage_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    cid = store.new_conversation()
    turn_id = store.save_turn(record(cid, "What is 2+2?\nsecond line"))
    store.save_turn(record(cid, "and 3+3?", usage=None, status="failed", error="boom", answer=""))
    rows = store.turns(cid)
    assert rows[0]["id"] == turn_id and rows[0]["completion_tokens"] == 3 and rows[0]["estimated"] == 0
    assert rows[1]["status"] == "failed" and rows[1]["prompt_tokens"] is None
    assert [e["kind"] for e in store.events(turn_id)] == ["route_decided", "turn_done"]
    conv = store.conversations()[0]
    assert conv.title == "What is 2+2?" and conv.turns == 2
    assert store.find_conversation(cid[:5]) == cid and store.latest_conversation() == cid


def test_a_turn_is_saved_whole_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    cid = store.new_conversation()
    with pytest.raises(sqlite3.IntegrityError):
        store.save_turn(record(cid, status="weird"))  # violates the status CHECK after nothing else
    with pytest.raises(KeyError):
        store.save_turn(record(cid, usage={"tier": "small"}))  # fails after the turn row was inserted
    assert store.turns(cid) == []
    assert store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_ambiguous_or_unknown_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with pytest.raises(SlmchatError, match="no conversation with id 'zz'"):
        store.find_conversation("zz")
    store.new_conversation()
    store.new_conversation()
    with pytest.raises(SlmchatError, match="give a conversation id"):
        store.find_conversation("")  # an empty prefix would match every conversation
    with pytest.raises(SlmchatError, match="no conversation"):
        store.find_conversation("%")  # LIKE wildcards are literal


def test_a_begun_turn_reads_as_interrupted_until_it_is_completed_in_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    turn_id = store.begin_turn("c1", "What is 2+2?", "small", "llamacpp:smollm2", "auto")
    (row,) = store.turns("c1")
    assert (row["id"], row["user_text"], row["answer"], row["status"]) == (turn_id, "What is 2+2?", "", "interrupted")
    assert store.conversations()[0].title == "What is 2+2?" and store.call_rows() == []  # no usage yet
    assert store.save_turn(record("c1", "What is 2+2?", turn_id=turn_id)) == turn_id
    (row,) = store.turns("c1")
    assert row["answer"] == "hello" and row["status"] == "ok" and row["completion_tokens"] == 3
    assert [e["kind"] for e in store.events(turn_id)] == ["route_decided", "turn_done"]


def test_the_stored_error_is_redacted(tmp_path: Path) -> None:
    key = "sk-" + "Zy9Xw8Vu7Ts6Rq5Po4Nm3" * 2
    store = Store(tmp_path / "s.db")
    store.save_turn(record("c1", status="failed", answer="", usage=None, error=f"401: Incorrect API key {key}"))
    assert store.turns("c1")[0]["error"] == "401: Incorrect API key [redacted]"


def test_a_read_only_store_reads_without_creating_or_migrating(tmp_path: Path) -> None:
    missing = Store(tmp_path / "none" / "s.db", readonly=True)
    assert missing.conversations() == [] and not (tmp_path / "none").exists()
    writer = Store(tmp_path / "s.db")
    writer.save_turn(record("c1"))
    reader = Store(tmp_path / "s.db", readonly=True)
    assert [r.id for r in reader.conversations()] == ["c1"]
    with pytest.raises(SlmchatError, match="opened read-only: the verdict was not saved"):
        reader.set_feedback(reader.latest_turn_id() or 0, True)
