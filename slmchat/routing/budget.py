"""Spend caps for the large tier: per calendar day and per session.

Spend is the large tier's stored token usage times its price (from config, else genai-prices).
With a cap set but no price, spend is unknown: the cap cannot be checked, and the decision says so rather than
pretending the spend is zero.
"""

from __future__ import annotations

import datetime as dt
import time

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


def budget_block(routing: RoutingConfig, large: TierConfig | None, store: Store, session_started: float) -> str | None:
    """Why the large tier may not be used now (a cap is reached, or cannot be checked); None if it may."""
    caps = [("daily", routing.budget_usd_per_day, _midnight()), ("session", routing.budget_usd_per_session,
                                                                   session_started)]  # fmt: skip
    caps = [(name, cap, since) for name, cap, since in caps if cap is not None]
    if not caps or large is None:
        return None
    for name, cap, since in caps:
        spent = cost_usd(large, *store.tokens_since(since))
        if spent is None:
            return f"the {name} budget cannot be checked: the large tier has no known price (set usd_per_mtok_in/out)"
        if spent >= cap:
            return f"{name} budget of ${cap:.2f} is spent (${spent:.4f})"
    return None


def _midnight() -> float:
    today = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return min(today.timestamp(), time.time())
