"""The session engine: the one place where a turn is assembled.

``Session.turn`` reads top to bottom as the pipeline in DESIGN.md: route, build the prompt,
stream from the chosen backend, measure, store, and finish with ``TurnDone`` (or
``TurnFailed``). Faces only consume its events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import numpy as np

from slmchat import paths
from slmchat.accounting.pricing import TurnCost, call_costs, price_for, total_cost
from slmchat.backends import ChatBackend, ModelRef, create_backend, parse_model_name
from slmchat.backends.base import CancelToken, GenParams, Message, StreamEnd, Usage, estimate_tokens
from slmchat.config import Config, TierConfig, load_config
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
from slmchat.routing import Route, RouteContext, RouteDecision, Router, Tier
from slmchat.routing.budget import budget_block
from slmchat.routing.signals import failure_signal, repetition_loop
from slmchat.store import Store, TurnRecord, new_conversation_id
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
    ) -> None:
        """``backends`` supplies ready backend objects (a custom one, or one shared between sessions)."""
        self.config = config or load_config()
        self.store = store or Store(paths.database_file())
        self.debug = debug
        self.route = Route(self.config.route)
        self.router = router or Router(threshold=self.config.routing.threshold)
        self.status = "idle"
        self._on_progress = on_progress
        self._tiers: dict[Tier, TierConfig | None] = {"small": self.config.small, "large": self.config.large}
        self._backends: dict[Tier, ChatBackend] = dict(backends or {})
        self._shared = set(self._backends.values())
        self._refs: dict[Tier, ModelRef | None] = {}
        for tier, cfg in self._tiers.items():
            given = self._backends.get(tier)
            if given is not None:  # a supplied backend names itself
                self._refs[tier] = ModelRef(given.name, given.model)
                self._tiers[tier] = cfg or TierConfig(model=str(self._refs[tier]))
            else:
                self._refs[tier] = parse_model_name(cfg.model, self.config.aliases) if cfg else None
        self._loading: dict[Tier, asyncio.Task[ChatBackend]] = {}
        self._retired: list[ChatBackend] = []
        self._cancel: CancelToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.history: list[Message] = []
        self.last_turn_id: int | None = None
        self._started = time.time()  # the session budget counts from here
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
        return self._tiers[tier]

    def model_name(self, tier: Tier) -> str | None:
        ref = self._refs[tier]
        return str(ref) if ref else None

    def set_model(self, tier: Tier, name: str) -> str:
        """Use another model for ``tier`` from the next turn on; returns the resolved name."""
        ref = parse_model_name(name, self.config.aliases)
        cfg = self._tiers[tier]
        previous = self._refs[tier]
        if cfg is None or previous is None or previous.backend != ref.backend:
            # another backend: the old server address, key and options do not apply to it
            keep = {"max_tokens", "temperature", "seed", "context_tokens"}
            cfg = TierConfig(model=name, **(cfg.model_dump(include=keep) if cfg else {}))
        self._tiers[tier] = cfg.model_copy(update={"model": name})
        self._refs[tier] = ref
        old = self._backends.pop(tier, None)
        self._loading.pop(tier, None)
        if old is not None and old not in self._shared:
            self._retired.append(old)  # closed with the session
        return str(ref)

    def _progress(self, message: str) -> None:
        self.status = message
        if self._on_progress:
            self._on_progress(message)

    async def backend(self, tier: Tier) -> ChatBackend:
        """The loaded backend of ``tier``; loads it once, shared by concurrent callers."""
        if tier in self._backends:
            return self._backends[tier]
        task = self._loading.get(tier)
        if task is None:
            task = self._loading[tier] = asyncio.ensure_future(self._load(tier))
        try:
            backend = await task
        except BaseException:
            self._loading.pop(tier, None)  # let the next turn try again
            raise
        self._backends[tier] = backend
        return backend

    async def _load(self, tier: Tier) -> ChatBackend:
        ref, cfg = self._refs[tier], self._tiers[tier]
        if ref is None or cfg is None:
            raise SlmchatError(f"no {tier} tier is configured", "add a [large] section to the config")
        options: dict[str, Any] = {"base_url": cfg.base_url, "timeout_s": cfg.timeout_s, **cfg.options}
        if cfg.api_key_env:  # the backend resolves the key itself (environment, then keychain)
            options["api_key_env"] = cfg.api_key_env
        backend = create_backend(ref, options)
        self._progress(f"{tier}: loading {ref}")
        await backend.load(lambda msg: self._progress(f"{tier}: {msg}"))
        self._progress(f"{tier}: ready ({ref})")
        return backend

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

    async def turn(self, text: str, route: Route | str | None = None) -> AsyncIterator[Event]:
        """Run one turn and stream its events; always ends with TurnDone or TurnFailed."""
        started = time.perf_counter()
        route = Route(route) if route is not None else self.route
        cancel = self._cancel = CancelToken()
        decision, embedding = self._route(text, route)
        turn = TurnState(text, decision, started, embedding=embedding, ran_on=decision.tier)
        turn.events.append(RouteDecided(decision).to_dict())
        yield RouteDecided(decision)
        try:
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

    async def _call(self, tier: Tier, turn: TurnState, cancel: CancelToken) -> AsyncIterator[Event]:
        """One model call of the turn: build the window for ``tier``, stream, watch for loops."""
        waiting = time.perf_counter()
        backend = await self.backend(tier)
        turn.load_s += time.perf_counter() - waiting  # loading the model, not routing
        cfg = self._tiers[tier]
        assert cfg is not None
        budget = history_budget(cfg.context_tokens, backend.context_tokens, cfg.max_tokens)
        window = fit_window(
            self.config.system_prompt, self.history, turn.text, budget, lambda s: backend.count_tokens(s)[0]
        )
        turn.dropped = window.dropped
        params = GenParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed)
        call = CancelToken(parent=cancel)  # stops this call alone when it loops
        turn.in_flight = (tier, time.perf_counter())
        # run the stream to its end (StreamEnd is its last item) so no generator is left
        # suspended for the garbage collector to close on a loop that may be gone
        async with aclosing(backend.stream(window.messages, params, call)) as stream:
            async for item in stream:
                if isinstance(item, StreamEnd):
                    turn.end = item
                    continue
                if turn.first_token_at is None:
                    turn.first_token_at = time.perf_counter()
                turn.answer.append(item)
                yield Token(item)
                if tier == "small" and len(turn.answer) % 8 == 0 and turn.looping is None:
                    turn.looping = repetition_loop(turn.text_so_far)
                    if turn.looping is not None:
                        call.cancel()
        turn.finished_at = time.perf_counter()
        self._record_call(turn)

    def _record_call(self, turn: TurnState) -> None:
        """Close the model call in flight (also when the turn was abandoned halfway through it)."""
        if turn.in_flight is not None:
            turn.close_call(self.model_name(turn.in_flight[0]) or "")

    def _escalation(self, signal: str, turn: TurnState) -> Escalated:
        """Where a failed small-tier step goes: the large tier if there is one."""
        large = self.model_name("large")
        usage = turn.end.usage if turn.end else Usage(None, None, estimated=True)
        blocked = self._budget_block() if large is not None else None
        if blocked:
            return Escalated(f"{signal}; {blocked}, so the answer stands", "small", "small",
                             self.model_name("small") or "", usage)  # fmt: skip
        if large is None:
            return Escalated(f"{signal}; no large tier is configured, so the answer stands", "small", "small",
                             self.model_name("small") or "", usage)  # fmt: skip
        return Escalated(signal, "small", "large", large, usage)

    def _route(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """Score the request (one embedding per turn, kept for memory) and decide the tier."""
        context = RouteContext(
            text=text,
            history=self.history,
            context_tokens=sum(estimate_tokens(m.content) for m in self.history) + estimate_tokens(text),
            long_context_tokens=self.config.routing.long_context_tokens,
        )
        embedding, trouble = None, None
        if self.router.uses_embedding:
            try:
                embedding = self.router.embed(text)
            except SlmchatError as exc:  # the turn goes on, routed on the factors alone
                trouble = f"learned part off: {exc.message}"
                embedding = self.router.neutral_embedding()
        models = {t: self.model_name(t) for t in ("small", "large")}
        decision = self.router.decide(context, route, models, embedding, self._budget_block())  # type: ignore[arg-type]
        if trouble:
            decision = replace(decision, reason=f"{decision.reason} ({trouble})")
            embedding = None
        return decision, embedding

    def _budget_block(self) -> str | None:
        return budget_block(self.config.routing, self._tiers["large"], self.store, self._started)

    def _stats(self, turn: TurnState, status: TurnStatus) -> TurnStats:
        backend = self._backends.get(turn.ran_on or turn.decision.tier)
        costs = self._call_costs(turn)
        return turn.stats(status, self.conversation_id, backend.count_tokens if backend else None, total_cost(costs))

    def _call_costs(self, turn: TurnState) -> list[TurnCost]:
        prices = {
            tier: price_for(model, self._tiers[tier]) for tier in ("small", "large") if (model := self.model_name(tier))
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
        for backend in [*self._backends.values(), *self._retired]:
            if backend not in self._shared:
                await backend.aclose()
        self._retired.clear()
        self._backends.clear()

    def close(self) -> None:
        """Release backends and the store (for sync users of ``ask``)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
        self.store.close()
