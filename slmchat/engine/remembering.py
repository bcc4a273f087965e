"""Memory in a session: recall next to the question, and remembering turns in the background.

A mixin of ``Session``. Recall leaves out what the model already has in front of it; remembering
(the exchange, fact extraction with the small model) is queued on ``BackgroundWork``, which runs it
only when the session is idle and pauses it when a turn starts. A turn waiting for that work is
marked ``memory_pending`` in the history until it is done, so a later session finishes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slmchat.engine.background import BackgroundWork, Job
from slmchat.engine.events import Event, MemoryFailed, MemoryRecalled, MemorySaved
from slmchat.engine.turn_state import TurnState
from slmchat.infra.backends.base import CancelToken, Message, estimate_tokens
from slmchat.infra.errors import SlmchatError
from slmchat.memory.manager import Memory, item_line, recalled_lines, with_recall
from slmchat.memory.types import MemoryItem

if TYPE_CHECKING:
    from slmchat.infra.backends import ChatBackend
    from slmchat.infra.store import Store
    from slmchat.routing import Tier

#: leftover memory work (turns marked pending by earlier sessions) one session takes on
ADOPT_AT_MOST = 50


class Remembering:
    """Recall before a turn and remembering after it, for ``Session``."""

    memory: Memory | None
    history: list[Message]
    conversation_id: str
    store: Store
    background: BackgroundWork
    _window_dropped: int
    _adopted: bool
    _started: float

    if TYPE_CHECKING:  # Session's and EventChannel's: stubs here would hide them

        async def backend(self, tier: Tier) -> ChatBackend: ...
        def _emit_session(self, event: Event) -> None: ...

    async def _recall(self, turn: TurnState) -> MemoryRecalled | None:
        """Put relevant memories next to the question (see ``with_recall``); say so when memory is off."""
        assert self.memory is not None
        recalled = await self.memory.recall(turn.text, turn.embedding, estimate_tokens, self._in_context())
        turn.memory = recalled.to_dict()
        block = self.memory.prompt_block(recalled)
        if not block:
            return None
        turn.question = with_recall(block, turn.text)
        return MemoryRecalled(turn.memory["recalled"], recalled.tokens, recalled.ms)

    def _in_context(self) -> Callable[[MemoryItem], bool]:
        """Which memories the model already has in front of it, so recall leaves them out.

        Those of this conversation (its turns are the history, until the window drops some: then
        they may be recalled again) and those recalled earlier and still in a message of the history.
        """
        cid, whole = self.conversation_id, not self._window_dropped
        sent = set().union(*(recalled_lines(m.content) for m in self.history if m.role == "user"))

        def known(item: MemoryItem) -> bool:
            if whole and item.conversation_id == cid and item.turn_id is not None:
                return True
            return item_line(item) in sent

        return known

    def _remember_later(
        self, conversation_id: str, turn_id: int, question: str, answer: str, asked: str | None = None
    ) -> None:
        """Queue storing the exchange and its facts: it runs once the session is idle (``BackgroundWork``).

        ``asked`` is the assistant's message the user's ``question`` replied to, if any.

        The turn's row was saved with ``memory_pending``; it is cleared when the work is done, so
        work that a closing session could not finish in time is picked up by a later one.
        """
        memory = self.memory
        assert memory is not None

        async def remember(cancel: CancelToken) -> bool:
            started = time.perf_counter()
            try:
                backend = await self.backend("small")
                changes = await memory.remember_turn(
                    backend, question, answer, conversation_id, turn_id, cancel, asked=asked
                )
            except Exception as exc:  # a failed write never takes the session down
                self._emit_session(MemoryFailed(conversation_id, turn_id, f"{type(exc).__name__}: {exc}"))
                return True
            if changes is None:
                return False  # a turn started: run again at the next idle spell
            if memory.unavailable:
                self._emit_session(MemoryFailed(conversation_id, turn_id, memory.unavailable))
                return True
            await asyncio.to_thread(self._remembered, turn_id)
            done = [{"action": c.action, "fact": c.fact, "replaced": c.replaced} for c in changes]
            self._emit_session(MemorySaved(conversation_id, turn_id, done, (time.perf_counter() - started) * 1000))
            return True

        self.background.submit(Job(turn_id, remember))

    def _adopt_later(self) -> None:
        """Once per session, at an idle spell: take on the memory work earlier sessions left pending."""
        if self.memory is not None and not self._adopted:
            self._adopted = True
            self.background.submit(Job("adopt", self._adopt_pending))

    def _remembered(self, turn_id: int) -> None:
        try:
            self.store.set_memory_pending(turn_id, False)
        except SlmchatError:
            pass  # the history cannot be written: the turn is remembered again by a later session (idempotent)

    async def _adopt_pending(self, cancel: CancelToken) -> bool:
        """Queue the memory work earlier sessions left undone (they closed, or were killed, first).

        Not while draining: a closing ``slmchat ask`` finishes its own turn's work, not old work.
        """
        if self.background.draining:
            self._adopted = False  # the next session (or idle spell) takes it on
            return True
        try:
            rows = await asyncio.to_thread(self.store.memory_pending, self._started, ADOPT_AT_MOST)
        except SlmchatError:
            return True
        queued = self.background.keys()
        for row in rows:
            if row["id"] not in queued:
                self._remember_later(row["conversation_id"], row["id"], row["user_text"], row["answer"])
        return True

    async def settle(self, *, blocked: asyncio.AbstractEventLoop | None = None, timeout: float | None = None) -> bool:
        """Run the queued memory work now and wait for it (a script's last turn must not lose its facts).

        The work runs on the loop of the turn that queued it. ``blocked`` is a loop that cannot run
        now (the one whose thread waits in ``close()``): its work is not waited for. True when
        nothing is left; what is left stays pending in the history and a later session does it.
        """
        work, here = self.background, asyncio.get_running_loop()
        loop = work.loop
        if loop is None or loop is here:
            return await work.drain(timeout)
        if loop is blocked or loop.is_closed() or not loop.is_running():
            return False
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work.drain(timeout), loop))
