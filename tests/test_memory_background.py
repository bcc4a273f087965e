"""Memory without the wait, on the real model and a real embedded Chroma.

Recall goes next to the question, so the conversation's prompt stays a prefix of the next one;
remembering a turn (fact extraction with the same model) waits until the session is idle, a turn
that starts pauses it, and the conversation's KV cache is put back after it. Work a closing session
could not finish stays marked in the history and a later session does it.
"""

from __future__ import annotations

import asyncio
import time
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest

from slmchat.engine.events import MemoryRecalled, MemorySaved, TurnDone
from slmchat.engine.session import Session
from slmchat.infra.config import MemoryConfig
from slmchat.infra.store import Store
from slmchat.memory.manager import RECALL_HEADER, Memory, question_of
from slmchat.testing import scripted_session
from slmchat.tools import Toolbox
from tests.helpers import small_config

FACT = "My name is Priya and I keep two cats called Miso and Tofu."


class CacheWatch:
    """Records, for each chat call on the real Llama, the tokens already in its KV cache at the call."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch, system: str) -> None:
        self.llama = backend.llama
        self.calls: list[tuple[list[dict[str, str]], list[int]]] = []
        original = self.llama.create_chat_completion

        def watched(*args: Any, **kwargs: Any) -> Any:
            messages = kwargs["messages"]
            if messages and messages[0]["content"] == system:  # a turn's call, not fact extraction
                self.calls.append((messages, self.state()))
            return original(*args, **kwargs)

        monkeypatch.setattr(self.llama, "create_chat_completion", watched)

    def state(self) -> list[int]:
        return [int(t) for t in self.llama.input_ids[: self.llama.n_tokens]]

    def reused(self, call: int, prompt_tokens: int) -> int:
        """Prompt tokens the call took from the cache instead of evaluating them."""
        pairs = zip(self.calls[call][1], self.state()[:prompt_tokens], strict=False)
        return sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], pairs))


def session_with_memory(backend: Any, folder: Path, **memory: Any) -> tuple[Session, Memory]:
    config = small_config(max_tokens=16)
    config.memory = MemoryConfig(path=folder / "memory", **memory)
    brain = Memory(config.memory)
    session = Session(config, backends={"small": backend}, memory=brain, tools=Toolbox(),
                      store=Store(folder / "history.db"))  # fmt: skip
    return session, brain


async def turn(session: Session, text: str) -> TurnDone:
    events = [event async for event in session.turn(text)]
    done = events[-1]
    assert isinstance(done, TurnDone), done
    return done


@pytest.mark.memory
def test_the_next_turn_does_not_wait_for_fact_extraction_and_reuses_the_conversations_cache(
    small_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, memory = session_with_memory(small_backend, tmp_path, idle_s=60.0)
    watch = CacheWatch(small_backend, monkeypatch, session.config.system_prompt)
    saved: list[MemorySaved] = []

    async def run() -> tuple[TurnDone, TurnDone, int, bool]:
        first = await turn(session, FACT)
        queued = len(session.background)
        stored_before = memory.store().count()
        second = await turn(session, "What are my cats called?")
        assert stored_before == 0 and memory.store().count() == 0  # nothing ran between the turns

        async def listen() -> None:
            async for event in session.events():
                if isinstance(event, MemorySaved):
                    saved.append(event)

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0)  # subscribed
        finished = await session.settle()  # now: a script's end waits for its facts
        await asyncio.sleep(0.05)
        listening.cancel()
        return first, second, queued, finished

    first, second, queued, finished = asyncio.run(run())
    assert queued >= 1 and finished
    prompt1, prompt2 = first.stats.usage.prompt_tokens, second.stats.usage.prompt_tokens
    assert prompt1 and prompt2 and prompt2 > prompt1
    # the second call found the whole first prompt (and more) in the cache: only the new part was evaluated
    assert watch.reused(1, prompt2) >= prompt1
    assert any("Priya" in fact.text for fact in memory.facts())  # remembered after all
    assert {event.turn_id for event in saved} == {first.stats.turn_id, second.stats.turn_id}
    assert session.store.memory_pending(time.time() + 1) == []
    session.close()


@pytest.mark.memory
def test_a_turn_that_starts_during_fact_extraction_pauses_it_and_keeps_the_cache(
    small_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, memory = session_with_memory(small_backend, tmp_path, idle_s=0.0)
    watch = CacheWatch(small_backend, monkeypatch, session.config.system_prompt)

    async def run() -> tuple[TurnDone, TurnDone, float]:
        first = await turn(session, FACT)
        deadline = time.monotonic() + 30
        while not small_backend._lock.locked():  # the extraction holds the model now
            assert time.monotonic() < deadline, "the background extraction never started"
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        second = await turn(session, "What are my cats called?")
        waited = second.stats.latency.ttft_ms / 1000 if second.stats.latency.ttft_ms else time.perf_counter() - started
        assert await session.settle(timeout=60)
        return first, second, waited

    first, second, _ttft = asyncio.run(run())
    assert session.background.paused >= 1  # the extraction stopped for the turn, then ran again
    prompt1, prompt2 = first.stats.usage.prompt_tokens, second.stats.usage.prompt_tokens
    assert prompt1 and prompt2
    assert watch.reused(1, prompt2) >= prompt1  # the extraction's prompt did not replace the conversation's
    assert any("Priya" in fact.text for fact in memory.facts())
    session.close()


@pytest.mark.memory
def test_memory_work_a_closing_session_could_not_finish_is_done_by_a_later_one(
    small_backend: Any, tmp_path: Path
) -> None:
    first, memory = session_with_memory(small_backend, tmp_path, idle_s=60.0, exit_wait_s=0.0)
    done = asyncio.run(turn(first, FACT))
    first.close()  # no time at all for the extraction
    store = Store(tmp_path / "history.db")
    pending = store.memory_pending(time.time() + 1)
    assert [row["id"] for row in pending] == [done.stats.turn_id]
    assert memory.store().count() == 0
    store.close()

    time.sleep(0.01)  # the later session starts after the turn was stored
    later, memory = session_with_memory(small_backend, tmp_path, idle_s=0.0)

    async def run() -> None:
        await turn(later, "Hello there.")  # any turn: the session then takes on the leftovers when idle
        deadline = time.monotonic() + 60
        while later.store.memory_pending(time.time() + 1):
            assert time.monotonic() < deadline, "the leftover memory work was not done"
            await asyncio.sleep(0.1)
        await later.settle()

    asyncio.run(run())
    assert any("Priya" in fact.text for fact in memory.facts())
    exchanges = [hit.item for hit in memory.search("Priya cats Miso Tofu", k=10) if hit.item.kind == "exchange"]
    assert sum(item.turn_id == done.stats.turn_id for item in exchanges) == 1  # stored once
    later.close()


@pytest.mark.memory
def test_recall_goes_next_to_the_question_and_is_not_repeated_while_in_the_window(
    small_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, memory = session_with_memory(small_backend, tmp_path, store_exchanges=False, extract=False)
    memory.remember("The user's cats are called Miso and Tofu")  # from an earlier conversation
    watch = CacheWatch(small_backend, monkeypatch, session.config.system_prompt)

    async def run() -> list[list[Any]]:
        turns = []
        for text in ("What are my cats called?", "Tell me about my cats.", "And what are they called?"):
            turns.append([event async for event in session.turn(text)])
        return turns

    turns = asyncio.run(run())
    recalled = [[e for e in events if isinstance(e, MemoryRecalled)] for events in turns]
    assert len(recalled[0]) == 1 and "Miso" in recalled[0][0].recalled[0]["text"]
    assert recalled[1] == [] and recalled[2] == []  # still in the window: not sent again
    first_call = watch.calls[0][0]
    assert first_call[0]["content"] == session.config.system_prompt  # the system prompt never changes
    assert first_call[-1]["content"].startswith(RECALL_HEADER)
    assert question_of(first_call[-1]["content"]) == "What are my cats called?"
    third_call = watch.calls[2][0]
    assert third_call[1] == first_call[-1]  # the history holds the message as it was sent
    dones = [events[-1] for events in turns]
    assert watch.reused(2, dones[2].stats.usage.prompt_tokens) >= dones[1].stats.usage.prompt_tokens
    session.close()


def test_when_the_history_does_not_fit_old_recalled_memories_go_before_any_exchange_is_dropped() -> None:
    from slmchat.engine.window import fit_window
    from slmchat.infra.backends.base import Message
    from slmchat.memory.manager import with_recall

    block = RECALL_HEADER + "\n" + "\n".join(f"- Earlier exchange: {'filler words ' * 20}{i}" for i in range(3))
    history: list[Message] = []
    for i in range(4):
        history += [Message("user", with_recall(block, f"question {i}")), Message("assistant", f"answer {i}")]
    count = lambda text: len(text.split())  # noqa: E731
    full = sum(count(m.content) + 4 for m in history)
    window = fit_window("system", history, "question 4", full - 100, count, question_of)
    sent = [m.content for m in window.messages]
    assert window.dropped == 0  # stripping the old blocks was enough
    assert sent[1] == "question 0" and sent[3] == "question 1"  # older exchanges: the user's words only
    assert sent[5].startswith(RECALL_HEADER) and sent[7].startswith(RECALL_HEADER)  # the last two keep theirs
    assert fit_window("system", history, "question 4", full + 100, count, question_of).messages[1] == history[0]


def test_a_memory_counts_as_sent_only_when_its_own_line_was_sent() -> None:
    from slmchat.memory.manager import item_line, recalled_lines, with_recall
    from slmchat.memory.types import MemoryItem

    block = RECALL_HEADER + "\n- The user likes jazz and blues\n- Earlier exchange: User: hi Assistant: hello"
    sent = recalled_lines(with_recall(block, "What should I play?\n\nSomething calm."))
    assert item_line(MemoryItem("a", "fact", "The user likes jazz and blues", 0, 0)) in sent
    assert item_line(MemoryItem("b", "fact", "The user likes jazz", 0, 0)) not in sent  # a prefix is not the fact
    assert item_line(MemoryItem("c", "exchange", "User: hi  Assistant:\nhello", 0, 0)) in sent
    assert recalled_lines("What should I play?") == set()


def test_recall_with_no_database_yet_does_not_open_chroma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = Memory(MemoryConfig(path=tmp_path / "data" / "memory"))
    opened: list[bool] = []
    monkeypatch.setattr(memory, "_open_default", lambda: opened.append(True))
    assert memory.nothing_stored()
    recalled = asyncio.run(memory.recall("What is my name?", None, len))
    assert recalled.hits == [] and recalled.note is None and opened == []
    (tmp_path / "data" / "memory").mkdir(parents=True)
    (tmp_path / "data" / "memory" / "chroma.sqlite3").write_bytes(b"")
    assert not memory.nothing_stored()  # a database exists: recall opens it (and reports a damaged one)
    blocked = Memory(MemoryConfig(path=tmp_path / "file" / "memory"))
    (tmp_path / "file").write_text("a file where the folder should be")
    assert not blocked.nothing_stored()  # cannot be made: the normal open says why


@pytest.mark.memory
def test_a_short_reply_to_the_assistants_question_is_remembered_with_it(tmp_path: Path) -> None:
    """ "Sam." is a fact only as the answer to "What's your name?": the session passes the question."""
    memory = Memory(MemoryConfig(path=tmp_path / "mem", idle_s=0.0, store_exchanges=False))
    session = scripted_session(["Hello! What's your name?", "Nice to meet you, Sam."], data_dir=tmp_path,
                               memory=memory)  # fmt: skip

    async def run() -> None:
        await turn(session, "Hi")
        await turn(session, "Sam.")
        await session.settle()

    asyncio.run(run())
    assert [fact.text for fact in memory.facts()] == ["The user's name is Sam"]
    session.close()
