"""`slmchat stats`: totals per tier and per day from real turns, unknown prices kept apart."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from slmchat.engine.session import Session
from slmchat.faces.cli import main
from slmchat.infra.config import Config, TierConfig


def run_turns(small_backend, llama_server: str, priced: bool) -> Session:  # type: ignore[no-untyped-def]
    prices = {"usd_per_mtok_in": 2.5, "usd_per_mtok_out": 10.0} if priced else {}
    large = TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=8, temperature=0, **prices)
    session = Session(Config(small=TierConfig(model="llamacpp:smollm2", max_tokens=8), large=large),
                      backends={"small": small_backend})  # fmt: skip
    session.ask("What is 2 + 2?", route="large")
    session.ask("Say hi.")
    session.ask("Say bye.", route="small")
    return session


def test_stats_json_counts_tiers_overrides_spend_and_savings(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    session = run_turns(small_backend, llama_server, priced=True)
    turns = session.store.call_rows()
    result = CliRunner().invoke(main, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["turns"] == 3 and s["turns_per_tier"] == {"large": 1, "small": 2}
    assert s["overrides"] == 2 and s["escalations"] == 0 and s["escalation_rate"] == 0
    large_usd = next(c["usd"] for c in turns if c["tier"] == "large")
    assert s["spend"] == {"usd": pytest.approx(large_usd), "unknown": 0} and large_usd > 0
    assert s["saved_usd"] == pytest.approx(s["large_equivalent"]["usd"] - large_usd) and s["saved_usd"] > 0
    for tier in ("small", "large"):
        lat = s["latency_per_tier"][tier]
        assert 0 < lat["p50_ttft_ms"] <= lat["p95_ttft_ms"] and lat["p50_total_ms"] <= lat["p95_total_ms"]
    assert sum(d["turns"] for d in s["per_day"].values()) == 3
    assert s["per_conversation"][session.conversation_id]["spend"]["usd"] == pytest.approx(large_usd)
    text = CliRunner().invoke(main, ["stats"]).output
    assert text.startswith("3 turns (large 1, small 2); escalations 0 (0.0%); overrides 2")


def test_unknown_prices_are_counted_apart_not_as_zero(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    run_turns(small_backend, llama_server, priced=False)
    s = json.loads(CliRunner().invoke(main, ["stats", "--json"]).output)
    assert s["spend"]["unknown"] == 1 and s["saved_usd"] is None
    assert "(+1 unknown)" in CliRunner().invoke(main, ["stats"]).output


def test_stats_csv_and_since(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    run_turns(small_backend, llama_server, priced=True)
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, ["stats", "--csv"]).output)))
    assert [r["tier"] for r in rows] == ["large", "small", "small"] and rows[0]["price_source"] == "config"
    assert [(r["routed_tier"], r["wanted_tier"], r["override"]) for r in rows] == [
        ("large", "large", "large"), ("small", "small", ""), ("small", "small", "small")]  # fmt: skip
    future = json.loads(CliRunner().invoke(main, ["stats", "--json", "--since", "2999-01-01"]).output)
    assert future["turns"] == 0
    bad = CliRunner().invoke(main, ["stats", "--since", "yesterday"])
    assert bad.exit_code == 1 and "write it as YYYY-MM-DD" in bad.output
