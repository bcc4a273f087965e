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
from typing import Any, TypeVar

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
