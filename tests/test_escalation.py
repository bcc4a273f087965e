"""Failure signals during the small tier's answer send that step to the large tier."""

from __future__ import annotations

import asyncio

from slmchat.engine.events import Escalated, Token, TurnDone
from slmchat.engine.session import Session
from slmchat.infra.config import Config, TierConfig
from slmchat.routing.signals import failure_signal, repetition_loop
from slmchat.testing import ScriptedBackend
from tests.helpers import CountingBackend, collect


def with_large(llama_server: str) -> Config:
    return Config(
        small=TierConfig(model="scripted:script"),
        large=TierConfig(model="openai:smollm2-server", base_url=llama_server, max_tokens=12, temperature=0),
    )


def test_loops_are_found_and_ordinary_text_is_not() -> None:
    assert repetition_loop("Paris. " + "la Femme, " * 5) == "la Femme, "
    assert repetition_loop("ha" * 20) is not None
    for fine in ["The capital of France is Paris.", "1. a\n2. b\n3. c\n", "- x\n- y\n- z\n", "Well... ok"]:
        assert repetition_loop(fine) is None
    assert failure_signal("   ", "stop", None) == "empty answer"
    assert failure_signal("partial", "cancelled", None) is None  # the user stopped it: not a failure


def test_a_looping_small_model_is_stopped_and_the_large_tier_answers(llama_server: str) -> None:
    small = CountingBackend([["Paris is ", *["la Femme, "] * 200]])  # one reply, in these pieces
    session = Session(with_large(llama_server), backends={"small": small})
    events = collect(session, "What is the capital of France?")

    escalated = next(e for e in events if isinstance(e, Escalated))
    assert escalated.reason.startswith("repetition loop ('la Femme,' repeated)")
    assert (escalated.from_tier, escalated.to_tier, escalated.model) == ("small", "large", "openai:smollm2-server")
    assert small.sent < 40  # stopped soon after the loop began, not after 200 pieces
    assert escalated.usage.completion_tokens == small.sent
    done = events[-1]
    assert isinstance(done, TurnDone)
    stats = done.stats
    assert stats.status == "ok" and stats.escalation == escalated.reason
    assert "Femme" not in stats.answer and stats.answer.strip()
    after = events.index(escalated)
    assert stats.answer == "".join(e.text for e in events[after:] if isinstance(e, Token))
    row = session.store.turns(session.conversation_id)[-1]
    assert row["answer"] == stats.answer and row["tier"] == "small"  # routed small, answered large
    calls = session.store.db.execute(
        "SELECT tier, model, completion_tokens FROM usage WHERE turn_id = ? ORDER BY id", (row["id"],)
    ).fetchall()  # both model calls are stored: the abandoned attempt and the answer that stands
    assert [tuple(c) for c in calls] == [
        ("small", "scripted:script", small.sent),
        ("large", "openai:smollm2-server", stats.usage.completion_tokens),
    ]
    stored = [e["kind"] for e in session.store.events(row["id"]) if e["kind"] != "token"]
    assert stored == ["route_decided", "escalated", "answer_reset", "turn_done"]
    assert session.history[-1].content == stats.answer


def test_an_empty_answer_is_escalated(llama_server: str) -> None:
    session = Session(with_large(llama_server), backends={"small": ScriptedBackend([[" ", "\n"]])})
    events = collect(session, "Say something.")
    assert [e.reason for e in events if isinstance(e, Escalated)] == ["empty answer"]
    assert events[-1].stats.answer.strip()


def test_without_a_large_tier_the_signal_is_reported_and_the_answer_stands() -> None:
    small = ScriptedBackend([["ok ", *["ha"] * 100]])
    session = Session(Config(small=TierConfig(model="scripted:script")), backends={"small": small})
    events = collect(session, "Laugh.")
    escalated = next(e for e in events if isinstance(e, Escalated))
    assert escalated.to_tier == "small" and "no large tier is configured" in escalated.reason
    stats = events[-1].stats
    assert stats.status == "ok" and stats.finish_reason == "loop" and stats.answer.startswith("ok ha")


def test_a_turn_the_user_cancels_is_not_escalated(llama_server: str) -> None:
    session = Session(with_large(llama_server), backends={"small": ScriptedBackend([["word "] * 50])})

    async def run() -> list:
        out = []
        async for event in session.turn("Talk."):
            out.append(event)
            if isinstance(event, Token) and len(out) == 4:
                session.cancel()
        return out

    events = asyncio.run(run())
    assert not any(isinstance(e, Escalated) for e in events)
    assert events[-1].stats.status == "interrupted"


def test_the_repl_shows_the_escalation(llama_server: str) -> None:
    from tests.helpers import chat

    session = Session(with_large(llama_server), backends={"small": ScriptedBackend([["ok ", *["ha"] * 100]])})
    printed = chat(session, "Laugh.\n/quit\n")
    assert "[repetition loop ('haha' repeated): answer redone on the large tier (openai:smollm2-server)]" in printed


def test_a_forced_small_turn_keeps_its_answer(llama_server: str) -> None:
    session = Session(with_large(llama_server), backends={"small": ScriptedBackend([["ok ", *["ha"] * 100]])})
    events = collect(session, "Laugh.", route="small")
    assert not any(isinstance(e, Escalated) for e in events)
    stats = events[-1].stats
    assert stats.finish_reason == "loop" and stats.answered_by == "small"


def test_the_figures_name_the_tier_that_answered(llama_server: str) -> None:
    from slmchat.engine.transcript import stats_line

    session = Session(with_large(llama_server), backends={"small": ScriptedBackend([" "])})
    stats = collect(session, "Say something.")[-1].stats
    assert stats.route.tier == "small" and stats.answered_by == "large"
    assert stats_line(stats).startswith("large · escalated to large · ")
