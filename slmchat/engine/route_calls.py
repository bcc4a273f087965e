"""Routing a turn and the spend caps, as the session sees them: a mixin of ``Session``.

``BudgetUse`` is re-exported here so faces draw budget meters from the engine, never from routing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slmchat.routing import Route, RouteDecision
from slmchat.routing.budget import BudgetUse, budget_block, budget_use

if TYPE_CHECKING:
    import numpy as np

    from slmchat.engine.tiers import Tiers
    from slmchat.infra.backends.base import Message
    from slmchat.infra.config import Config
    from slmchat.infra.store import Store
    from slmchat.routing import Router

__all__ = ["BudgetUse", "RouteCalls"]


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

    async def preview_route(self, text: str, route: Route | str | None = None) -> RouteDecision:
        """Where ``text`` would run now and why, without running it (a notebook's ``--dry-run``)."""
        decision, _embedding = await asyncio.to_thread(self._route, text, Route(route) if route else self.route)
        return decision

    def _route(self, text: str, route: Route) -> tuple[RouteDecision, np.ndarray | None]:
        """Score the request (one embedding per turn, kept for memory) and decide the tier (off the loop)."""
        models = {t: self.model_name(t) for t in ("small", "large")}
        limit = self.config.routing.long_context_tokens
        return self.router.decide_turn(text, self.history, route, models, self._budget_block(), limit)

    def budget(self) -> list[BudgetUse]:
        """The spend caps that are set, with the large tier's spend against each (for budget meters)."""
        return budget_use(self.config.routing, self.tiers.settings("large"), self.store, self._started)

    def _budget_block(self) -> str | None:
        return budget_block(self.config.routing, self.tiers.settings("large"), self.store, self._started)
