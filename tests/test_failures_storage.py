"""Storage failure paths of issue 13, with real parts: a full or read-only disk, kill -9 mid-answer,
a file where the data folder should be, bytes that are not UTF-8, escape sequences in stored text.

Tests that mount a tmpfs need root (CI runs as root); they skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slmchat.engine.events import Token, TurnDone, TurnFailed
from slmchat.infra.config import Config, MemoryConfig, TierConfig
from slmchat.infra.store import MIGRATIONS, Store, migrate
from slmchat.testing import scripted_session
from tests.helpers import collect, slmchat

#: a long answer from the real model, so there is time to act while it streams
LONG = {"SLMCHAT_SMALL__MAX_TOKENS": "400"}
STORY = "Write a long story about a dragon who learns to cook."


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real size-limited filesystem at ``where`` (unmounted afterwards); needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error a command printed: one line and its fix, never a traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    errors = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1 and lines[errors[0] + 1].lstrip().startswith("fix: "), result.stderr
    return result.stderr


# -- 1: a full disk ------------------------------------------------------------------------


def test_a_disk_that_fills_during_an_answer_ends_the_turn_with_one_line_and_keeps_earlier_turns(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"  # SLMCHAT_DATA_DIR (tests/conftest.py)
    with tmpfs(data, "2m"):
        with scripted_session(["Four."]) as earlier:  # an earlier turn, in the same database
            earlier.ask("What is 2+2?")
        ask = subprocess.Popen(
            [sys.executable, "-m", "slmchat", "ask", STORY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false", **LONG},
        )
        assert ask.stdout is not None
        first = ask.stdout.read(1)  # the answer streams: the database is open, the question stored
        subprocess.run(["dd", "if=/dev/zero", f"of={data / 'filler'}", "bs=4k"], capture_output=True)
        rest, err = ask.communicate(timeout=120)
        result = subprocess.CompletedProcess(ask.args, ask.returncode, (first + rest).decode(), err.decode())

        stderr = one_line_error(result)
        assert f"the disk holding {data / 'slmchat.db'} is full: this turn was not saved" in stderr
        assert "fix: free some space; the answer above is still in this chat" in stderr
        assert len(result.stdout) > 100  # the answer that streamed stays shown
        listing = slmchat("history", "list")  # reading still works on the full disk
        assert listing.returncode == 0 and "What is 2+2?" in listing.stdout and STORY[:30] in listing.stdout
        (data / "filler").unlink()
        assert integrity(data / "slmchat.db") == "ok"


def test_a_full_database_keeps_the_answer_in_the_session_so_the_chat_goes_on(tmp_path: Path) -> None:
    answer = " ".join(f"sentence {i} of a long story." for i in range(40))  # its events need new pages
    session = scripted_session(["Four.", answer, "Yes, I remember."], data_dir=tmp_path)
    assert isinstance(collect(session, "What is 2+2?")[-1], TurnDone)
    db = session.store.db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")  # a full disk

    failed = collect(session, "Tell me a story.")[-1]
    assert isinstance(failed, TurnFailed)
    assert failed.error == f"the disk holding {tmp_path / 'history.db'} is full: this turn was not saved"
    assert failed.hint == "free some space; the answer above is still in this chat"
    assert failed.partial == answer
    collect(session, "Do you remember the story?")
    sent = session.tiers.loaded("small").seen[-1]  # type: ignore[union-attr]
    assert [m.content for m in sent if m.role == "assistant"] == ["Four.", answer]  # the chat went on with it
    rows = Store(tmp_path / "history.db").turns(session.conversation_id)
    assert rows[0]["answer"] == "Four." and rows[0]["status"] == "ok"  # earlier turns intact
    assert integrity(tmp_path / "history.db") == "ok"


# -- 5b: the question is written ahead of the answer -----------------------------------------


def test_kill_9_mid_answer_loses_at_most_the_answer_never_the_question(tmp_path: Path) -> None:
    data = tmp_path / "data"
    from slmchat.memory.store import MemoryStore

    # a memory with something in it: recall opens it before the first token (an empty one is not opened)
    MemoryStore.open(data / "memory").add("The user likes stories about the sea", "fact")
    env = {**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "true", **LONG}
    ask = subprocess.Popen([sys.executable, "-m", "slmchat", "ask", STORY], stdout=subprocess.PIPE, env=env)
    assert ask.stdout is not None
    assert ask.stdout.read(1)  # the first streamed byte
    ask.kill()
    ask.wait()

    shown = slmchat("history", "show")
    assert shown.returncode == 0 and STORY in shown.stdout and "interrupted" in shown.stdout
    turn = json.loads(slmchat("history", "export", "--format", "json").stdout)["turns"][0]
    assert turn["user"] == STORY and turn["status"] == "interrupted"
    databases = [data / "slmchat.db", *data.rglob("*.sqlite3")]  # history, and memory's
    assert len(databases) == 2
    assert [integrity(path) for path in databases] == ["ok", "ok"]


def test_the_question_is_stored_while_the_answer_streams_and_completed_at_the_end(tmp_path: Path) -> None:
    session = scripted_session(["Paris is the capital of France."], data_dir=tmp_path)
    reader = Store(tmp_path / "history.db")  # another process's view

    async def scenario() -> tuple[list[dict], TurnDone]:
        seen: list[dict] = []
        last = None
        async for event in session.turn("What is the capital of France?"):
            if isinstance(event, Token) and not seen:
                seen = reader.turns(session.conversation_id)
            last = event
        assert isinstance(last, TurnDone)
        return seen, last

    during, done = asyncio.run(scenario())
    assert [(r["user_text"], r["answer"], r["status"]) for r in during] == [
        ("What is the capital of France?", "", "interrupted")
    ]
    after = reader.turns(session.conversation_id)
    assert len(after) == 1 and after[0]["id"] == during[0]["id"] == done.stats.turn_id
    assert after[0]["answer"] == "Paris is the capital of France." and after[0]["status"] == "ok"
    assert after[0]["completion_tokens"] is not None  # usage came with the completed row


# -- 6: a read-only disk, the right fix for each storage problem --------------------------------


def test_on_a_read_only_disk_reading_commands_work_and_writing_ones_say_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tmpfs(data, "4m"):
        # a writer killed without closing: the -wal and -shm files stay beside the database
        script = (
            "import os; from slmchat.testing import scripted_session\n"
            "s = scripted_session(['Four.'])\ns.ask('What is 2+2?')\nos._exit(0)\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, env=os.environ)
        assert (data / "slmchat.db-wal").exists()
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)

        assert "What is 2+2?" in slmchat("history", "list").stdout
        assert "Four." in slmchat("history", "show").stdout
        assert "Four." in slmchat("history", "export").stdout
        assert "1 turns" in slmchat("stats").stdout
        for command in (("feedback", "good"), ("ask", "hi")):
            stderr = one_line_error(slmchat(*command))
            assert f"{data / 'slmchat.db'} is on a read-only filesystem" in stderr
            assert "remount it read-write, or set SLMCHAT_DATA_DIR" in stderr
            assert "move the file aside" not in stderr


def test_a_folder_where_the_database_should_be_is_named_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "data" / "slmchat.db").mkdir(parents=True)
    for command in (("history", "list"), ("ask", "hi")):
        stderr = one_line_error(slmchat(*command))
        assert "slmchat.db is a folder, but slmchat keeps its history in a file there" in stderr


def test_reading_commands_do_not_upgrade_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "data" / "slmchat.db"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, MIGRATIONS[:3])
    db.close()
    stderr = one_line_error(slmchat("history", "list"))
    assert "from an older slmchat" in stderr and "run any slmchat chat command once to upgrade" in stderr
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3  # untouched
    db.close()
    assert Store(path).db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)  # a writer upgrades


def test_a_missing_database_reads_as_an_empty_history_and_is_not_created(tmp_path: Path) -> None:
    result = slmchat("history", "list")
    assert result.returncode == 0 and "no conversations yet" in result.stdout
    assert not (tmp_path / "data").exists()


def test_no_permission_on_the_data_folder_says_so_for_reading_and_writing_commands() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the commands as another user")
    base = Path(tempfile.mkdtemp(prefix="slmchat-perm-", dir="/tmp"))  # pytest's tmp_path is root's alone
    try:
        base.chmod(0o755)
        (base / "config").mkdir(mode=0o755)
        Store(base / "data" / "slmchat.db").close()
        (base / "data").chmod(0o700)  # root's folder: another user may not enter it
        env = {**os.environ, "HOME": str(base), "SLMCHAT_CONFIG_DIR": str(base / "config"),
               "SLMCHAT_DATA_DIR": str(base / "data"), "SLMCHAT_TOOLS__ENABLED": "[]",
               "SLMCHAT_MEMORY__ENABLED": "false"}  # fmt: skip
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "slmchat"]
        for command in (("history", "list"), ("ask", "hi")):
            result = subprocess.run([*as_nobody, *command], capture_output=True, text=True, env=env, timeout=120)
            stderr = one_line_error(result)
            assert "no permission to use" in stderr and "SLMCHAT_DATA_DIR" in stderr, stderr
            assert "move the file aside" not in stderr
    finally:
        shutil.rmtree(base)


# -- 8d: a file where the data folder should be ------------------------------------------------


def test_a_file_where_the_data_folder_should_be_is_one_line_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    for command in (("ask", "hi"), ("history", "list"), ("stats",)):
        stderr = one_line_error(slmchat(*command))
        assert f"{tmp_path / 'data'} is a file, but slmchat keeps its data in a folder there" in stderr
        assert "move the file aside, or set SLMCHAT_DATA_DIR to another folder" in stderr
    assert (tmp_path / "data").read_text() == "not a folder"


# -- 8a: bytes that are not UTF-8 reach the engine as lone surrogates ---------------------------


def test_a_question_with_undecodable_bytes_is_answered_and_stored_with_replacement_characters(tmp_path: Path) -> None:
    config = Config(small=TierConfig(model="scripted:small"), memory=MemoryConfig(enabled=False))
    session = scripted_session(["Hello."], config=config, data_dir=tmp_path)
    assert session.router.uses_embedding  # the embedder sees the question too
    events = collect(session, "Hi \udcff there")  # b"Hi \xff there" decoded with surrogateescape
    assert isinstance(events[-1], TurnDone), events[-1]
    assert session.tiers.loaded("small").seen[-1][-1].content == "Hi \ufffd there"  # type: ignore[union-attr]
    assert Store(tmp_path / "history.db").turns(session.conversation_id)[0]["user_text"] == "Hi \ufffd there"


# -- 10b: an empty conversation id ---------------------------------------------------------------


def test_an_empty_conversation_id_is_an_error_not_the_latest_conversation(tmp_path: Path) -> None:
    with scripted_session(["Four."]) as session:
        session.ask("What is 2+2?")
    for command in (("history", "export", ""), ("history", "show", "")):
        result = slmchat(*command)
        assert "Four." not in result.stdout
        stderr = one_line_error(result)
        assert "give a conversation id (or a prefix of one)" in stderr and "`slmchat history list` shows them" in stderr


# -- redaction and escape sequences --------------------------------------------------------------


def test_an_unexpected_error_that_echoes_a_key_is_redacted_when_shown_and_stored(tmp_path: Path) -> None:
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    session = scripted_session([RuntimeError(f"Incorrect API key provided: {key}")], data_dir=tmp_path)
    failed = collect(session, "hi")[-1]
    assert isinstance(failed, TurnFailed) and failed.error.startswith("unexpected error: RuntimeError")
    assert key not in failed.error and "[redacted]" in failed.error
    stored = Store(tmp_path / "history.db").turns(session.conversation_id)[0]
    assert stored["status"] == "failed" and key not in stored["error"]
    assert key not in (tmp_path / "history.db").read_bytes().decode("utf-8", "replace")


def test_escape_sequences_in_stored_text_are_shown_not_obeyed_by_history(tmp_path: Path) -> None:
    hostile = "Done.\x1b]0;pwned\x07\x1b[2J and \x1b]52;c;aGk=\x07"
    with scripted_session([hostile]) as session:
        session.ask("Title \x1b]0;pwned\x07 here")
    for command in (("history", "show"), ("history", "list")):
        result = slmchat(*command)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "␛]0;pwned␇" in result.stdout  # visible, so nothing is hidden either
