"""Compare: the last turn rerun on the other tier, one answer kept, the verdict stored for calibration."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest

from slmchat import ApprovalRequested, RouteDecided, Session, SlmchatError, Token, ToolCall, TurnDone, TurnFailed
from slmchat.engine.compare import Comparison, compare, keep
from slmchat.infra.backends.base import Message
from slmchat.testing import ScriptedBackend, scripted_session
from slmchat.tools import Toolbox, tool

QUESTION = "Why is the sky blue?"


async def _ask(session: Session, text: str, route: str = "small") -> TurnDone:
    events = [event async for event in session.turn(text, route=route)]
    assert isinstance(events[-1], TurnDone)
    return events[-1]


async def _compare(session: Session, turn_id: int | None = None) -> tuple[list, Comparison | None]:
    run = compare(session, turn_id)
    events = [event async for event in run]
    return events, run.comparison


def _standing(session: Session) -> list[tuple[str, str]]:
    """The exchanges a resumed conversation sees: (question, answer) of each turn not set aside."""
    return [(r["user_text"], r["answer"]) for r in session.store.turns(session.conversation_id) if not r["superseded"]]


def _labels(session: Session) -> dict[int, bool | None]:
    return {row["turn_id"]: row["good"] for row in session.store.routed_turns()}


def test_compare_reruns_the_last_turn_on_large_with_the_history_the_original_saw(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(
            ["Hello there.", "Rayleigh, roughly."], ["Rayleigh scattering: blue scatters most."], data_dir=tmp_path
        ) as session:
            await _ask(session, "Hi")
            original = await _ask(session, QUESTION)
            history = list(session.history)

            events, comparison = await _compare(session)

            assert isinstance(events[0], RouteDecided) and events[0].decision.tier == "large"
            assert "".join(e.text for e in events if isinstance(e, Token)) == "Rayleigh scattering: blue scatters most."
            assert isinstance(events[-1], TurnDone) and events[-1].stats.answered_by == "large"
            large = session.tiers.loaded("large")
            assert isinstance(large, ScriptedBackend)
            assert large.seen[0][1:] == [Message("user", "Hi"), Message("assistant", "Hello there."),
                                         Message("user", QUESTION)]  # fmt: skip
            assert session.history == history
            assert session.last_turn_id == original.stats.turn_id
            assert comparison is not None
            assert (comparison.original.tier, comparison.rerun.tier) == ("small", "large")
            assert comparison.original.answer == "Rayleigh, roughly."
            assert comparison.rerun.model == "scripted:large"
            assert comparison.rerun.stats is not None and comparison.rerun.stats.latency.total_ms > 0
            assert comparison.original.stats == original.stats
            # both stored; the rerun set aside until kept
            rows = session.store.turns(session.conversation_id)
            assert [(r["answer"], r["superseded"]) for r in rows[1:]] == [
                ("Rayleigh, roughly.", 0),
                ("Rayleigh scattering: blue scatters most.", 1),
            ]

    asyncio.run(scenario())


def test_keeping_the_rerun_swaps_the_answer_and_labels_the_small_turn_bad(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["Rayleigh, roughly."], ["Blue scatters most."], data_dir=tmp_path) as session:
            original = await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None

            kept = keep(session, comparison, "rerun")

            assert kept == comparison.rerun and comparison.kept == "rerun"
            assert session.history == [Message("user", QUESTION), Message("assistant", "Blue scatters most.")]
            assert session.last_turn_id == comparison.rerun.turn_id
            assert _standing(session) == [(QUESTION, "Blue scatters most.")]
            # small was not enough: the small turn is bad; the large one carries no routing verdict
            assert _labels(session) == {original.stats.turn_id: False, comparison.rerun.turn_id: None}
            follow_up = await _ask(session, "And at sunset?")
            small = session.tiers.loaded("small")
            assert isinstance(small, ScriptedBackend)
            after = [Message("assistant", "Blue scatters most."), Message("user", "And at sunset?")]
            assert small.seen[-1][-2:] == after  # the next turn goes on from the kept answer
            assert follow_up.stats.status == "ok"

    asyncio.run(scenario())


def test_keeping_the_original_labels_the_small_turn_good_and_leaves_the_rerun_aside(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["Rayleigh, roughly."], ["Blue scatters most."], data_dir=tmp_path) as session:
            original = await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None

            keep(session, comparison, "original")

            assert session.history == [Message("user", QUESTION), Message("assistant", "Rayleigh, roughly.")]
            assert session.last_turn_id == original.stats.turn_id
            assert _standing(session) == [(QUESTION, "Rayleigh, roughly.")]
            assert _labels(session) == {original.stats.turn_id: True, comparison.rerun.turn_id: None}

    asyncio.run(scenario())


def test_a_large_answer_is_compared_on_small_and_the_small_rerun_gets_the_label(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["Short and right."], ["Long and right."], data_dir=tmp_path) as session:
            await _ask(session, QUESTION, route="large")
            events, comparison = await _compare(session)
            assert isinstance(events[0], RouteDecided) and events[0].decision.tier == "small"
            assert comparison is not None

            keep(session, comparison, "rerun")

            assert _labels(session)[comparison.rerun.turn_id] is True  # the small tier was enough
            assert _labels(session)[comparison.original.turn_id] is None

    asyncio.run(scenario())


def test_a_reopened_conversation_sees_only_the_kept_exchange(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with scripted_session(["Rayleigh, roughly."], ["Blue scatters most."], data_dir=tmp_path) as session:
            await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None
            keep(session, comparison, "rerun")
            return session.conversation_id

    cid = asyncio.run(scenario())
    with scripted_session(["-"], ["-"], data_dir=tmp_path, conversation_id=cid) as reopened:
        assert reopened.history == [Message("user", QUESTION), Message("assistant", "Blue scatters most.")]
    with scripted_session(["-"], ["-"], data_dir=tmp_path) as other:
        other.switch_conversation(cid[:6])
        assert other.history == [Message("user", QUESTION), Message("assistant", "Blue scatters most.")]


def test_a_compare_left_unkept_is_not_history_when_the_conversation_is_reopened(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with scripted_session(["Rayleigh, roughly."], ["Blue scatters most."], data_dir=tmp_path) as session:
            await _ask(session, QUESTION)
            await _compare(session)
            return session.conversation_id

    cid = asyncio.run(scenario())
    with scripted_session(["-"], ["-"], data_dir=tmp_path, conversation_id=cid) as reopened:
        assert reopened.history == [Message("user", QUESTION), Message("assistant", "Rayleigh, roughly.")]


def test_leaving_the_compare_stream_midway_leaves_the_history_and_sets_the_rerun_aside(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(
            ["Rayleigh, roughly."], [["Blue ", "scatters ", "most ", "of ", "all."]], data_dir=tmp_path
        ) as session:
            original = await _ask(session, QUESTION)
            history = list(session.history)
            run = compare(session)
            async for event in run:
                if isinstance(event, Token):
                    break
            await run.aclose()

            assert session.history == history
            assert session.last_turn_id == original.stats.turn_id
            assert run.comparison is None
            rows = session.store.turns(session.conversation_id)
            assert [(r["status"], r["superseded"]) for r in rows] == [("ok", 0), ("interrupted", 1)]
            assert _standing(session) == [(QUESTION, "Rayleigh, roughly.")]

    asyncio.run(scenario())


def test_a_failed_rerun_leaves_nothing_to_keep(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(
            ["Rayleigh, roughly."], [SlmchatError("the server went away", "start it again")], data_dir=tmp_path
        ) as session:
            await _ask(session, QUESTION)
            events, comparison = await _compare(session)
            assert isinstance(events[-1], TurnFailed) and events[-1].error == "the server went away"
            assert comparison is None
            assert session.history == [Message("user", QUESTION), Message("assistant", "Rayleigh, roughly.")]
            assert _standing(session) == [(QUESTION, "Rayleigh, roughly.")]

    asyncio.run(scenario())


def _compare_error(session: Session, turn_id: int | None = None) -> SlmchatError:
    async def scenario() -> None:
        await _compare(session, turn_id)

    with pytest.raises(SlmchatError) as caught:
        asyncio.run(scenario())
    assert caught.value.hint
    return caught.value


def test_there_is_nothing_to_compare_before_the_first_turn(tmp_path: Path) -> None:
    with scripted_session(["-"], ["-"], data_dir=tmp_path) as session:
        assert _compare_error(session).message == "there is no answer to compare yet"


def test_compare_needs_the_other_tier(tmp_path: Path) -> None:
    with scripted_session(["Rayleigh, roughly."], data_dir=tmp_path) as session:
        session.ask(QUESTION)
        assert _compare_error(session).message == "there is no large tier to compare with"
        assert len(session.store.turns(session.conversation_id)) == 1


def test_only_the_last_turn_can_be_compared(tmp_path: Path) -> None:
    with scripted_session(["One.", "Two."], ["-"], data_dir=tmp_path) as session:
        first = session.ask("First?").turn_id
        session.ask("Second?")
        error = _compare_error(session, first)
        assert error.message == f"only the last turn of this conversation can be compared, not turn {first}"


def test_a_failed_last_turn_cannot_be_compared(tmp_path: Path) -> None:
    with scripted_session([SlmchatError("the server went away", "start it again")], ["-"], data_dir=tmp_path) as s:
        with pytest.raises(SlmchatError):
            s.ask(QUESTION)
        assert _compare_error(s).message == "the last turn failed: there is no answer to compare"


def test_keeping_after_another_turn_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["Rayleigh, roughly.", "Red."], ["Blue."], data_dir=tmp_path) as session:
            original = await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None
            await _ask(session, "And at sunset?")

            with pytest.raises(SlmchatError, match="the conversation has moved on"):
                keep(session, comparison, "rerun")
            assert _labels(session)[original.stats.turn_id] is None
            assert [a for _, a in _standing(session)] == ["Rayleigh, roughly.", "Red."]

    asyncio.run(scenario())


def test_keeping_twice_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["Rayleigh, roughly."], ["Blue."], data_dir=tmp_path) as session:
            original = await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None
            keep(session, comparison, "original")

            with pytest.raises(SlmchatError, match="settled already"):
                keep(session, comparison, "rerun")
            assert _labels(session)[original.stats.turn_id] is True
            assert session.history[-1] == Message("assistant", "Rayleigh, roughly.")

    asyncio.run(scenario())


def test_a_rerun_gets_the_tools_but_a_tool_that_needs_approval_does_not_run_twice(tmp_path: Path) -> None:
    sent: list[str] = []

    @tool(requires_approval=True)
    def send_mail(to: str) -> str:
        """Send an email to this address."""
        sent.append(to)
        return f"sent to {to}"

    call = '{"tool": "send_mail", "arguments": {"to": "ann@example.org"}}'

    async def scenario() -> None:
        async with scripted_session(
            [call, "I sent it."], [call, "I could not send it."], data_dir=tmp_path, tools=Toolbox().add(send_mail)
        ) as session:
            async for event in session.turn("Mail ann@example.org, please.", route="small", tools=True):
                if isinstance(event, ApprovalRequested):
                    session.approve(event.request_id, True)
            events, comparison = await _compare(session)

            assert sent == ["ann@example.org"]
            assert [e.approved for e in events if isinstance(e, ToolCall)] == [False]
            assert comparison is not None and comparison.rerun.answer == "I could not send it."

    asyncio.run(scenario())


def test_compare_waits_for_the_running_turn(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session(["One.", ["Still ", "coming."]], ["-"], data_dir=tmp_path) as session:
            await _ask(session, "First?")
            running = session.turn("Second?", route="small")
            async with aclosing(running):
                async for event in running:
                    if isinstance(event, Token):
                        with pytest.raises(SlmchatError, match="an answer is still coming"):
                            await _compare(session)
                        break

    asyncio.run(scenario())


def test_a_compared_question_counts_once_when_calibrating_for_a_large_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`route calibrate --large-share` reads each question once: the side set aside is left out."""
    from slmchat.engine.route_tuning import propose_threshold
    from slmchat.infra import paths

    monkeypatch.setenv("SLMCHAT_DATA_DIR", str(tmp_path))

    async def scenario() -> None:
        async with scripted_session(["Rayleigh."], ["Blue scatters most."]) as session:
            await _ask(session, "Hi")
            await _ask(session, QUESTION)
            _, comparison = await _compare(session)
            assert comparison is not None
            keep(session, comparison, "rerun")
            rows = session.store.routed_turns()
            assert len(rows) == 3 and [r["superseded"] for r in rows].count(True) == 1
            assert session.store.path == paths.database_file()

    asyncio.run(scenario())
    with pytest.raises(SlmchatError, match="only 2 scored turns"):  # 3 turns stored, 2 questions
        propose_threshold(0.5, None)
