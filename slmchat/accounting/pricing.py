"""Prices per tier, from the user's config or the genai-prices library; unknown stays unknown.

Order: a price in the tier's config (``usd_per_mtok_in/out``, or ``usd_per_hour`` for a local
machine) wins; a local backend (llama.cpp, MLX, Ollama) with no price costs 0 and says
"local"; any other model is looked up in genai-prices (a maintained, offline snapshot of
providers' prices). A model it does not know has no price: ``None``, shown as "?", never $0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from slmchat.infra.backends.base import Usage
from slmchat.infra.config import TierConfig

LOCAL_BACKENDS = {"llamacpp", "mlx", "ollama"}


@dataclass(frozen=True)
class Price:
    """USD per million tokens in and out, or per hour of model time, and where it came from."""

    source: str  # "config", "local", "genai-prices: <provider> <model>", or "unknown"
    usd_per_mtok_in: float | None = None
    usd_per_mtok_out: float | None = None
    usd_per_hour: float | None = None

    @property
    def known(self) -> bool:
        per_token = self.usd_per_mtok_in is not None and self.usd_per_mtok_out is not None
        return per_token or self.usd_per_hour is not None

    def cost(self, usage: Usage, model_seconds: float = 0.0) -> float | None:
        """USD for one call; None when the price or the token counts are unknown."""
        if self.usd_per_hour is not None:
            return self.usd_per_hour * model_seconds / 3600
        if not self.known or usage.prompt_tokens is None or usage.completion_tokens is None:
            return None
        return (usage.prompt_tokens * self.usd_per_mtok_in + usage.completion_tokens * self.usd_per_mtok_out) / 1e6  # type: ignore[operator]


def price_for(model: str, cfg: TierConfig | None) -> Price:
    """The price of ``model`` (``backend:name``) under ``cfg``."""
    backend, _, name = model.partition(":")
    if cfg is not None:
        if cfg.usd_per_hour is not None:
            return Price("config", usd_per_hour=cfg.usd_per_hour)
        if cfg.usd_per_mtok_in is not None and cfg.usd_per_mtok_out is not None:
            return Price("config", cfg.usd_per_mtok_in, cfg.usd_per_mtok_out)
    if backend in LOCAL_BACKENDS:
        return Price("local", 0.0, 0.0)
    return _library_price(name, cfg.base_url if cfg else None)


def _library_price(name: str, base_url: str | None) -> Price:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    # priced at a typical turn's size: models with tiered prices charge more past long prompts
    tokens = 1_000
    usage = PriceUsage(input_tokens=tokens, output_tokens=tokens)
    try:
        result = calc_price(usage, name, provider_api_url=base_url)
    except LookupError:
        try:  # a custom base_url (a proxy, a gateway) may still serve a known model name
            result = calc_price(usage, name)
        except LookupError:
            return Price("unknown")
    per_million = 1_000_000 / tokens
    return Price(
        f"genai-prices: {result.provider.id} {result.model.id}",
        float(result.input_price) * per_million,
        float(result.output_price) * per_million,
    )


@dataclass(frozen=True)
class TurnCost:
    """``usd`` for what ran; ``large_equivalent_usd`` for the same tokens on the large tier."""

    usd: float | None
    large_equivalent_usd: float | None
    saved_usd: float | None
    price_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def turn_cost(price: Price, large: Price | None, usage: Usage, model_seconds: float, ran_large: bool) -> TurnCost:
    usd = price.cost(usage, model_seconds)
    if ran_large:
        equivalent = usd
    else:
        equivalent = large.cost(usage, model_seconds) if large is not None and large.usd_per_hour is None else None
    saved = equivalent - usd if equivalent is not None and usd is not None else None
    return TurnCost(usd, equivalent, saved, price.source)


def total_cost(calls: list[TurnCost]) -> TurnCost | None:
    """A turn's cost over its calls; a sum with any unknown part is unknown."""
    if not calls:
        return None

    def add(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    usd = add([c.usd for c in calls])
    equivalent = add([c.large_equivalent_usd for c in calls])
    saved = equivalent - usd if usd is not None and equivalent is not None else None
    sources = list(dict.fromkeys(c.price_source for c in calls))
    return TurnCost(usd, equivalent, saved, " + ".join(sources))


def call_costs(calls: Sequence[Any], prices: dict[str, Price]) -> list[TurnCost]:
    """The cost of each model call of a turn (``calls`` have tier, usage and model_s).

    Had the turn gone straight to the large tier it would have run once, so only the last
    call (the answer that stands) has a large-tier equivalent; abandoned attempts add none.
    """
    large = prices.get("large")
    costs = [
        turn_cost(prices.get(c.tier) or Price("unknown"), large, c.usage, c.model_s, c.tier == "large") for c in calls
    ]
    return [replace(c, large_equivalent_usd=0.0, saved_usd=None) for c in costs[:-1]] + costs[-1:]
