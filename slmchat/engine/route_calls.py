"""Routing a turn and the spend caps, as the session sees them: a mixin of ``Session``.

``BudgetUse`` is re-exported here so faces draw budget meters from the engine, never from routing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slmchat.engine.window import PER_MESSAGE_OVERHEAD
from slmchat.infra.backends.llamacpp import DEFAULT_N_CTX
from slmchat.routing import Route, RouteDecision, Tier
from slmchat.routing.budget import BudgetUse, budget_block, budget_use
from slmchat.routing.fit import TEMPLATE_TOKENS, Fit, cautious_tokens, generous_tokens, place, refuse_early

if TYPE_CHECKING:
    import numpy as np

    from slmchat.engine.tiers import Tiers
    from slmchat.infra.backends import ChatBackend
    from slmchat.infra.backends.base import Message
    from slmchat.infra.config import Config
    from slmchat.infra.store import Store
    from slmchat.routing import Router

__all__ = ["BudgetUse", "RouteCalls"]

#: backends whose tokenizer comes with loading the model, on this machine (worth loading to count)
LOCAL_TOKENIZERS = ("llamacpp", "mlx")


class RouteCalls:
    """Where a turn runs (``preview_route``, ``_route``) and what the large tier may still spend (``budget``)."""

    config: Config
    store: Store
    router: Router
    tiers: Tiers
    history: list[Message]
    route: Route
    _started: float
    model_name: Any
    backend: Any

    async def preview_route(self, text: str, route: Route | str | None = None) -> RouteDecision:
        """Where ``text`` would run now and why, without running it (a notebook's ``--dry-run``)."""
        decision, _embedding = await self._decide(text, Route(route) if route else self.route)
        return decision

    async def _decide(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """``_route`` with the small model's own token count where an estimate cannot tell whether it fits.

        Such a question is near the small window: the small model is loaded first (it would be
        for the answer anyway) so the check counts with its tokenizer. A load that fails leaves the
        estimate; the turn reports the failure.
        """
        small = self._measure("small", text)
        name = self.model_name("small") or ""
        if small is not None and small.estimated and not small.fits and not small.too_long:
            if name.partition(":")[0] in LOCAL_TOKENIZERS:
                try:
                    await self.backend("small")
                except Exception:  # the turn's own load says what went wrong
                    pass
        return await asyncio.to_thread(self._route, text, route)

    def _route(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """Score the request (one embedding per turn, kept for memory) and decide the tier (off the loop).

        The question must fit the tier's window with room for the answer: a question too long for
        the small tier goes large, or raises ``ContextOverflow`` before anything is stored.
        """
        models = {t: self.model_name(t) for t in ("small", "large")}
        blocked = self._budget_block()
        small, large = self._measure("small", text), self._measure("large", text)
        assert small is not None  # the small tier is always configured
        refuse_early(route, small, large, blocked if large is not None else None)
        limit = self.config.routing.long_context_tokens
        if small.window is not None:  # long means: more than the small model holds
            limit = max(1, min(limit, small.window - small.max_tokens))
        decision, embedding = self.router.decide_turn(text, self.history, route, models, blocked, limit)
        return place(decision, small, large, models, blocked), embedding

    def _measure(self, tier: Tier, text: str) -> Fit | None:
        """The question and the system prompt against ``tier``'s window (None: no such tier).

        The window: the loaded model's; before loading, ``options.n_ctx`` (llama.cpp's default
        otherwise) or ``context_tokens`` plus the answer. Counted with the model's tokenizer when
        it is loaded, else estimated both ways (see ``Fit``).
        """
        cfg, name = self.tiers.settings(tier), self.model_name(tier)
        if cfg is None or name is None:
            return None
        backend: ChatBackend | None = self.tiers.loaded(tier)
        window = backend.context_tokens if backend is not None else None
        if window is None and name.partition(":")[0] == "llamacpp":
            window = _int(cfg.options.get("n_ctx")) or DEFAULT_N_CTX
        if window is None and cfg.context_tokens:
            window = cfg.context_tokens + cfg.max_tokens
        texts = [t for t in (self.config.system_prompt, text) if t]
        overhead = PER_MESSAGE_OVERHEAD * len(texts) + TEMPLATE_TOKENS
        cautious = sum(cautious_tokens(t) for t in texts) + overhead
        least = sum(generous_tokens(t) for t in texts) + overhead
        hopeless = window is not None and least > 2 * window  # a pasted megabyte: not worth the tokenizer's time
        if backend is not None and not hopeless and not backend.count_tokens("a")[1]:  # the model's own tokenizer
            return Fit(tier, sum(backend.count_tokens(t)[0] for t in texts) + overhead, window, cfg.max_tokens)
        return Fit(tier, cautious, window, cfg.max_tokens, least)

    def budget(self) -> list[BudgetUse]:
        """The spend caps that are set, with the large tier's spend against each (for budget meters)."""
        return budget_use(self.config.routing, self.tiers.settings("large"), self.store, self._started)

    def _budget_block(self) -> str | None:
        return budget_block(self.config.routing, self.tiers.settings("large"), self.store, self._started)


def _int(value: object) -> int | None:
    """A positive integer option, or None (the backend reports a bad value when it loads)."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
