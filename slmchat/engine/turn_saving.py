"""Storing a turn: the question written ahead, the whole turn in one transaction at its end.

A mixin of ``Session``: the turn pipeline calls ``_begin`` when the turn starts and ``_save`` (or
``_failed``) when it ends. A store that fails (a full or read-only disk) never loses the turn
from the running chat: it stays in ``history`` and the closing event says why it was not saved.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slmchat.accounting.pricing import TurnCost, call_costs, price_for, total_cost
from slmchat.engine.events import Event, TurnFailed, TurnStats, TurnStatus
from slmchat.engine.turn_state import TurnState
from slmchat.infra.backends.base import Message
from slmchat.infra.store import StorageError, Store, TurnRecord

if TYPE_CHECKING:
    from slmchat.engine.tiers import Tiers

LATENCY_COLUMNS = ("ttft_ms", "total_ms", "tokens_per_s")


class TurnSaving:
    """How the session stores a turn and measures what it stores."""

    store: Store
    tiers: Tiers
    conversation_id: str
    history: list[Message]
    last_turn_id: int | None
    model_name: Any
    _publish: Any

    async def _failed(self, turn: TurnState, message: str, hint: str | None) -> TurnFailed:
        def failed(turn_id: int | None) -> TurnFailed:
            return TurnFailed(message, hint, turn.text_so_far, self.conversation_id, turn_id)

        return await self._save(turn, "failed", message, lambda tid, _stats: failed(tid), unsaved=failed)

    def _begin(self, turn: TurnState) -> None:
        """Write the question ahead of the answer; a disk problem here is told when the turn ends."""
        decision = turn.decision
        try:
            turn.turn_id = self.store.begin_turn(
                self.conversation_id, turn.text, decision.tier, decision.model, decision.reason
            )
        except StorageError as exc:
            turn.store_error = exc  # the turn still runs: the answer is worth showing

    def _unsaved(self, turn: TurnState) -> TurnFailed:
        """The closing event of a turn that streamed but could not be stored (a full disk, ...)."""
        error = turn.store_error
        assert error is not None
        hint = "free some space" if error.kind == "full" else (error.hint or "")
        if turn.text_so_far:
            hint = f"{hint}; the answer above is still in this chat"
        return TurnFailed(error.message, hint, turn.text_so_far, self.conversation_id, turn.turn_id)

    def _stats(self, turn: TurnState, status: TurnStatus) -> TurnStats:
        backend = self.tiers.loaded(turn.ran_on or turn.decision.tier)
        costs = self._call_costs(turn)
        return turn.stats(status, self.conversation_id, backend.count_tokens if backend else None, total_cost(costs))

    def _call_costs(self, turn: TurnState) -> list[TurnCost]:
        prices = {
            tier: price_for(model, self.tiers.settings(tier))
            for tier in ("small", "large")
            if (model := self.model_name(tier))
        }
        return call_costs(turn.calls, prices)  # type: ignore[arg-type]

    async def _save(
        self, turn: TurnState, status: TurnStatus, error: str | None, last: Any, unsaved: Any = None
    ) -> Any:
        """Measure and store the turn off the loop; ``last(turn_id, stats)`` builds the closing event.

        The closing event is stored in the same transaction and returned for the caller to yield.
        When the store fails (a full disk), the turn stays in this session's history and the
        closing event is a ``TurnFailed`` that says why (``unsaved(turn_id)`` builds it instead,
        when the turn had failed already).
        """
        closing: list[Event] = []

        def finish() -> int | None:
            stats = self._stats(turn, status) if status != "failed" else None

            def close(turn_id: int) -> dict[str, Any]:
                closing.append(last(turn_id, stats))
                return closing[0].to_dict()

            return self._save_now(turn, status, error, stats, close)

        if await asyncio.to_thread(finish) is None:  # the store failed (even at COMMIT): the session goes on
            event = unsaved(turn.turn_id) if unsaved is not None else self._unsaved(turn)
        else:
            event = closing[0]
        self._publish(event)
        return event

    def _save_now(
        self, turn: TurnState, status: TurnStatus, error: str | None, stats: TurnStats | None, closing: Any = None
    ) -> int | None:
        """Store the turn (one transaction) and add it to the history the next turn sees.

        A store failure is kept in ``turn.store_error`` (None is returned): the turn still joins
        the history, so the chat goes on with it, and is not retried.
        """
        decision, answer = turn.decision, turn.text_so_far
        usage = None
        if stats is not None:
            usage = [
                {"tier": c.tier, "model": c.model, **c.usage.to_dict(), **cost.to_dict(), "model_ms": c.model_s * 1000}
                for c, cost in zip(turn.calls, self._call_costs(turn), strict=True)
            ]
            if usage:  # the answer that stands: its stats (token counts may have been estimated)
                usage[-1].update(stats.usage.to_dict())
                usage[-1].update({k: v for k, v in stats.latency.to_dict().items() if k in LATENCY_COLUMNS})
        record = TurnRecord(
            self.conversation_id, turn.text, answer, status, decision.tier, decision.model, decision.reason,
            error, turn.events, usage, closing, turn.turn_id, turn.remember and status == "ok",
        )  # fmt: skip
        turn_id: int | None = None
        try:
            turn_id = self.last_turn_id = self.store.save_turn(record)
        except StorageError as exc:
            turn.store_error = exc
        turn.saved = True
        if status != "failed":
            self.history.append(Message("user", turn.question))  # as sent: the next prompt shares it
            if answer:
                self.history.append(Message("assistant", answer))
        return turn_id
