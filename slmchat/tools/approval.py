"""Approval requests: the tool loop asks, any face answers by request id, from any thread."""

from __future__ import annotations

import asyncio
import itertools
from typing import Literal

ApprovalPolicy = Literal["ask", "always", "never"]


class ApprovalDesk:
    """Open requests and their answers; one desk per session."""

    def __init__(self, policy: ApprovalPolicy = "ask") -> None:
        self.policy: ApprovalPolicy = policy
        self._open: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = {}
        self._ids = itertools.count(1)

    def open(self) -> tuple[str, asyncio.Future[bool]]:
        """A new request id and the future its answer resolves (call on the event loop)."""
        request_id = f"approval-{next(self._ids)}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._open[request_id] = (loop, future)
        future.add_done_callback(lambda _f: self._open.pop(request_id, None))
        return request_id, future

    def answer(self, request_id: str, allowed: bool) -> bool:
        """Answer a request; False if it is unknown or already answered. Safe from any thread."""
        entry = self._open.get(request_id)
        if entry is None:
            return False
        loop, future = entry

        def settle() -> None:
            if not future.done():
                future.set_result(bool(allowed))

        if loop.is_closed():
            return False
        loop.call_soon_threadsafe(settle)  # the future belongs to its loop, whichever thread answers
        return True

    def deny_all(self) -> None:
        """Answer every open request with no (the turn was cancelled)."""
        for request_id in list(self._open):
            self.answer(request_id, False)

    @property
    def pending(self) -> list[str]:
        return list(self._open)
