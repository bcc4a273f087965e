"""The engine's contract with its faces: one event stream, the same yielded and stored, from any caller.

Turns run on the real SmolLM2 model where the model's text matters; a scripted backend
(``slmchat.testing``) stands in where a failure or a tool call must happen on cue.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import slmchat
from slmchat import (
    AnswerReset,
    ApprovalRequested,
    Compacted,
    Escalated,
    Event,
    MemorySaved,
    ModelLoading,
    ModelReady,
    RouteDecided,
    Session,
    SlmchatError,
    Token,
    ToolCall,
    ToolResult,
    TurnDone,
    TurnFailed,
    TurnStats,
    event_from_dict,
)
from slmchat.engine.events import SESSION_EVENTS
from slmchat.infra.config import Config, TierConfig
from slmchat.testing import ScriptedBackend, scripted_session
from slmchat.tools import Toolbox, tool
from tests.helpers import collect, small_config


def turn_events(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, SESSION_EVENTS)]


def replayed(session: Session, turn_id: int) -> list[Event]:
    """The stored events of a turn, read back through JSON and rebuilt."""
    return [event_from_dict(json.loads(json.dumps(row))) for row in session.store.events(turn_id)]


def assert_stored_equals_yielded(session: Session, events: list[Event]) -> None:
    last = events[-1]
    turn_id = last.stats.turn_id if isinstance(last, TurnDone) else last.turn_id  # type: ignore[union-attr]
    assert turn_id is not None
    assert replayed(session, turn_id) == turn_events(events)


# -- one stream: stored equals yielded ---------------------------------------------------------


def test_an_ok_turn_is_stored_exactly_as_it_was_yielded(small_backend: Any) -> None:
    session = Session(small_config(), backends={"small": small_backend})
    events = collect(session, "What is the capital of France?")
    assert isinstance(events[0], RouteDecided) and isinstance(events[-1], TurnDone)
    assert events[-1].stats.turn_id == session.last_turn_id
    assert "".join(e.text for e in events if isinstance(e, Token)) == events[-1].stats.answer
    assert_stored_equals_yielded(session, events)


def test_an_interrupted_turn_is_stored_exactly_as_it_was_yielded(small_backend: Any) -> None:
    session = Session(small_config(max_tokens=200), backends={"small": small_backend})

    async def run() -> list[Event]:
        events = []
        async for event in session.turn("Write a long story about a dragon."):
            events.append(event)
            if sum(isinstance(e, Token) for e in events) == 3:
                session.cancel()
        return events

    events = asyncio.run(run())
    assert events[-1].stats.status == "interrupted"  # type: ignore[union-attr]
    assert 3 <= sum(isinstance(e, Token) for e in events) < 200
    assert_stored_equals_yielded(session, events)


def test_a_failed_turn_is_stored_exactly_as_it_was_yielded() -> None:
    session = scripted_session([["The answer ", "is ", SlmchatError("the server went away", "start it again")]])
    events = collect(session, "Hello?")
    failed = events[-1]
    assert isinstance(failed, TurnFailed)
    assert (failed.error, failed.hint, failed.partial) == ("the server went away", "start it again", "The answer is ")
    assert failed.conversation_id == session.conversation_id and failed.turn_id == session.last_turn_id
    assert_stored_equals_yielded(session, events)


def test_an_escalated_turn_resets_the_answer_and_is_stored_as_yielded(small_backend: Any) -> None:
    looping = ScriptedBackend([["Paris is ", *["la Femme, "] * 60]])
    config = Config(small=TierConfig(model="scripted:loop"), large=small_config().small)
    session = Session(config, backends={"small": looping, "large": small_backend})
    events = collect(session, "What is the capital of France?")
    kinds = [e.kind for e in events]
    escalated = kinds.index("escalated")
    assert kinds[escalated + 1] == "answer_reset" and events[escalated + 1].reason == "escalated"  # type: ignore[attr-defined]
    after = "".join(e.text for e in events[escalated + 1 :] if isinstance(e, Token))
    assert after == events[-1].stats.answer and "la Femme" not in after  # type: ignore[union-attr]
    assert events[-1].stats.answered_by == "large"  # type: ignore[union-attr]
    assert_stored_equals_yielded(session, events)


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def test_a_tool_turn_is_stored_exactly_as_it_was_yielded() -> None:
    call = '{"tool": "add", "arguments": {"a": 2, "b": 3}}'
    session = scripted_session([call, "2 plus 3 is 5."], tools=Toolbox().add(add))
    events = collect(session, "What is 2 + 3? Use the tool.")
    kinds = [e.kind for e in events]
    assert "tool_call" in kinds and "tool_result" in kinds
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (result.name, result.ok, result.result) == ("add", True, "5")
    answer = events[-1].stats.answer  # type: ignore[union-attr]
    streamed = "".join(e.text for e in events if isinstance(e, Token))
    resets = [e for e in events if isinstance(e, AnswerReset)]
    # the answer a face shows is what streamed, or the last reset's text plus what streamed after it
    shown = resets[-1].text + "".join(
        e.text for e in events[kinds.index("answer_reset", kinds.index("answer_reset")) :] if isinstance(e, Token)
    ) if resets else streamed  # fmt: skip
    assert shown == answer
    assert_stored_equals_yielded(session, events)


def test_a_compaction_is_yielded_before_the_answer_it_made_room_for() -> None:
    config = Config(
        small=TierConfig(model="scripted:small", max_tokens=8, context_tokens=120), memory={"enabled": False}
    )  # type: ignore[arg-type]
    session = Session(config, backends={"small": ScriptedBackend(["A fine answer."])})
    for n in range(6):
        collect(session, f"Question number {n}: " + "tell me about the weather in spring " * 3)
    events = collect(session, "And one more question?")
    kinds = [e.kind for e in events]
    assert "compacted" in kinds
    assert kinds.index("compacted") < kinds.index("token")
    assert isinstance(events[kinds.index("compacted")], Compacted)
    assert_stored_equals_yielded(session, events)


def test_every_event_type_round_trips_and_the_package_exports_them() -> None:
    for name in ["TurnStats", "SlmchatError", "Event", "event_from_dict", "TurnEvent", "SessionEvent", "AnyEvent"]:
        assert name in slmchat.__all__
    from slmchat.engine.events import EVENT_TYPES

    exported = {getattr(slmchat, n) for n in slmchat.__all__}
    assert set(EVENT_TYPES.values()) <= exported  # every event type is importable from slmchat
    with pytest.raises(ValueError, match="not an event"):
        event_from_dict({"kind": "no_such_event"})
    assert Event.from_dict(Token("hi").to_dict()) == Token("hi")
    assert TurnStats.from_dict is not None


# -- session events on the same channel ---------------------------------------------------------


def test_the_first_turn_streams_the_model_loading_before_its_first_token(smollm2_path: Any) -> None:
    session = Session(small_config())
    events = collect(session, "Hi")
    kinds = [e.kind for e in events]
    assert kinds.index("model_loading") < kinds.index("model_ready") < kinds.index("token")
    ready = next(e for e in events if isinstance(e, ModelReady))
    assert ready.tier == "small" and ready.load_ms > 0
    assert "model_loading" not in [e["kind"] for e in session.store.events(session.last_turn_id)]  # type: ignore[arg-type]
    second = collect(session, "Hi again")
    assert not any(isinstance(e, ModelLoading | ModelReady) for e in second)  # loaded once
    session.close()


@pytest.mark.memory
def test_background_memory_writes_say_when_they_are_done() -> None:
    async def run() -> tuple[list[Event], list[Event]]:
        async with scripted_session(["Nice to meet you."], config=_memory_config()) as session:
            seen: list[Event] = []

            async def listen() -> None:
                async for event in session.events():
                    seen.append(event)

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0)
            events = [e async for e in session.turn("I live in Lisbon.")]
            await session.settle()
        await asyncio.wait_for(listener, 5)  # aclose ends the subscription
        return events, seen

    events, seen = asyncio.run(run())
    saved = [e for e in seen if isinstance(e, MemorySaved)]
    assert len(saved) == 1 and saved[0].turn_id == events[-1].stats.turn_id  # type: ignore[union-attr]
    assert [e.kind for e in seen if not isinstance(e, SESSION_EVENTS)] == [e.kind for e in turn_events(events)]


def _memory_config() -> Config:
    return Config(small=TierConfig(model="scripted:small", max_tokens=64))


# -- approval is a request any face answers -----------------------------------------------------


@tool(requires_approval=True)
def send_mail(to: str) -> str:
    """Send an email to this address."""
    return f"sent to {to}"


def test_an_approval_request_is_answered_from_a_sync_stream() -> None:
    call = '{"tool": "send_mail", "arguments": {"to": "ann@example.org"}}'
    with scripted_session([call, "I sent it."], tools=Toolbox().add(send_mail)) as session:
        events = []
        for event in session.stream("Mail ann@example.org, please.", tools=True):
            if isinstance(event, ApprovalRequested):
                assert (event.name, event.arguments) == ("send_mail", {"to": "ann@example.org"})
                assert session.approve(event.request_id, True)
            events.append(event)
    call_event = next(e for e in events if isinstance(e, ToolCall))
    assert call_event.approved is True
    assert next(e for e in events if isinstance(e, ToolResult)).result == "sent to ann@example.org"


def test_ask_cannot_ask_so_a_tool_that_needs_approval_does_not_run() -> None:
    call = '{"tool": "send_mail", "arguments": {"to": "ann@example.org"}}'
    with scripted_session([call, "I could not send it."], tools=Toolbox().add(send_mail)) as session:
        stats = session.ask("Mail ann@example.org, please.", tools=True)
        stored = [e for e in session.store.events(stats.turn_id) if e["kind"] in ("approval_requested", "tool_call")]  # type: ignore[arg-type]
    assert [e["kind"] for e in stored] == ["approval_requested", "tool_call"]
    assert stored[1]["approved"] is False and "tool_result" not in str(stored)
    assert stats.answer == "I could not send it."


# -- loop-agnostic: sync, async, threads, notebooks ---------------------------------------------


def test_ask_works_inside_a_running_event_loop(small_backend: Any) -> None:
    session = Session(small_config(), backends={"small": small_backend})

    async def main() -> TurnStats:
        return session.ask("What is the capital of France?")  # a sync call from async code

    stats = asyncio.run(main())
    assert stats.status == "ok" and stats.answer and stats.turn_id == session.last_turn_id
    session.close()


def test_stream_yields_events_as_they_come_in_another_thread(small_backend: Any) -> None:
    session = Session(small_config(), backends={"small": small_backend})
    kinds: list[str] = []
    worker = threading.Thread(target=lambda: kinds.extend(e.kind for e in session.stream("Hello!")))
    worker.start()
    worker.join(60)
    assert kinds[0] == "route_decided" and kinds[-1] == "turn_done" and "token" in kinds
    session.close()


def test_leaving_a_sync_stream_early_interrupts_the_turn_and_keeps_the_partial_answer() -> None:
    session = scripted_session([["one ", "two ", "three ", "four "]])
    session.tiers._backends["small"].delay_s = 0.05  # type: ignore[attr-defined]
    for event in session.stream("Count."):
        if isinstance(event, Token):
            break
    row = session.store.turns(session.conversation_id)[-1]
    assert row["status"] == "interrupted" and row["answer"].startswith("one")
    session.close()


def test_with_and_async_with_close_everything_exactly_once(smollm2_path: Any) -> None:
    with Session(small_config()) as session:
        session.ask("Hello")
        backend = session.tiers.loaded("small")
        assert backend is not None and backend._llama is not None  # type: ignore[attr-defined]
        bridge = session._sync
    assert backend._llama is None  # type: ignore[attr-defined]  # the model's memory is freed
    assert bridge is not None and not bridge.alive  # the sync thread is gone
    session.close()  # again: nothing happens
    with pytest.raises(Exception, match="closed"):
        session.store.db.execute("SELECT 1")
    with pytest.raises(SlmchatError, match="closed"):
        session.ask("Hello again")

    async def run() -> tuple[Session, Any]:
        async with scripted_session(["Hi."]) as s:
            [e async for e in s.turn("Hello")]
            supplied = s.tiers.loaded("small")
        await s.aclose()  # again: nothing happens
        return s, supplied

    closed, supplied = asyncio.run(run())
    with pytest.raises(Exception, match="closed"):
        closed.store.db.execute("SELECT 1")
    assert supplied.closed == 0  # a backend the caller supplied is the caller's to close


def test_ask_in_ipython_with_autoawait(small_backend: Any) -> None:
    interactive = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactive.InteractiveShell.instance()
    assert shell.autoawait
    session = Session(small_config(), backends={"small": small_backend})
    shell.user_ns["session"] = session
    result = shell.run_cell("stats = session.ask('What is the capital of France?')")
    assert result.success, result.error_in_exec
    assert shell.user_ns["stats"].status == "ok"
    result = shell.run_cell("kinds = [e.kind async for e in session.turn('Hi')]")  # top-level async, autoawait
    assert result.success, result.error_in_exec
    assert shell.user_ns["kinds"][-1] == "turn_done"
    result = shell.run_cell("kinds = [e.kind for e in session.stream('Hi')]")
    assert result.success and shell.user_ns["kinds"][-1] == "turn_done"
    session.close()
    interactive.InteractiveShell.clear_instance()


def test_escalated_is_importable_and_has_its_note() -> None:
    from slmchat.infra.backends.base import Usage

    event = Escalated("repetition loop", "small", "large", "openai:big", Usage(1, 2))
    assert event_from_dict(event.to_dict()) == event
    assert event.note == "[repetition loop: answer redone on the large tier (openai:big)]"


def test_importing_slmchat_is_cheap_until_a_name_is_used() -> None:
    """`import slmchat` (the CLI, the app's first frame) does not build the engine, numpy or pydantic."""
    import subprocess
    import sys

    code = (
        "import sys, slmchat\n"
        "early = {'numpy', 'pydantic', 'slmchat.engine.session'} & set(sys.modules)\n"
        "assert not early, early\n"
        "from slmchat import Session, Token\n"
        "assert Session.__name__ == 'Session' and 'slmchat.engine.session' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_leaving_a_turn_at_its_first_event_closes_it(tmp_path: Path) -> None:
    """A face that stops reading right after RouteDecided (Esc at once) leaves no turn running."""

    async def scenario() -> None:
        async with scripted_session(["Paris."], data_dir=tmp_path) as session:
            stream = session.turn("Capital of France?")
            first = await stream.__anext__()
            assert isinstance(first, RouteDecided) and session.turn_running
            await stream.aclose()
            assert not session.turn_running and session.status == "idle"
            rows = session.store.turns(session.conversation_id)
            assert [(r["status"], r["answer"]) for r in rows] == [("interrupted", "")]
            again = [event async for event in session.turn("again")]
            assert isinstance(again[-1], TurnDone) and again[-1].stats.answer == "Paris."

    asyncio.run(scenario())
