"""Running the async engine from sync code: one event loop on a thread of its own, per session.

``ask`` and ``stream`` submit their coroutines here, so they work the same whether or not the
calling thread already runs an event loop (a Jupyter cell, an async program, a plain script).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Self, TypeVar

from slmchat.engine.events import ApprovalRequested, Event, TurnDone, TurnFailed, TurnStats
from slmchat.infra.errors import SlmchatError

if TYPE_CHECKING:
    from slmchat.routing import Route

T = TypeVar("T")
_END = object()


class LoopThread:
    """A daemon thread running an event loop until ``stop``."""

    def __init__(self, name: str = "slmchat-session") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this loop and wait for its result in the calling thread."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a sync call from the session's own loop would wait for itself; use `await`")
        return self.submit(coro).result()

    def iterate(self, agen: AsyncIterator[T], on_abandon: Callable[[], None]) -> Iterator[T]:
        """Items of ``agen`` (run on this loop) in the calling thread, as they come.

        A consumer that stops early (``break``, an exception, ``close()``) calls ``on_abandon``
        and waits for the generator to finish, so nothing is left running.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("a sync stream on the session's own loop would wait for itself; use `async for`")
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for item in agen:
                    items.put(item)
            except BaseException as exc:
                items.put(_Raised(exc))
            finally:
                items.put(_END)

        done = self.submit(pump())
        finished = False
        try:
            while True:
                item = items.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            if not finished:
                on_abandon()
            done.result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class SyncCalls:
    """``stream`` and ``ask`` for sync code, and ``with``: a mixin of ``Session`` over ``LoopThread``."""

    _closed: bool
    _sync: LoopThread | None
    turn: Callable[..., AsyncIterator[Any]]
    cancel: Callable[[], None]
    approve: Callable[[str, bool], bool]
    aclose: Callable[..., Coroutine[Any, Any, None]]

    def _bridge(self) -> LoopThread:
        if self._closed:
            raise SlmchatError("this session is closed", "open a new Session")
        if self._sync is None or not self._sync.alive:
            self._sync = LoopThread()
        return self._sync

    def stream(
        self, text: str, *, route: Route | str | None = None, tools: bool | None = None, memory: bool | None = None
    ) -> Iterator[Event]:
        """The events of ``turn`` from sync code, as they happen (the turn runs on the session's thread).

        Leaving the loop early interrupts the turn and keeps its partial answer. An
        ``ApprovalRequested`` event is answered with ``approve`` from the consuming thread.
        """
        return self._bridge().iterate(self.turn(text, route=route, tools=tools, memory=memory), self.cancel)

    def ask(
        self, text: str, *, route: Route | str | None = None, tools: bool | None = None, memory: bool | None = None
    ) -> TurnStats:
        """Run one turn from sync code and return its stats; raises ``SlmchatError`` if it fails.

        Works with or without a running event loop in the calling thread. A tool that needs
        approval does not run unless the session's ``approval`` policy is "always": there is
        no one to ask. The turn's memory work is not waited for: it runs on the session's thread
        once the script has been idle for ``memory.idle_s``, and ``close()`` (or ``with``)
        finishes it; ``call(session.settle())`` runs it now.
        """
        last: Event | None = None
        for event in self.stream(text, route=route, tools=tools, memory=memory):
            if isinstance(event, ApprovalRequested):
                self.approve(event.request_id, False)
            last = event
        if isinstance(last, TurnFailed):
            raise SlmchatError(last.error, last.hint)
        assert isinstance(last, TurnDone), "a turn always ends with TurnDone or TurnFailed"
        return last.stats

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one of the session's coroutines (a command, ``preview_route``) from sync code, on its loop."""
        return self._bridge().run(work)

    def close(self) -> None:
        """``aclose`` from sync code (with or without a running loop in this thread)."""
        if self._closed:
            return
        sync = self._sync or LoopThread()
        self._sync = None
        try:  # a loop running in this thread waits with us: its background work cannot finish now
            sync.run(self.aclose(_blocked=running_loop()))
        finally:
            sync.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
