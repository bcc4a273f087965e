"""The session engine: the one place where a turn is assembled.

``Session.turn`` reads top to bottom as the pipeline in DESIGN.md: route, build the prompt,
stream from the chosen backend, measure, store, and finish with ``TurnDone`` (or
``TurnFailed``). Faces only consume its events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import numpy as np

from slmchat import paths
from slmchat.accounting.pricing import TurnCost, call_costs, price_for, total_cost
from slmchat.answering import Answering
from slmchat.backends import ChatBackend
from slmchat.backends.base import CancelToken, Message, StreamEnd, Usage, estimate_tokens
from slmchat.config import Config, TierConfig, load_config
from slmchat.errors import SlmchatError
from slmchat.events import (
    Event,
    MemoryRecalled,
    RouteDecided,
    TurnDone,
    TurnFailed,
    TurnStats,
    TurnStatus,
)
from slmchat.memory.manager import Memory
from slmchat.routing import Route, RouteDecision, Router, Tier
from slmchat.routing.budget import budget_block
from slmchat.store import Store, TurnRecord, new_conversation_id
from slmchat.tiers import Tiers
from slmchat.tools.agent import AgentSettings, ApproveFn, CircuitBreaker
from slmchat.tools.registry import Toolbox, load_tools
from slmchat.turn_state import TurnState

LATENCY_COLUMNS = ("ttft_ms", "total_ms", "tokens_per_s")


class Session(Answering):
    """A conversation with a small and an optional large tier.

    Use ``async for event in session.turn(text)`` from async code, or ``session.ask(text)``
    from scripts. ``cancel()`` stops the running turn; its partial answer is kept.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        store: Store | None = None,
        conversation_id: str | None = None,
        resume_latest: bool = False,
        debug: bool = False,
        on_progress: Callable[[str], None] | None = None,
        backends: dict[Tier, ChatBackend] | None = None,
        router: Router | None = None,
        tools: Toolbox | None = None,
        approve: ApproveFn | None = None,
        memory: Memory | None = None,
    ) -> None:
        """``backends`` supplies ready backend objects (a custom one, or one shared between sessions).

        ``tools`` replaces the tools from the config; ``approve`` is asked before a tool that
        requires approval runs (without it, such tools do not run unless the config says always).
        """
        self.config = config or load_config()
        self.store = store or Store(paths.database_file())
        self.debug = debug
        self.route = Route(self.config.route)
        self.router = router or Router(threshold=self.config.routing.threshold)
        self.status = "idle"
        self._on_progress = on_progress
        self.tiers = Tiers(self.config, backends, self._progress)
        self._cancel: CancelToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.history: list[Message] = []
        self.last_turn_id: int | None = None
        self._started = time.time()  # the session budget counts from here
        self.toolbox = tools if tools is not None else load_tools(self.config.tools.enabled)
        self.use_tools = True  # the session switch; a turn can still say otherwise
        enabled = self.config.memory.enabled
        self.memory = memory if memory is not None else (Memory(self.config.memory) if enabled else None)
        self.use_memory = True  # the session switch for memory
        self._pending: set[asyncio.Future[None]] = set()
        self.approve = approve  # faces set this to ask the user
        self._breaker = CircuitBreaker(AgentSettings.breaker_failures, AgentSettings.breaker_cooldown_s)
        self.conversation_id = self._open_conversation(conversation_id, resume_latest)

    # -- conversation -------------------------------------------------------------------

    def _open_conversation(self, conversation_id: str | None, resume_latest: bool) -> str:
        if conversation_id is None and resume_latest:
            conversation_id = self.store.latest_conversation()
        if conversation_id is None:
            return new_conversation_id()  # stored with its first turn: no empty conversations
        conversation_id = self.store.find_conversation(conversation_id)
        for row in self.store.turns(conversation_id):
            if row["status"] == "failed":
                continue  # a question that got no answer is not sent again
            self.history.append(Message("user", row["user_text"]))
            if row["answer"]:
                self.history.append(Message("assistant", row["answer"]))
        return conversation_id

    def new_conversation(self) -> str:
        """Start a fresh conversation (the old one stays in the store)."""
        self.history = []
        self.conversation_id = new_conversation_id()
        return self.conversation_id

    def feedback(self, good: bool, turn_id: int | None = None) -> int:
        """Thumbs up or down on a turn (default: the last one); calibration learns from these."""
        turn_id = turn_id or self.last_turn_id
        if turn_id is None:
            raise SlmchatError("there is no answer to judge yet", "ask something first")
        self.store.set_feedback(turn_id, good)
        return turn_id

    # -- models -------------------------------------------------------------------------

    def tier_config(self, tier: Tier) -> TierConfig | None:
        """The settings a tier runs with now (after any ``set_model``)."""
        return self.tiers.settings(tier)

    def model_name(self, tier: Tier) -> str | None:
        return self.tiers.model_name(tier)

    def set_model(self, tier: Tier, name: str) -> str:
        """Use another model for ``tier`` from the next turn on; returns the resolved name."""
        return self.tiers.set_model(tier, name)

    async def backend(self, tier: Tier) -> ChatBackend:
        """The loaded backend of ``tier``; loads it once, shared by concurrent callers."""
        return await self.tiers.backend(tier)

    def _progress(self, message: str) -> None:
        self.status = message
        if self._on_progress:
            self._on_progress(message)

    def start_loading(self, tier: Tier = "small") -> asyncio.Future[ChatBackend]:
        """Begin loading in the background so a face is usable at once (needs a running loop).

        The router's embedding model and the memory database open too, so the first turn does
        not pay for them.
        """
        warmers = [lambda: self.router.embed("warm up")] if self.router.uses_embedding else []
        if self.memory is not None:
            warmers.append(self.memory.store)  # a failure here is reported by the first turn
        for warmer in warmers:
            warm = asyncio.ensure_future(asyncio.to_thread(warmer))
            warm.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        return asyncio.ensure_future(self.backend(tier))

    # -- one turn -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running turn promptly; it ends as ``interrupted`` with its partial answer."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def turn(
        self, text: str, route: Route | str | None = None, tools: bool | None = None, memory: bool | None = None
    ) -> AsyncIterator[Event]:
        """Run one turn and stream its events; always ends with TurnDone or TurnFailed.

        ``tools`` offers (True) or withholds (False) the tools for this turn; default: ``use_tools``.
        ``memory=False`` keeps the turn out of memory: nothing recalled, nothing stored.
        """
        started = time.perf_counter()
        route = Route(route) if route is not None else self.route
        cancel = self._cancel = CancelToken()
        decision, embedding = self._route(text, route)
        turn = TurnState(
            text, decision, started, embedding=embedding, ran_on=decision.tier, system=self.config.system_prompt
        )
        turn.events.append(RouteDecided(decision).to_dict())
        yield RouteDecided(decision)
        remembering = self.memory is not None and (self.use_memory if memory is None else memory)
        try:
            if remembering:
                recalled = await self._recall(turn)
                if recalled is not None:
                    yield recalled
            offered = self._offered_tools(turn, tools)
            runner = self._tool_turn(turn, cancel, offered) if offered else self._plain_turn(turn, cancel)
            async for event in runner:
                yield event
            turn.finished_at = time.perf_counter()
            if turn.end is None:
                raise SlmchatError(f"{decision.model} ended its stream without finishing", "try again")
            if turn.compaction is not None:
                turn.events.append(turn.compaction.to_dict())
                yield turn.compaction
            stats = self._stats(turn, "interrupted" if turn.end.finish_reason == "cancelled" else "ok")
            turn.events.append(TurnDone(stats).to_dict())
            turn_id = self._save(turn, stats.status, None, stats)
            if remembering and stats.status == "ok":
                self._remember_later(turn, turn_id)
            yield TurnDone(replace(stats, turn_id=turn_id))
        except SlmchatError as exc:
            turn.events.append(TurnFailed(exc.message, exc.hint, turn.text_so_far).to_dict())
            turn_id = self._save(turn, "failed", exc.message, None)
            if self.debug:
                raise
            yield TurnFailed(exc.message, exc.hint, turn.text_so_far, self.conversation_id, turn_id)
        except Exception as exc:
            message, hint = f"unexpected error: {type(exc).__name__}: {exc}", "run with --debug for the traceback"
            turn.events.append(TurnFailed(message, hint).to_dict())
            turn_id = self._save(turn, "failed", message, None)
            if self.debug:
                raise
            yield TurnFailed(message, hint, turn.text_so_far, self.conversation_id, turn_id)
        finally:
            # the consumer went away (Ctrl-C, task cancelled, loop closed): stop the model, keep the partial answer
            cancel.cancel()
            if not turn.saved:
                turn.end = turn.end or StreamEnd(Usage(None, None, estimated=True), "cancelled")
                turn.finished_at = time.perf_counter()
                self._record_call(turn)
                self._save(turn, "interrupted", None, self._stats(turn, "interrupted"))
            self._cancel = None

    def _route(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """Score the request (one embedding per turn, kept for memory) and decide the tier."""
        models = {t: self.model_name(t) for t in ("small", "large")}
        limit = self.config.routing.long_context_tokens
        return self.router.decide_turn(text, self.history, route, models, self._budget_block(), limit)  # type: ignore[arg-type]

    def _budget_block(self) -> str | None:
        return budget_block(self.config.routing, self.tiers.settings("large"), self.store, self._started)

    async def _recall(self, turn: TurnState) -> MemoryRecalled | None:
        """Put relevant memories in the turn's system prompt; say so when memory is off."""
        assert self.memory is not None
        recalled = await self.memory.recall(turn.text, turn.embedding, estimate_tokens)
        turn.memory = recalled.to_dict()
        block = self.memory.prompt_block(recalled)
        if not block:
            return None
        turn.system = f"{turn.system}\n\n{block}" if turn.system else block
        event = MemoryRecalled(turn.memory["recalled"], recalled.tokens, recalled.ms)
        turn.events.append(event.to_dict())
        return event

    def _remember_later(self, turn: TurnState, turn_id: int) -> None:
        """Store the exchange and its facts in the background, off the reply's path."""
        assert self.memory is not None
        memory, cid, answer = self.memory, self.conversation_id, turn.text_so_far

        async def remember() -> None:
            await memory.remember_turn(await self.backend("small"), turn.text, answer, cid, turn_id)

        task = asyncio.ensure_future(remember())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for background memory work (a script's last turn must not lose its facts)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

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

    def _save(self, turn: TurnState, status: TurnStatus, error: str | None, stats: TurnStats | None) -> int:
        """Store the turn (one transaction) and add it to the history the next turn sees."""
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
            error, turn.events, usage,
        )  # fmt: skip
        turn_id = self.store.save_turn(record)
        self.last_turn_id = turn_id
        turn.saved = True
        if status != "failed":
            self.history.append(Message("user", turn.text))
            if answer:
                self.history.append(Message("assistant", answer))
        return turn_id

    # -- for scripts --------------------------------------------------------------------

    def ask(self, text: str, route: Route | str | None = None) -> TurnStats:
        """Run one turn synchronously; raises ``SlmchatError`` if it fails."""
        return self._run(self._collect(text, route))

    async def _collect(self, text: str, route: Route | str | None) -> TurnStats:
        last: Event | None = None
        async for event in self.turn(text, route):
            last = event
        if isinstance(last, TurnFailed):
            raise SlmchatError(last.error, last.hint)
        assert isinstance(last, TurnDone), "a turn always ends with TurnDone or TurnFailed"
        return last.stats

    def _run(self, coro: Any) -> Any:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    async def aclose(self) -> None:
        await self.settle()
        await self.tiers.aclose()

    def close(self) -> None:
        """Release backends and the store (for sync users of ``ask``)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
        self.store.close()
