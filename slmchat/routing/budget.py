"""Spend caps for the large tier: per calendar day and per session.

Spend is the large tier's stored token usage times its price (from config, else genai-prices).
With a cap set but no price, spend is unknown: the cap cannot be checked, and the decision says so rather than
pretending the spend is zero.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from slmchat.infra.backends.base import Usage
from slmchat.infra.config import RoutingConfig, TierConfig
from slmchat.infra.store import Store


def cost_usd(cfg: TierConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The large tier's cost for these tokens at its price (config, else genai-prices); None if unknown."""
    from slmchat.accounting.pricing import price_for

    price = price_for(cfg.model, cfg)
    if price.usd_per_hour is not None:
        return None  # a per-hour price cannot be applied to stored token counts
    return price.cost(Usage(prompt_tokens, completion_tokens))


@dataclass(frozen=True)
class BudgetUse:
    """One cap (``daily`` or ``session``) and the large tier's spend against it (None: unknown price)."""

    name: str
    cap_usd: float
    spent_usd: float | None


def budget_use(
    routing: RoutingConfig, large: TierConfig | None, store: Store, session_started: float
) -> list[BudgetUse]:
    """Every cap that is set, with what the large tier spent against it (for budget meters)."""
    caps = [("daily", routing.budget_usd_per_day, _midnight()), ("session", routing.budget_usd_per_session,
                                                                   session_started)]  # fmt: skip
    if large is None:
        return []
    return [BudgetUse(name, cap, cost_usd(large, *store.tokens_since(since))) for name, cap, since in caps if cap]


def budget_block(routing: RoutingConfig, large: TierConfig | None, store: Store, session_started: float) -> str | None:
    """Why the large tier may not be used now (a cap is reached, or cannot be checked); None if it may."""
    for use in budget_use(routing, large, store, session_started):
        if use.spent_usd is None:
            why = "the large tier has no known price (set usd_per_mtok_in/out)"
            return f"the {use.name} budget cannot be checked: {why}"
        if use.spent_usd >= use.cap_usd:
            return f"{use.name} budget of {dollars(use.cap_usd)} is spent (${use.spent_usd:.4f})"
    return None


def dollars(cap: float) -> str:
    """A cap as the user set it: cents when it is whole cents ($1.00), else every digit ($0.0001, not $0.00)."""
    return f"${cap:.2f}" if round(cap, 2) == cap else f"${cap:.6g}"


def _midnight() -> float:
    today = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return min(today.timestamp(), time.time())
