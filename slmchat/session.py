"""The session engine: the one place where a turn is assembled.

``Session.turn`` reads top to bottom as the pipeline in DESIGN.md: route, build the prompt,
stream from the chosen backend, measure, store, and finish with ``TurnDone`` (or
``TurnFailed``). Faces only consume its events.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from slmchat import paths
from slmchat.backends import ChatBackend, ModelRef, create_backend, parse_model_name
from slmchat.backends.base import CancelToken, GenParams, Message, StreamEnd, Usage
from slmchat.config import Config, TierConfig, load_config
from slmchat.errors import SlmchatError
from slmchat.events import Event, Latency, RouteDecided, Token, TurnDone, TurnFailed, TurnStats
from slmchat.routing import DefaultRouter, Route, RouteDecision, Tier
from slmchat.store import Store, TurnRecord
from slmchat.window import fit_window

#: history budget for backends that do not report their context window
DEFAULT_HISTORY_TOKENS = 4096


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
    ) -> None:
        """``backends`` supplies ready backend objects (a custom one, or one shared between sessions)."""
        self.config = config or load_config()
        self.store = store or Store(paths.database_file())
        self.debug = debug
        self.route = Route(self.config.route)
        self.router = DefaultRouter()
        self.status = "idle"
        self._on_progress = on_progress
        self._tiers: dict[Tier, TierConfig | None] = {"small": self.config.small, "large": self.config.large}
        self._refs: dict[Tier, ModelRef | None] = {
            tier: parse_model_name(cfg.model, self.config.aliases) if cfg else None for tier, cfg in self._tiers.items()
        }
        self._backends: dict[Tier, ChatBackend] = dict(backends or {})
        self._shared = set(self._backends.values())
        for tier, given in self._backends.items():
            self._refs[tier] = ModelRef(given.name, given.model)
            self._tiers[tier] = self._tiers[tier] or TierConfig(model=str(self._refs[tier]))
        self._loading: dict[Tier, asyncio.Task[ChatBackend]] = {}
        self._cancel: CancelToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.history: list[Message] = []
        self.conversation_id = self._open_conversation(conversation_id, resume_latest)

    # -- conversation -------------------------------------------------------------------

    def _open_conversation(self, conversation_id: str | None, resume_latest: bool) -> str:
        if conversation_id is None and resume_latest:
            conversation_id = self.store.latest_conversation()
        if conversation_id is None:
            return self.store.new_conversation()
        conversation_id = self.store.find_conversation(conversation_id)
        for row in self.store.turns(conversation_id):
            self.history.append(Message("user", row["user_text"]))
            if row["answer"]:
                self.history.append(Message("assistant", row["answer"]))
        return conversation_id

    def new_conversation(self) -> str:
        """Start a fresh conversation (the old one stays in the store)."""
        self.history = []
        self.conversation_id = self.store.new_conversation()
        return self.conversation_id

    # -- models -------------------------------------------------------------------------

    def model_name(self, tier: Tier) -> str | None:
        ref = self._refs[tier]
        return str(ref) if ref else None

    def set_model(self, tier: Tier, name: str) -> str:
        """Use another model for ``tier`` from the next turn on; returns the resolved name."""
        ref = parse_model_name(name, self.config.aliases)
        cfg = self._tiers[tier] or TierConfig(model=name)
        self._tiers[tier] = cfg.model_copy(update={"model": name})
        self._refs[tier] = ref
        old = self._backends.pop(tier, None)
        self._loading.pop(tier, None)
        if old is not None:
            asyncio.ensure_future(old.aclose()) if _loop_running() else None
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
        if cfg.api_key_env:
            options["api_key"] = os.environ.get(cfg.api_key_env)
            options["api_key_env"] = cfg.api_key_env
        backend = create_backend(ref, options)
        self._progress(f"{tier}: loading {ref}")
        await backend.load(lambda msg: self._progress(f"{tier}: {msg}"))
        self._progress(f"{tier}: ready ({ref})")
        return backend

    def start_loading(self, tier: Tier = "small") -> asyncio.Future[ChatBackend]:
        """Begin loading in the background so a face is usable at once (needs a running loop)."""
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
        decision = self.router.decide(text, route, {t: self.model_name(t) for t in ("small", "large")})
        events: list[dict[str, Any]] = [RouteDecided(decision).to_dict()]
        yield RouteDecided(decision)

        answer: list[str] = []
        first_token_at: float | None = None
        end: StreamEnd | None = None
        dropped = 0
        saved = False
        try:
            backend = await self.backend(decision.tier)
            cfg = self._tiers[decision.tier]
            assert cfg is not None
            window = fit_window(
                self.config.system_prompt,
                self.history,
                text,
                self._history_budget(backend, cfg),
                lambda s: backend.count_tokens(s)[0],
            )
            dropped = window.dropped
            params = GenParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed)
            async for item in backend.stream(window.messages, params, cancel):
                if isinstance(item, StreamEnd):
                    end = item
                    break
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                answer.append(item)
                yield Token(item)
            finished_at = time.perf_counter()
            if end is None:
                raise SlmchatError(f"{decision.model} ended its stream without finishing", "try again")
            status = "interrupted" if end.finish_reason == "cancelled" else "ok"
            stats = self._finish(decision, "".join(answer), status, end, started, first_token_at, finished_at, dropped)
            events.append(TurnDone(stats).to_dict())
            turn_id = self._save(text, stats.answer, status, decision, None, events, stats)
            saved = True
            stats = _with_turn_id(stats, turn_id)
            yield TurnDone(stats)
        except SlmchatError as exc:
            failed = TurnFailed(exc.message, exc.hint, "".join(answer), self.conversation_id)
            events.append(failed.to_dict())
            turn_id = self._save(text, "".join(answer), "failed", decision, exc.message, events, None)
            saved = True
            if self.debug:
                raise
            yield TurnFailed(exc.message, exc.hint, "".join(answer), self.conversation_id, turn_id)
        except Exception as exc:
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            events.append(TurnFailed(message, "run with --debug for the traceback").to_dict())
            turn_id = self._save(text, "".join(answer), "failed", decision, message, events, None)
            saved = True
            if self.debug:
                raise
            hint = "run with --debug for the traceback"
            yield TurnFailed(message, hint, "".join(answer), self.conversation_id, turn_id)
        finally:
            # the consumer went away (Ctrl-C, task cancelled, loop closed): stop the model, keep the partial answer
            cancel.cancel()
            if not saved:
                end = end or StreamEnd(Usage(None, None, estimated=True), "cancelled")
                stats = self._finish(
                    decision, "".join(answer), "interrupted", end, started, first_token_at, time.perf_counter(), dropped
                )
                self._save(text, stats.answer, "interrupted", decision, None, events, stats)
            self._cancel = None

    def _history_budget(self, backend: ChatBackend, cfg: TierConfig) -> int:
        if cfg.context_tokens:
            return cfg.context_tokens
        window = backend.context_tokens
        return max(256, window - cfg.max_tokens) if window else DEFAULT_HISTORY_TOKENS

    def _finish(
        self,
        decision: RouteDecision,
        answer: str,
        status: str,
        end: StreamEnd,
        started: float,
        first_token_at: float | None,
        finished_at: float,
        dropped: int,
    ) -> TurnStats:
        usage = end.usage
        if usage.completion_tokens is None and answer:
            tier_backend = self._backends.get(decision.tier)
            count = tier_backend.count_tokens(answer)[0] if tier_backend else None
            usage = Usage(usage.prompt_tokens, count, estimated=True)
        decode_s = finished_at - first_token_at if first_token_at is not None else 0.0
        tps = usage.completion_tokens / decode_s if usage.completion_tokens and decode_s > 0 else None
        latency = Latency(
            ttft_ms=(first_token_at - started) * 1000 if first_token_at is not None else None,
            total_ms=(finished_at - started) * 1000,
            tokens_per_s=tps,
        )
        return TurnStats(
            conversation_id=self.conversation_id,
            turn_id=None,
            answer=answer,
            status=status,  # type: ignore[arg-type]
            route=decision,
            usage=usage,
            latency=latency,
            finish_reason=end.finish_reason,
            history_dropped=dropped,
        )

    def _save(
        self,
        text: str,
        answer: str,
        status: str,
        decision: RouteDecision,
        error: str | None,
        events: list[dict[str, Any]],
        stats: TurnStats | None,
    ) -> int:
        usage = None
        if stats is not None:
            usage = {"tier": decision.tier, "model": decision.model, **stats.usage.to_dict(), **stats.latency.to_dict()}
        turn_id = self.store.save_turn(
            TurnRecord(
                self.conversation_id,
                text,
                answer,
                status,
                decision.tier,
                decision.model,
                decision.reason,
                error,
                events,
                usage,
            )
        )
        self.history.append(Message("user", text))
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
        for backend in self._backends.values():
            if backend not in self._shared:
                await backend.aclose()
        self._backends.clear()

    def close(self) -> None:
        """Release backends and the store (for sync users of ``ask``)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
            self._loop.close()
        self.store.close()


def _with_turn_id(stats: TurnStats, turn_id: int) -> TurnStats:
    from dataclasses import replace

    return replace(stats, turn_id=turn_id)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
