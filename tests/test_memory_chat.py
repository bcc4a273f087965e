"""Memory in the chat: a fact from one conversation answers a question in another, on the real
model and a real Chroma (embedded and `chroma run`), plus compaction and the user's controls."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.engine.events import Compacted, MemoryRecalled, TurnDone
from slmchat.engine.session import Session
from slmchat.engine.transcript import conversation_markdown
from slmchat.engine.window import fit_window
from slmchat.infra.backends.base import Message
from slmchat.infra.config import Config, MemoryConfig
from slmchat.infra.store import Store
from slmchat.memory.manager import Memory
from slmchat.memory.store import MemoryStore
from tests.helpers import LOCK_HOLDER, chat, collect, small_config


def ask(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slmchat", "ask", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
        env={**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_SMALL__TEMPERATURE": "0", **(env or {})},
    )  # fmt: skip


def biscuit(env: dict[str, str] | None = None) -> dict:
    told = ask("My dog's name is Biscuit.", "--new", env=env)
    assert told.returncode == 0, told.stderr
    asked = ask("What is my dog's name?", "--new", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    return json.loads(asked.stdout)


@pytest.mark.memory
def test_a_fact_from_an_earlier_conversation_answers_a_later_one() -> None:
    answer = biscuit()
    assert "Biscuit" in answer["answer"]
    recalled = answer["memory"]["recalled"]
    assert any("Biscuit" in item["text"] for item in recalled)
    assert answer["conversation_id"]  # a new conversation: the history did not carry it

    found = subprocess.run([sys.executable, "-m", "slmchat", "memory", "search", "dog", "--json"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    rows = json.loads(found.stdout)
    best = next(row for row in rows if "Biscuit" in row["text"])
    assert best["turn_id"] is not None and best["conversation_id"] and best["created_at"] <= best["updated_at"]


@pytest.mark.memory
def test_the_same_with_memory_on_a_chroma_server(chroma_server) -> None:
    url, _proc = chroma_server
    answer = biscuit({"SLMCHAT_MEMORY_URL": url})
    assert "Biscuit" in answer["answer"]
    assert MemoryStore.open(url=url).count() >= 2  # the exchanges (and facts) went to the server


@pytest.mark.memory
def test_a_corrupt_memory_database_leaves_the_chat_working_and_says_so(isolated_dirs: Path) -> None:
    folder = isolated_dirs / "data" / "memory"
    folder.mkdir(parents=True)
    (folder / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    done = ask("What is the capital of France?")
    assert done.returncode == 0 and done.stdout.strip()  # answered anyway
    assert "[memory off:" in done.stderr and str(folder) in done.stderr and "Traceback" not in done.stderr
    assert (folder / "chroma.sqlite3").read_bytes().startswith(b"this is not a database")  # left untouched


@pytest.mark.memory
def test_a_locked_memory_database_leaves_the_chat_working_and_says_so(isolated_dirs: Path) -> None:
    folder = isolated_dirs / "data" / "memory"
    MemoryStore.open(folder).add("The user likes jazz", "fact")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder / "chroma.sqlite3")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = ask("What music do I like?")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert done.returncode == 0 and done.stdout.strip()
    assert "[memory off: the memory database at" in done.stderr and "locked by another program" in done.stderr
    assert MemoryStore.open(folder).count() == 1  # nothing lost; usable again once the lock is gone


@pytest.mark.memory
def test_a_turn_kept_out_of_memory_stores_nothing(small_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    memory = Memory(MemoryConfig(path=tmp_path / "mem"))
    session = Session(small_config(), backends={"small": small_backend}, memory=memory)

    async def run() -> None:
        async for _event in session.turn("My cat is called Tom.", memory=False):
            pass
        await session.settle()

    asyncio.run(run())
    assert memory.store().count() == 0
    session.ask("My cat is called Tom.")
    assert session.call(session.settle())  # ask() leaves the memory work to idle time; settle() does it now
    assert memory.store().count() >= 1  # the exchange at least
    session.close()


@pytest.mark.memory
def test_remember_forget_and_memory_in_the_repl(small_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    memory = Memory(MemoryConfig(path=tmp_path / "mem", extract=False, store_exchanges=False))
    session = Session(small_config(), backends={"small": small_backend}, memory=memory)
    printed = chat(session, "/remember I prefer metric units\n/memory\n/forget units\ny\n/memory\n/quit\n")
    assert "remembered: I prefer metric units" in printed
    assert "  I prefer metric units\nmemory on: 1 fact shown" in printed
    assert "fact: I prefer metric units" in printed and "deleted 1" in printed
    assert "memory on: 0 facts shown" in printed
    assert MemoryStore.open(tmp_path / "mem").count() == 0  # deleting deletes


def test_a_long_conversation_is_compacted_visibly(small_backend) -> None:  # type: ignore[no-untyped-def]
    long_answer = "The tower was built between 1887 and 1889 as the entrance arch to the fair. " * 6
    history = []
    for i in range(4):
        history += [Message("user", f"Tell me fact {i} about the tower."), Message("assistant", long_answer)]
    count = lambda text: small_backend.count_tokens(text)[0]  # noqa: E731
    everything = fit_window(small_config().system_prompt, history, "And its height?", 10**6, count).tokens
    session = Session(small_config(context_tokens=everything - 1), backends={"small": small_backend})  # just short
    session.history = list(history)
    events = collect(session, "And its height?")
    compacted = next(e for e in events if isinstance(e, Compacted))
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert compacted.shortened >= 1 and compacted.dropped == 0  # shortening old answers was enough
    assert done.stats.history_shortened == compacted.shortened
    assert "older answer" in compacted.note
    stored = Store(session.store.path)
    assert "> [history compacted to fit the model:" in conversation_markdown(stored, session.conversation_id)


@pytest.mark.memory
def test_recall_reports_what_it_put_in_the_prompt(small_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    memory = Memory(MemoryConfig(path=tmp_path / "mem", extract=False))
    memory.remember("The user's project deadline is 12 May.")
    session = Session(Config(small=small_config().small), backends={"small": small_backend}, memory=memory)
    events = collect(session, "When is my project deadline?")
    recalled = next(e for e in events if isinstance(e, MemoryRecalled))
    assert recalled.recalled[0]["text"] == "The user's project deadline is 12 May." and recalled.tokens > 0
    assert events[-1].stats.memory["recalled"][0]["kind"] == "fact"


def test_past_chat_is_recalled_only_when_it_is_close(tmp_path: Path) -> None:
    """Exchanges have their own floor: a greeting no longer recalls another greeting (issue 16)."""
    exchanges = ["User: Say hello.\nAssistant: Hello! How can I help you today?",
                 "User: I left my bike at the north station.\nAssistant: Noted: the north station."]  # fmt: skip
    shipped = Memory(MemoryConfig(path=tmp_path / "mem", extract=False))
    for text in exchanges:
        shipped.store().add(text, "exchange")
    assert shipped.recall_hits("Hi there") == []
    bike = shipped.recall_hits("Where did I leave my bike?")
    assert [hit.item.text for hit in bike] == [exchanges[1]] and bike[0].similarity >= 0.45
    shipped.close()
    loose = Memory(MemoryConfig(path=tmp_path / "mem", extract=False, min_exchange_similarity=0.2))
    assert [hit.item.text for hit in loose.recall_hits("Hi there")][:1] == [exchanges[0]]  # what the floor stops
    loose.close()
