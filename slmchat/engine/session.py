"""The session engine: the one place where a turn is assembled.

``Session.turn`` reads top to bottom as the pipeline in DESIGN.md: route, recall, build the
prompt, stream from the chosen backend, measure, store, and finish with ``TurnDone`` (or
``TurnFailed``). Every event leaves through ``_emit``, so what a turn stores is what it
yielded. Faces only consume events; sync code uses ``stream`` and ``ask``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Self

from slmchat.engine.answering import Answering
from slmchat.engine.background import BackgroundWork
from slmchat.engine.channel import EventChannel
from slmchat.engine.events import (
    Event,
    RouteDecided,
    TurnDone,
    TurnFailed,
    TurnStatus,
)
from slmchat.engine.remembering import Remembering
from slmchat.engine.route_calls import RouteCalls
from slmchat.engine.sync_bridge import LoopThread, SyncCalls, running_loop
from slmchat.engine.tiers import Tiers
from slmchat.engine.turn_saving import TurnSaving
from slmchat.engine.turn_state import TurnState
from slmchat.infra import paths
from slmchat.infra.backends import ChatBackend
from slmchat.infra.backends.base import CancelToken, Message, StreamEnd, Usage
from slmchat.infra.config import Config, TierConfig, load_config
from slmchat.infra.errors import SlmchatError
from slmchat.infra.redact import redact
from slmchat.infra.store import Store, new_conversation_id
from slmchat.memory.manager import Memory
from slmchat.routing import Route, Router, Tier
from slmchat.tools.agent import AgentSettings, CircuitBreaker
from slmchat.tools.approval import ApprovalDesk, ApprovalPolicy
from slmchat.tools.registry import Toolbox, load_tools

#: a lone surrogate: an undecodable byte of a question read with surrogateescape (argv, stdin)
_SURROGATE = re.compile("[\ud800-\udfff]")


class Session(Remembering, Answering, RouteCalls, TurnSaving, EventChannel, SyncCalls):
    """A conversation with a small and an optional large tier.

    ``async for event in session.turn(text)`` from async code; ``for event in
    session.stream(text)`` or ``session.ask(text)`` from sync code (with or without a running
    event loop). ``with Session() as s`` / ``async with Session() as s`` close everything.
    ``cancel()`` stops the running turn; its partial answer is kept.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        store: Store | None = None,
        conversation_id: str | None = None,
        resume_latest: bool = False,
        debug: bool = False,
        backends: dict[Tier, ChatBackend] | None = None,
        router: Router | None = None,
        tools: Toolbox | None = None,
        approval: ApprovalPolicy | None = None,
        memory: Memory | None = None,
    ) -> None:
        """``backends`` supplies ready backend objects (a custom one, or one shared between sessions).

        ``tools`` replaces the tools from the config. ``approval`` is what happens when a tool
        that requires approval is called: "ask" (an ``ApprovalRequested`` event that a face
        answers with ``approve``), "always" or "never"; default: the config's ``tools.approve``.
        """
        self.config = config or load_config()
        self.store = store or Store(paths.database_file())
        self.debug = debug
        self.route = Route(self.config.route)
        self.router = router or Router(threshold=self.config.routing.threshold)
        self.status = "idle"  # what the session is doing, from its own events (for status bars)
        self.tiers = Tiers(self.config, backends, self._emit_session)
        self._cancel: CancelToken | None = None
        self._sync: LoopThread | None = None
        self._closed = False
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event | None]]] = []
        self._side: list[Event] = []  # events raised inside a turn, waiting for its next yield
        self._turn_running = False
        self.history: list[Message] = []
        self._window_dropped = 0  # messages of the history the last model call's window left out
        self.last_turn_id: int | None = None
        self._started = time.time()  # the session budget counts from here
        self.toolbox = tools if tools is not None else load_tools(self.config.tools.enabled)
        self.use_tools = True  # the session switch; a turn can still say otherwise
        enabled = self.config.memory.enabled
        self.memory = memory if memory is not None else (Memory(self.config.memory) if enabled else None)
        self.use_memory = True  # the session switch for memory
        # remembering turns waits until the session is idle, and a new turn pauses it
        self.background = BackgroundWork(self.config.memory.idle_s)
        self._adopted = False  # memory work an earlier session left pending was queued
        self.approvals = ApprovalDesk(approval or self.config.tools.approve)  # type: ignore[arg-type]
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
            if row["status"] == "failed" or row["superseded"]:
                continue  # a question that got no answer, or an answer set aside, is not sent again
            self.history.append(Message("user", row["user_text"]))
            if row["answer"]:
                self.history.append(Message("assistant", row["answer"]))
        return conversation_id

    def switch_conversation(self, conversation_id: str) -> str:
        """Continue a stored conversation (an id or its prefix) from the next turn on; returns its id."""
        history, self.history = self.history, []
        try:
            self.conversation_id = self._open_conversation(conversation_id, False)
        except Exception:
            self.history = history
            raise
        self._window_dropped = 0
        return self.conversation_id

    def new_conversation(self) -> str:
        """Start a fresh conversation (the old one stays in the store)."""
        self.history, self._window_dropped = [], 0
        self.conversation_id = new_conversation_id()
        return self.conversation_id

    def feedback(self, good: bool, turn_id: int | None = None) -> int:
        """Thumbs up or down on a turn (default: the last one); calibration learns from these."""
        turn_id = turn_id or self.last_turn_id
        if turn_id is None:
            raise SlmchatError("there is no answer to judge yet", "ask something first")
        self.store.set_feedback(turn_id, good)
        return turn_id

    def approve(self, request_id: str, allowed: bool = True) -> bool:
        """Answer an ``ApprovalRequested`` event (from any thread); False if it was not open."""
        return self.approvals.answer(request_id, allowed)

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

    def start_loading(self, tier: Tier = "small") -> asyncio.Future[ChatBackend]:
        """Begin loading in the background so a face is usable at once (needs a running loop).

        The router's embedding model and the memory database open too, so the first turn does
        not pay for them. Progress arrives as ``ModelLoading`` / ``ModelReady`` / ``ModelFailed``.
        """
        embedder = self.router.scorer.embedder if self.router.uses_embedding else None
        warmers = [getattr(embedder, "load", None) or (lambda: self.router.embed("warm up"))] if embedder else []
        if self.memory is not None and not self.memory.nothing_stored():  # else Chroma would only compete
            warmers.append(self.memory.store)  # a failure here is reported by the first turn
        for warmer in warmers:
            warm = asyncio.ensure_future(asyncio.to_thread(warmer))
            warm.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self._adopt_later()
        loading = asyncio.ensure_future(self.backend(tier))
        loading.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        return loading

    # -- one turn -----------------------------------------------------------------------

    @property
    def turn_running(self) -> bool:
        """True while a turn streams (switching conversations then would split it)."""
        return self._turn_running

    def cancel(self) -> None:
        """Stop the running turn promptly; it ends as ``interrupted`` with its partial answer."""
        if self._cancel is not None:
            self._cancel.cancel()
        self.approvals.deny_all()

    async def turn(
        self, text: str, *, route: Route | str | None = None, tools: bool | None = None, memory: bool | None = None
    ) -> AsyncIterator[Event]:
        """Run one turn and stream its events; always ends with TurnDone or TurnFailed.

        ``route`` forces a tier for this turn ("small", "large") or lets the router decide ("auto").
        ``tools`` offers (True) or withholds (False) the tools for this turn; default: ``use_tools``.
        ``memory=False`` keeps the turn out of memory: nothing recalled, nothing stored.
        Background memory work pauses from the turn's start to its end.
        """
        if self._closed:
            raise SlmchatError("this session is closed", "open a new Session")
        self.background.turn_started()
        try:
            async with aclosing(self._turn(text, route, tools, memory)) as events:
                async for event in events:
                    yield event
        finally:
            self.background.turn_ended()

    async def _turn(
        self, text: str, route: Route | str | None, tools: bool | None, memory: bool | None
    ) -> AsyncIterator[Event]:
        # undecodable bytes become U+FFFD first: the stored question, the embedding and the prompt agree
        text = _SURROGATE.sub("\ufffd", text)
        started = time.perf_counter()
        last = self.history[-1] if self.history else None
        asked = last.content if last is not None and last.role == "assistant" else None  # what this replies to
        route = Route(route) if route is not None else self.route
        cancel = self._cancel = CancelToken()
        try:
            decision, embedding = await self._decide(text, route)
        except SlmchatError as refused:  # too long for every tier it may use: refused before anything is stored
            if self.debug:
                raise
            self._cancel = None
            failed = TurnFailed(refused.message, refused.hint, "", self.conversation_id, None)
            self._publish(failed)
            yield failed
            return
        turn = TurnState(
            text, decision, started, embedding=embedding, ran_on=decision.tier, system=self.config.system_prompt
        )
        self._turn_running, self._side, self.status = True, [], "thinking"
        remembering = self.memory is not None and (self.use_memory if memory is None else memory)
        turn.remember = remembering and (self.config.memory.extract or self.config.memory.store_exchanges)
        try:
            await asyncio.to_thread(self._begin, turn)  # the question is stored before any answer
            yield self._emit(turn, RouteDecided(decision))  # inside: a consumer that leaves here still closes the turn
            if remembering and (recalled := await self._recall(turn)) is not None:
                yield self._emit(turn, recalled)
            # choosing the relevant tools embeds their descriptions once: off the loop
            offered = await asyncio.to_thread(self._offered_tools, turn, tools) if self.toolbox else self.toolbox
            runner = self._tool_turn(turn, cancel, offered) if offered else self._plain_turn(turn, cancel)
            async for event in runner:
                for side in self._flush(turn):
                    yield side
                yield self._emit(turn, event)
            for side in self._flush(turn):
                yield side
            self._window_dropped = turn.dropped
            turn.finished_at = time.perf_counter()
            if turn.end is None:
                raise SlmchatError(f"{decision.model} ended its stream without finishing", "try again")
            status: TurnStatus = "interrupted" if turn.end.finish_reason == "cancelled" else "ok"
            done = await self._save(turn, status, None, lambda tid, stats: TurnDone(replace(stats, turn_id=tid)))
            if remembering and status == "ok" and isinstance(done, TurnDone) and done.stats.turn_id is not None:
                self._remember_later(self.conversation_id, done.stats.turn_id, turn.text, turn.text_so_far, asked)
            self._adopt_later()
            yield done
        except Exception as exc:
            if self.debug:
                raise
            for side in self._flush(turn):
                yield side
            if isinstance(exc, SlmchatError):
                yield await self._failed(turn, exc.message, exc.hint)
            else:
                # an exception message may carry a key a server echoed back
                yield await self._failed(
                    turn, redact(f"unexpected error: {type(exc).__name__}: {exc}"), "run with --debug"
                )
        finally:
            # the consumer went away (Ctrl-C, task cancelled, loop closed): stop the model, keep the partial answer
            cancel.cancel()
            self.approvals.deny_all()
            if not turn.saved:
                turn.end = turn.end or StreamEnd(Usage(None, None, estimated=True), "cancelled")
                turn.finished_at = time.perf_counter()
                self._record_call(turn)
                self._save_now(turn, "interrupted", None, self._stats(turn, "interrupted"))
            self._cancel, self._turn_running, self._side = None, False, []
            self.status = "idle"

    # -- closing ------------------------------------------------------------------------

    async def aclose(self, *, _blocked: asyncio.AbstractEventLoop | None = None) -> None:
        """Finish background work, then close the models, memory and the store; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        if self.memory is not None:
            await self.settle(blocked=_blocked, timeout=self.config.memory.exit_wait_s)
        self.background.stop()
        await self.tiers.aclose()
        if self.memory is not None:
            await asyncio.to_thread(self.memory.close)
        self.store.close()
        self._publish(None)  # ends every events() subscription
        if self._sync is not None and self._sync.loop is not running_loop():
            self._sync.stop()  # close() stops the thread it runs on itself
            self._sync = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
