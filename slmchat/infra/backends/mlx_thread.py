"""One long-lived thread for every MLX call of the process (why: see ``MlxThread``)."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class MlxThread:
    """The one thread that runs every MLX call of the process: loading, generating, freeing.

    Measured with mlx 0.32 on Linux, MLX work on short-lived threads goes wrong twice over. Each new
    thread gets its own MLX stream and scheduler thread, never freed (two OS threads leaked per
    answer). And a thread that ran MLX work frees its thread-local compile cache on exit, which
    takes the GIL: if the interpreter is finalizing by then (a one-shot answer printed, then exit),
    the process aborts with "terminate called without an active exception". So all MLX work runs
    here, on one daemon thread that lives as long as the process; at exit it is parked, blocked
    outside Python, before finalization starts. Serial by design: a small CPU gains nothing from
    two generations at once, and MLX streams belong to one thread.
    """

    #: how long exit waits for a running job (a generation stops within a token) before giving up
    PARK_TIMEOUT = 5.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        #: set at exit: generations stop at the next token
        self.closing = threading.Event()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; it must report its own result and errors."""
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="slmchat-mlx", daemon=True)
                self._thread.start()
                atexit.register(self._park)
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            with contextlib.suppress(BaseException):  # jobs hand their errors on; the thread must live
                job()
            del job

    def _park(self) -> None:
        """At exit (atexit runs before finalization): leave the thread blocked for good, outside Python."""
        self.closing.set()
        parked = threading.Event()
        never = threading.Lock()
        never.acquire()

        def park() -> None:
            parked.set()
            never.acquire()  # waits with the GIL released until the process is gone

        self._jobs.put(park)
        if parked.wait(self.PARK_TIMEOUT):
            time.sleep(0.01)  # the few bytecodes from set() to the blocking acquire

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the MLX thread and await its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the caller gave up before it started
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller as is
                future.set_exception(exc)

        self.submit(job)
        return await asyncio.wrap_future(future)
