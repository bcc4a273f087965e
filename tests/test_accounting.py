"""What turns cost: configured prices, genai-prices, local models, and unknown prices (never $0)."""

from __future__ import annotations

import pytest

from slmchat.accounting.pricing import Price, price_for, total_cost, turn_cost
from slmchat.engine.session import Session
from slmchat.infra.backends.base import Usage
from slmchat.infra.config import Config, TierConfig
from slmchat.testing import ScriptedBackend

USAGE = Usage(1_000, 500)


def test_where_prices_come_from() -> None:
    assert price_for("llamacpp:smollm2", None) == Price("local", 0.0, 0.0)
    configured = price_for("openai:my-proxy", TierConfig(model="x", usd_per_mtok_in=1.0, usd_per_mtok_out=2.0))
    assert configured.source == "config" and configured.cost(USAGE) == pytest.approx(0.002)
    library = price_for("openai:gpt-4o-mini", TierConfig(model="openai:gpt-4o-mini"))
    assert library.source == "genai-prices: openai gpt-4o-mini"
    assert library.cost(USAGE) == pytest.approx((1_000 * 0.15 + 500 * 0.6) / 1e6)
    unknown = price_for("openai:smollm2-server", TierConfig(model="x", base_url="http://127.0.0.1:9/v1"))
    assert unknown.source == "unknown" and unknown.cost(USAGE) is None  # never 0
    tiered = price_for("anthropic:claude-sonnet-4-5", TierConfig(model="anthropic:claude-sonnet-4-5"))
    assert (tiered.usd_per_mtok_in, tiered.usd_per_mtok_out) == (pytest.approx(3.0), pytest.approx(15.0))
    hourly = price_for("llamacpp:smollm2", TierConfig(model="x", usd_per_hour=3.6))
    assert hourly.cost(USAGE, model_seconds=10) == pytest.approx(0.01)


def test_saving_against_the_large_tier_and_unknown_parts() -> None:
    local, large = Price("local", 0.0, 0.0), Price("config", 2.0, 8.0)
    cost = turn_cost(local, large, USAGE, 1.0, ran_large=False)
    assert (
        cost.usd == 0
        and cost.large_equivalent_usd == pytest.approx(0.006)
        and cost.saved_usd == cost.large_equivalent_usd
    )
    on_large = turn_cost(large, large, USAGE, 1.0, ran_large=True)
    assert on_large.saved_usd == 0
    no_large = turn_cost(local, None, USAGE, 1.0, ran_large=False)
    assert no_large.large_equivalent_usd is None and no_large.saved_usd is None
    unknown = turn_cost(Price("unknown"), large, USAGE, 1.0, ran_large=True)
    assert total_cost([cost, unknown]).usd is None  # a sum with an unknown part is unknown
    assert total_cost([cost, on_large]).price_source == "local + config"


def test_a_real_large_tier_turn_is_priced_from_config(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    large = TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=8, temperature=0,
                       usd_per_mtok_in=2.5, usd_per_mtok_out=10.0)  # fmt: skip
    session = Session(Config(small=TierConfig(model="llamacpp:smollm2", max_tokens=8), large=large),
                      backends={"small": small_backend})  # fmt: skip
    on_large = session.ask("What is 2 + 2?", route="large")
    usage = on_large.usage
    expected = (usage.prompt_tokens * 2.5 + usage.completion_tokens * 10.0) / 1e6
    assert on_large.cost is not None and on_large.cost.usd == pytest.approx(expected)
    assert on_large.cost.price_source == "config" and on_large.cost.saved_usd == 0
    on_small = session.ask("Say hi.", route="small")
    assert on_small.cost.usd == 0 and on_small.cost.price_source == "local"
    assert on_small.cost.large_equivalent_usd > 0
    assert on_small.cost.saved_usd == pytest.approx(on_small.cost.large_equivalent_usd)
    latency = on_small.latency  # the turn's time is split into model, engine, load and tool time
    assert latency.model_ms > 0 and latency.tool_ms == 0  # no tools were offered
    assert latency.engine_ms == pytest.approx(latency.total_ms - latency.model_ms - latency.load_ms)
    assert 0 < latency.engine_ms < latency.total_ms  # routing and prompt building took some of it
    stored = session.store.db.execute("SELECT usd, price_source FROM usage ORDER BY id").fetchall()
    assert [tuple(r) for r in stored] == [(pytest.approx(expected), "config"), (0.0, "local")]


def test_an_unpriced_large_tier_shows_unknown_not_zero(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    large = TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=8, temperature=0)
    session = Session(Config(small=TierConfig(model="llamacpp:smollm2", max_tokens=8), large=large),
                      backends={"small": small_backend})  # fmt: skip
    stats = session.ask("What is 2 + 2?", route="large")
    assert stats.cost.usd is None and stats.cost.price_source == "unknown"
    assert stats.to_dict()["cost"]["usd"] is None
    small = session.ask("Hi", route="small")
    assert small.cost.usd == 0 and small.cost.large_equivalent_usd is None and small.cost.saved_usd is None


def test_api_keys_are_refused_in_the_config() -> None:
    from slmchat.infra.config import Config

    with pytest.raises(ValueError, match="slmchat keys set"):
        Config.model_validate({"large": {"model": "openai:x", "options": {"api_key": "sk-abc"}}})


def test_an_escalated_turn_saves_nothing_against_the_large_tier(llama_server: str) -> None:
    large = TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=8, temperature=0,
                       usd_per_mtok_in=2.5, usd_per_mtok_out=10.0)  # fmt: skip
    free = TierConfig(model="scripted:script", usd_per_mtok_in=0.0, usd_per_mtok_out=0.0)
    session = Session(Config(small=free, large=large), backends={"small": ScriptedBackend([" "])})
    stats = session.ask("Say something.")
    assert stats.answered_by == "large" and stats.cost.saved_usd == 0  # the small attempt was free, not a saving
