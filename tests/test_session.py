"""The session engine on the real SmolLM2 model: events, history, store, cancellation."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from slmchat.engine.events import RouteDecided, Token, TurnDone, TurnFailed
from slmchat.engine.session import Session
from slmchat.infra.config import Config, TierConfig
from slmchat.infra.errors import SlmchatError
from tests.helpers import collect, small_config


@pytest.fixture
def session(small_backend):  # type: ignore[no-untyped-def]
    s = Session(small_config(), backends={"small": small_backend})
    yield s
    s.store.close()


def test_a_turn_streams_tokens_and_ends_with_measured_stats(session: Session) -> None:
    events = collect(session, "What is the capital of France?")

    assert isinstance(events[0], RouteDecided)
    assert events[0].decision.tier == "small" and events[0].decision.model == "llamacpp:smollm2"
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens, "the model streamed nothing"
    done = events[-1]
    assert isinstance(done, TurnDone)
    stats = done.stats
    assert stats.answer == "".join(tokens)
    assert stats.status == "ok"
    assert stats.usage.estimated is False
    assert stats.usage.prompt_tokens and stats.usage.prompt_tokens > 10
    assert 0 < stats.usage.completion_tokens <= 24
    assert 0 < stats.latency.ttft_ms <= stats.latency.total_ms
    assert stats.latency.tokens_per_s and stats.latency.tokens_per_s > 1
    # the JSON form feeds ask --json and the store
    assert done.to_dict()["stats"]["route"]["reason"].startswith("small: ")


def test_turns_are_stored_with_usage_and_events(session: Session) -> None:
    session.ask("Say hello.")
    stats = session.ask("Say goodbye.")

    rows = session.store.turns(session.conversation_id)
    assert [r["user_text"] for r in rows] == ["Say hello.", "Say goodbye."]
    assert rows[1]["answer"] == stats.answer and rows[1]["status"] == "ok"
    assert rows[1]["completion_tokens"] == stats.usage.completion_tokens
    kinds = [e["kind"] for e in session.store.events(rows[1]["id"])]
    assert kinds == ["route_decided", *["token"] * (len(kinds) - 2), "turn_done"] and len(kinds) > 2


def test_history_is_sent_and_a_reopened_conversation_continues(session: Session, small_backend) -> None:  # type: ignore[no-untyped-def]
    first = session.ask("My name is Ada.")
    second = session.ask("What is my name?")
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens

    again = Session(small_config(), store=session.store, resume_latest=True, backends={"small": small_backend})
    assert again.conversation_id == session.conversation_id
    assert [m.role for m in again.history] == ["user", "assistant", "user", "assistant"]


def test_history_over_budget_drops_oldest_but_never_the_question(small_backend) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(context_tokens=120), backends={"small": small_backend})
    for i in range(4):
        s.ask(f"Tell me fact number {i} about the sea.")
    long_question = "Summarise everything we said. " * 30  # alone over the budget
    stats = s.ask(long_question)
    assert stats.history_dropped == 8  # all four earlier exchanges
    assert stats.usage.prompt_tokens > 150  # the question itself was sent whole


def test_cancel_stops_promptly_and_keeps_the_partial_answer(small_backend) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(max_tokens=400), backends={"small": small_backend})

    async def run() -> list:
        events = []
        async for event in s.turn("Write a long story about a dragon."):
            events.append(event)
            if sum(isinstance(e, Token) for e in events) == 5:
                s.cancel()
        return events

    events = asyncio.run(run())
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.stats.status == "interrupted" and done.stats.finish_reason == "cancelled"
    assert 5 <= done.stats.usage.completion_tokens <= 8  # stopped within a token or two
    row = s.store.turns(s.conversation_id)[-1]
    assert row["status"] == "interrupted" and row["answer"] == done.stats.answer != ""


def test_a_consumer_that_goes_away_leaves_an_interrupted_turn(small_backend) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(max_tokens=400), backends={"small": small_backend})
    seen: list[str] = []

    async def run() -> None:
        async def consume() -> None:
            async with aclosing(s.turn("Write a long story about a castle.")) as events:
                async for event in events:
                    if isinstance(event, Token):
                        seen.append(event.text)

        task = asyncio.ensure_future(consume())
        while len(seen) < 3:
            await asyncio.sleep(0.005)
        task.cancel()  # what Ctrl-C does to `slmchat ask`
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    row = s.store.turns(s.conversation_id)[-1]
    assert row["status"] == "interrupted"
    assert row["answer"].startswith("".join(seen[:3]))  # the partial answer was kept
    assert len(s.history) == 2


def test_large_route_without_a_large_tier_runs_small_and_says_so(session: Session) -> None:
    events = collect(session, "Hi", route="large")
    decision = events[0].decision
    assert decision.wanted == "large" and decision.tier == "small"
    assert "no large tier is configured" in decision.reason
    assert isinstance(events[-1], TurnDone)


def test_large_route_reaches_the_large_tier(small_backend, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    config = Config(
        small=TierConfig(model="llamacpp:smollm2", max_tokens=16, temperature=0),
        large=TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=16, temperature=0),
    )
    s = Session(config, backends={"small": small_backend})
    stats = s.ask("What is 2 + 2?", route="large")
    assert stats.route.tier == "large" and stats.route.model == "openai:smollm2-server"
    assert stats.answer and stats.usage.completion_tokens
    assert s.ask("And 3 + 3?").route.tier == "small"  # the override was for one turn


def test_a_failing_backend_ends_with_turn_failed_and_is_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(model=f"llamacpp:{tmp_path / 'missing.gguf'}"))
    events = collect(s, "hello")
    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert "model file not found" in failed.error and failed.hint
    assert s.store.turns(s.conversation_id)[-1]["status"] == "failed"
    with pytest.raises(SlmchatError, match="model file not found"):
        s.ask("again")


def test_the_first_turn_reports_model_loading_apart_from_ttft(smollm2_path) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(model=f"llamacpp:{smollm2_path}"))
    first = s.ask("Hi")
    second = s.ask("Hi again")
    assert first.latency.load_ms > 20  # the GGUF file was loaded during this turn
    assert second.latency.load_ms < 5
    assert first.latency.total_ms >= first.latency.load_ms + first.latency.ttft_ms
    s.close()


def test_conversations_are_stored_only_once_they_have_a_turn(session: Session) -> None:
    session.new_conversation()
    session.new_conversation()
    assert session.store.conversations() == []
    session.ask("Hi")
    assert [c.turns for c in session.store.conversations()] == [1]


def test_a_failed_question_is_not_sent_again(small_backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Session(small_config(), backends={"small": small_backend})
    s.ask("Hi")
    s.set_model("small", f"llamacpp:{tmp_path / 'missing.gguf'}")
    assert isinstance(collect(s, "lost question")[-1], TurnFailed)
    assert "lost question" not in [m.content for m in s.history]
    again = Session(small_config(), store=s.store, conversation_id=s.conversation_id)
    assert "lost question" not in [m.content for m in again.history]
    assert [r["status"] for r in s.store.turns(s.conversation_id)] == ["ok", "failed"]


def test_switching_backend_drops_the_old_servers_settings() -> None:
    config = Config(small=TierConfig(model="ollama:llama3.2:3b", base_url="http://127.0.0.1:9", max_tokens=99))
    s = Session(config)
    s.set_model("small", "llamacpp:smollm2")
    tier = s.tier_config("small")
    assert tier is not None and tier.base_url is None and tier.max_tokens == 99
    s.set_model("small", "llamacpp:/other.gguf")  # same backend: settings stay
    assert s.tier_config("small") == tier.model_copy(update={"model": "llamacpp:/other.gguf"})
