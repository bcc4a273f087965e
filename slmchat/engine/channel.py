"""The session's event channel: turn events recorded and published, session events fed into turns.

A mixin of ``Session``. Every event a face sees leaves through ``_emit`` (turn events, which
are also recorded with the turn) or ``_emit_session`` (models loading, memory writes), so
subscribers of ``events()``, the turn's stream and the store all see the same objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from slmchat.engine.events import SESSION_EVENTS, ApprovalRequested, Event, ModelFailed, ModelLoading, ModelReady
from slmchat.engine.turn_state import TurnState


class EventChannel:
    """Publishing to ``events()`` subscribers, and the side queue a running turn drains."""

    status: str
    _subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event | None]]]
    _side: list[Event]  # events raised inside a turn, waiting for its next yield
    _turn_running: bool

    async def events(self) -> AsyncIterator[Event]:
        """Every event of this session as it happens (turn and session events), until ``aclose``."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        self._subscribers.append(entry)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(entry)

    def _publish(self, event: Event | None) -> None:
        for loop, queue in list(self._subscribers):
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, event)

    def _emit_session(self, event: Event) -> None:
        """A session event: to subscribers now, and into the running turn's stream at its next event."""
        self.status = _status(event, self.status)
        self._publish(event)
        if self._turn_running:
            self._side.append(event)

    def _emit(self, turn: TurnState, event: Event) -> Event:
        """The one way out for a turn's events: recorded with the turn unless it is a session event."""
        if not isinstance(event, SESSION_EVENTS):
            turn.events.append(event.to_dict())
            if isinstance(event, ApprovalRequested):
                self.status = f"waiting for approval: {event.name}"
            self._publish(event)
        return event

    def _flush(self, turn: TurnState) -> list[Event]:
        """Events raised inside the turn since its last yield, in the order they happened."""
        pending, self._side = self._side, []
        for event in pending:
            if not isinstance(event, SESSION_EVENTS):
                self._emit(turn, event)
        return pending


def _status(event: Event, current: str) -> str:
    """The one-line state a status bar shows after a session event."""
    if isinstance(event, ModelLoading):
        return f"{event.tier}: loading {event.model}"
    if isinstance(event, ModelReady):
        return f"{event.tier}: ready ({event.model})"
    if isinstance(event, ModelFailed):
        return f"{event.tier}: failed to load ({event.error})"
    return current
