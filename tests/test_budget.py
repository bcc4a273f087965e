"""Spend caps on the large tier: past one, turns run small and the decision says why."""

from __future__ import annotations

from slmchat.engine.session import Session
from slmchat.infra.config import Config, RoutingConfig, TierConfig
from slmchat.infra.store import Store, TurnRecord
from slmchat.routing.budget import budget_block, cost_usd, dollars
from tests.helpers import collect

PRICED = TierConfig(model="openai:big", usd_per_mtok_in=1.0, usd_per_mtok_out=4.0)


def spend(store: Store, prompt: int, completion: int) -> None:
    cid = store.new_conversation()
    usage = {"tier": "large", "model": "openai:big", "prompt_tokens": prompt, "completion_tokens": completion,
             "estimated": False, "ttft_ms": 1.0, "total_ms": 2.0, "tokens_per_s": 1.0}  # fmt: skip
    store.save_turn(TurnRecord(cid, "q", "a", "ok", "large", "openai:big", "r", None, [], usage))


def test_cost_needs_both_prices() -> None:
    assert cost_usd(PRICED, 1_000_000, 250_000) == 2.0
    assert cost_usd(TierConfig(model="openai:big", usd_per_mtok_in=1.0), 10, 10) is None


def test_caps_per_day_and_session(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "s.db")
    daily = RoutingConfig(budget_usd_per_day=1.0)
    assert budget_block(daily, PRICED, store, 0) is None
    spend(store, 600_000, 100_000)  # $1.00
    assert budget_block(daily, PRICED, store, 0) == "daily budget of $1.00 is spent ($1.0000)"
    session = RoutingConfig(budget_usd_per_session=0.5)
    assert budget_block(session, PRICED, store, session_started=2e9) is None  # that spend came before it
    unpriced = TierConfig(model="openai:big")
    assert "cannot be checked: the large tier has no known price" in (budget_block(daily, unpriced, store, 0) or "")
    assert budget_block(RoutingConfig(), unpriced, store, 0) is None  # no cap, nothing to check


def test_a_spent_budget_keeps_forced_turns_small(small_backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = Config(
        small=TierConfig(model="llamacpp:smollm2", max_tokens=8, temperature=0),
        large=PRICED,
        routing=RoutingConfig(budget_usd_per_day=1.0),
    )
    session = Session(config, backends={"small": small_backend})
    spend(session.store, 600_000, 100_000)
    decision = collect(session, "Hi", route="large")[0].decision
    assert decision.wanted == "large" and decision.tier == "small"
    assert decision.reason.endswith("daily budget of $1.00 is spent ($1.0000), so it ran on the small tier")


def test_a_cap_below_a_cent_is_shown_as_set() -> None:
    shown = [dollars(v) for v in (1.0, 0.5, 0.0001, 0.015, 12.3456)]
    assert shown == ["$1.00", "$0.50", "$0.0001", "$0.015", "$12.3456"]
