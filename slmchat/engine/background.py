"""Work a session does between turns (remembering them) without ever delaying one.

Jobs wait in a queue until the session has been idle for ``idle_s`` seconds. A turn that starts
pauses the job under way: its model call is cancelled at once (see ``GenParams.aside``) and the job
goes back to the front of the queue, to run again from its start (its writes are idempotent).
``drain`` runs what is queued now, as a script's end or a closing session needs, within a bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slmchat.infra.backends.base import CancelToken

#: a job runs with a token that a starting turn cancels; it returns True when it finished, False when paused
JobFn = Callable[[CancelToken], Awaitable[bool]]


@dataclass
class Job:
    """One piece of background work; ``key`` tells two jobs for the same thing apart (a turn's id)."""

    key: object
    run: JobFn


class BackgroundWork:
    """A queue of jobs run one at a time on the event loop that submitted them, only when idle."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._queue: deque[Job] = deque()
        self._busy = 0  # turns running now
        # when the last turn ended (time.monotonic); a new session counts as busy until then, so a
        # one-shot `ask` that asks at once never starts old work before its question
        self._last_turn = time.monotonic()
        self._urgent = 0  # drains waiting: run without waiting for idleness
        self._current: CancelToken | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.paused = 0  # jobs a turn interrupted (each ran again later)

    def __len__(self) -> int:
        return len(self._queue) + (self._current is not None)

    @property
    def draining(self) -> bool:
        """True while someone waits in ``drain`` (a closing session, ``settle``): jobs run without idleness."""
        return self._urgent > 0

    def keys(self) -> set[object]:
        """The keys of the jobs queued or under way."""
        return {job.key for job in self._queue}

    def submit(self, job: Job) -> None:
        """Queue a job (needs a running loop: the worker runs there)."""
        self._queue.append(job)
        self._ensure_worker()

    def turn_started(self) -> None:
        """A turn begins: the job under way stops at once and waits for the next idle spell."""
        self._busy += 1
        if self._current is not None:
            self._current.cancel()

    def turn_ended(self) -> None:
        self._busy = max(0, self._busy - 1)
        self._last_turn = time.monotonic()
        self._poke()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the worker runs on while it runs (jobs can be waited for only from there)."""
        worker = self._worker
        return worker.get_loop() if worker is not None and not worker.done() else None

    async def drain(self, timeout: float | None = None) -> bool:
        """Run every queued job now, on this loop's worker (turns still pause them).

        True when the queue emptied within ``timeout`` seconds. The caller runs this on ``loop``
        when a worker runs (see ``Session.settle``); on another loop it returns False at once.
        """
        if not len(self):
            return True
        if self.loop not in (None, asyncio.get_running_loop()):
            return False
        self._urgent += 1
        try:
            self._ensure_worker()
            worker = self._worker
            assert worker is not None
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(self) and not worker.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                await asyncio.wait([worker], timeout=min(left, 0.05) if left is not None else 0.05)
            return not len(self)
        finally:
            self._urgent -= 1

    def stop(self) -> None:
        """Cancel the worker and the job under way; what is queued stays queued (and unrun)."""
        if self._current is not None:
            self._current.cancel()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._worker = None

    # -- the worker -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        worker = self._worker
        if worker is not None and not worker.done() and worker.get_loop() is loop:
            self._poke()
            return
        self._wake = asyncio.Event()
        self._worker = loop.create_task(self._work(), name="slmchat-background")

    def _poke(self) -> None:
        if self._wake is not None and self._worker is not None and not self._worker.done():
            loop = self._worker.get_loop()
            try:
                if loop is asyncio.get_running_loop():
                    self._wake.set()
                    return
            except RuntimeError:
                pass
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._wake.set)

    async def _idle(self) -> None:
        """Return once no turn runs and none has for ``idle_s`` seconds (at once while draining)."""
        assert self._wake is not None
        while not self._urgent or self._busy:
            if self._busy:
                wait = None
            else:
                wait = self._last_turn + self.idle_s - time.monotonic()
                if wait <= 0:
                    return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _work(self) -> None:
        while self._queue:
            await self._idle()
            if not self._queue:
                break
            job = self._queue[0]
            token = self._current = CancelToken()
            try:
                finished = await job.run(token)
            except Exception:  # a job reports its own failures; one that escapes must not stop the queue
                finished = True
            finally:
                self._current = None
            if finished or not token.cancelled:
                self._queue.popleft()
            else:
                self.paused += 1  # stays first: it runs again at the next idle spell
