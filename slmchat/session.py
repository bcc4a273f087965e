"""The session engine: the one place where a turn is assembled.

``Session.turn`` reads top to bottom as the pipeline in DESIGN.md: route, build the prompt,
stream from the chosen backend, measure, store, and finish with ``TurnDone`` (or
``TurnFailed``). Faces only consume its events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import numpy as np

from slmchat import paths
from slmchat.accounting.pricing import TurnCost, call_costs, price_for, total_cost
from slmchat.backends import ChatBackend
from slmchat.backends.base import CancelToken, GenParams, Message, StreamEnd, Usage
from slmchat.config import Config, TierConfig, load_config
from slmchat.embedding import default_embedder
from slmchat.errors import SlmchatError
from slmchat.events import (
    Escalated,
    Event,
    RouteDecided,
    Token,
    TurnDone,
    TurnFailed,
    TurnStats,
    TurnStatus,
)
from slmchat.routing import Route, RouteDecision, Router, Tier
from slmchat.routing.budget import budget_block
from slmchat.routing.signals import failure_signal, repetition_loop
from slmchat.store import Store, TurnRecord, new_conversation_id
from slmchat.tiers import Tiers
from slmchat.tools.agent import AgentSettings, ApproveFn, CircuitBreaker, ToolLoop, approver
from slmchat.tools.calls import ReplySchema
from slmchat.tools.prompt import openai_tools
from slmchat.tools.registry import Toolbox, load_tools
from slmchat.tools.relevance import relevant_toolbox
from slmchat.turn_state import TurnState
from slmchat.window import fit_window, history_budget

LATENCY_COLUMNS = ("ttft_ms", "total_ms", "tokens_per_s")


class Session:
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

        The router's embedding model warms up too, so the first turn does not pay for it.
        """
        if self.router.uses_embedding:
            warm = asyncio.ensure_future(asyncio.to_thread(self.router.embed, "warm up"))
            warm.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        return asyncio.ensure_future(self.backend(tier))

    # -- one turn -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running turn promptly; it ends as ``interrupted`` with its partial answer."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def turn(
        self, text: str, route: Route | str | None = None, tools: bool | None = None
    ) -> AsyncIterator[Event]:
        """Run one turn and stream its events; always ends with TurnDone or TurnFailed.

        ``tools`` offers (True) or withholds (False) the tools for this turn; default: ``use_tools``.
        """
        started = time.perf_counter()
        route = Route(route) if route is not None else self.route
        cancel = self._cancel = CancelToken()
        decision, embedding = self._route(text, route)
        turn = TurnState(text, decision, started, embedding=embedding, ran_on=decision.tier)
        turn.events.append(RouteDecided(decision).to_dict())
        yield RouteDecided(decision)
        try:
            offered = self._offered_tools(turn, tools)
            runner = self._tool_turn(turn, cancel, offered) if offered else self._plain_turn(turn, cancel)
            async for event in runner:
                yield event
            turn.finished_at = time.perf_counter()
            if turn.end is None:
                raise SlmchatError(f"{decision.model} ended its stream without finishing", "try again")
            stats = self._stats(turn, "interrupted" if turn.end.finish_reason == "cancelled" else "ok")
            turn.events.append(TurnDone(stats).to_dict())
            yield TurnDone(replace(stats, turn_id=self._save(turn, stats.status, None, stats)))
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

    async def _stream(
        self,
        tier: Tier,
        turn: TurnState,
        cancel: CancelToken,
        system: str | None = None,
        extra: Sequence[Message] = (),
        schema: ReplySchema | None = None,
    ) -> AsyncIterator[str]:
        """One model call: fit the window for ``tier``, stream raw text, stop the call if it loops.

        ``extra`` are the turn's own messages after the question (tool calls and results).
        """
        waiting = time.perf_counter()
        backend = await self.backend(tier)
        turn.load_s += time.perf_counter() - waiting  # loading the model, not routing
        cfg = self.tiers.settings(tier)
        assert cfg is not None
        count = lambda s: backend.count_tokens(s)[0]  # noqa: E731
        budget = history_budget(cfg.context_tokens, backend.context_tokens, cfg.max_tokens)
        budget -= sum(count(m.content) for m in extra)
        window = fit_window(system or self.config.system_prompt, self.history, turn.text, budget, count)
        turn.dropped = window.dropped
        params = GenParams(
            max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed,
            json_schema=schema.schema if schema else None,
            tools=openai_tools([s for s in self.toolbox.specs if s.name in schema.tools]) if schema else None,
        )  # fmt: skip
        call = CancelToken(parent=cancel)  # stops this call alone when it loops
        turn.in_flight = (tier, time.perf_counter())
        raw: list[str] = []
        # run the stream to its end (StreamEnd is its last item) so no generator is left
        # suspended for the garbage collector to close on a loop that may be gone
        async with aclosing(backend.stream([*window.messages, *extra], params, call)) as stream:
            async for item in stream:
                if isinstance(item, StreamEnd):
                    turn.end = item
                    continue
                raw.append(item)
                yield item
                if tier == "small" and len(raw) % 8 == 0 and turn.looping is None:
                    turn.looping = repetition_loop("".join(raw))
                    if turn.looping is not None:
                        call.cancel()
        turn.finished_at = time.perf_counter()
        self._record_call(turn)

    async def _call(self, tier: Tier, turn: TurnState, cancel: CancelToken) -> AsyncIterator[Event]:
        """The plain answer of a turn without tools, token by token."""
        async for piece in self._stream(tier, turn, cancel):
            if turn.first_token_at is None:
                turn.first_token_at = time.perf_counter()
            turn.answer.append(piece)
            yield Token(piece)

    async def _plain_turn(self, turn: TurnState, cancel: CancelToken) -> AsyncIterator[Event]:
        """An answer without tools; a failure signal redoes it on the large tier."""
        decision = turn.decision
        async for event in self._call(decision.tier, turn, cancel):
            yield event
        signal = failure_signal(turn.text_so_far, turn.end.finish_reason if turn.end else "", turn.looping)
        if turn.looping is not None and turn.end is not None and not cancel.cancelled:
            turn.end = replace(turn.end, finish_reason="loop")  # stopped by the engine, not the user
        if signal and decision.tier == "small" and decision.override is not Route.SMALL and not cancel.cancelled:
            escalated = self._escalation(signal, turn)
            turn.escalation = escalated.reason
            turn.events.append(escalated.to_dict())
            yield escalated
            if escalated.to_tier == "large":
                turn.restart("large")
                async for event in self._call("large", turn, cancel):
                    yield event

    def _offered_tools(self, turn: TurnState, wanted: bool | None) -> Toolbox:
        """The tools this turn offers: none if switched off, all if asked for, else the relevant ones."""
        if not self.toolbox or not (self.use_tools if wanted is None else wanted):
            return Toolbox()
        if wanted:
            return self.toolbox
        embedder = self.router.scorer.embedder if self.router.uses_embedding else default_embedder()
        return relevant_toolbox(self.toolbox, turn.text, turn.embedding, embedder)

    async def _tool_turn(self, turn: TurnState, cancel: CancelToken, toolbox: Toolbox) -> AsyncIterator[Event]:
        """A turn with tools: the agent loop asks, calls, recovers; a step may go to the large tier."""
        decision = turn.decision
        may_escalate = decision.tier == "small" and decision.override is not Route.SMALL

        def step(tier: str, convo: list[Message], schema: ReplySchema | None) -> AsyncIterator[str]:
            turn.ran_on = tier  # type: ignore[assignment]
            turn.looping = None
            return self._stream(tier, turn, cancel, convo[0].content, convo[2:], schema)  # type: ignore[arg-type]

        loop = ToolLoop(
            toolbox, step, settings=AgentSettings.from_config(self.config.tools), breaker=self._breaker,
            approve=approver(self.config.tools.approve, self.approve),
            escalate=(lambda reason: self._escalation(reason, turn, "step")) if may_escalate else None,
            tier=decision.tier,
        )  # fmt: skip
        turn.tool_run = loop.result
        async for event in loop.run(self.config.system_prompt, [Message("user", turn.text)]):
            if isinstance(event, Token):
                turn.first_token_at = turn.first_token_at or time.perf_counter()
                turn.answer.append(event.text)
            else:
                turn.events.append(event.to_dict())
            if isinstance(event, Escalated):
                turn.escalation = event.reason
            yield event
        turn.answer = [loop.result.answer]  # what the loop settled on (not a call the user saw streamed)

    def _record_call(self, turn: TurnState) -> None:
        """Close the model call in flight (also when the turn was abandoned halfway through it)."""
        if turn.in_flight is not None:
            turn.close_call(self.model_name(turn.in_flight[0]) or "")

    def _escalation(self, signal: str, turn: TurnState, scope: str = "answer") -> Escalated:
        """Where a failed small-tier answer (or step) goes: the large tier if there is one."""
        large = self.model_name("large")
        usage = turn.end.usage if turn.end else Usage(None, None, estimated=True)
        blocked = self._budget_block() if large is not None else None
        small = self.model_name("small") or ""
        kept = "the answer stands" if scope == "answer" else "the small tier answers without tools"
        if blocked:
            return Escalated(f"{signal}; {blocked}, so {kept}", "small", "small", small, usage, scope)
        if large is None:
            return Escalated(f"{signal}; no large tier is configured, so {kept}", "small", "small", small, usage, scope)
        return Escalated(signal, "small", "large", large, usage, scope)

    def _route(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """Score the request (one embedding per turn, kept for memory) and decide the tier."""
        models = {t: self.model_name(t) for t in ("small", "large")}
        limit = self.config.routing.long_context_tokens
        return self.router.decide_turn(text, self.history, route, models, self._budget_block(), limit)  # type: ignore[arg-type]

    def _budget_block(self) -> str | None:
        return budget_block(self.config.routing, self.tiers.settings("large"), self.store, self._started)

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
        await self.tiers.aclose()

    def close(self) -> None:
        """Release backends and the store (for sync users of ``ask``)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
        self.store.close()
