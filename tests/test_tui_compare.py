"""The compare screen in a tiny host app: the rerun streams beside the original; a key keeps one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.app import App
from textual.widgets import Markdown, Static

from slmchat import Session, SlmchatError, TurnDone
from slmchat.faces.tui.compare import CompareOutcome, CompareScreen
from slmchat.infra.backends.base import Message
from slmchat.testing import ScriptedBackend, scripted_session
from tests.helpers import until

QUESTION = "Why is the sky [bold]blue[/bold]?"
SMALL = "Rayleigh, [red]roughly[/red]."
LARGE = "Blue light scatters most: Rayleigh scattering."


class Host(App[None]):
    """Pushes the compare screen at once and keeps what it was dismissed with."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.outcomes: list[CompareOutcome | None] = []

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self.session), self.outcomes.append)


async def _first_turn(session: Session) -> TurnDone:
    events = [event async for event in session.turn(QUESTION, route="small")]
    assert isinstance(events[-1], TurnDone)
    return events[-1]


def _text(screen: CompareScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def test_the_rerun_streams_beside_the_original_and_2_keeps_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session([SMALL], [LARGE], data_dir=tmp_path) as session:
            original = await _first_turn(session)
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, CompareScreen)
                await until(pilot, lambda: screen.comparison is not None)

                assert screen.rerun_text == LARGE
                assert screen.query_one("#original-answer", Markdown).source == SMALL
                assert screen.query_one("#rerun-answer", Markdown).source == LARGE
                assert _text(screen, "#compare-question") == QUESTION  # data, not markup
                assert _text(screen, "#original-figures").splitlines()[0] == "small · scripted:small"
                rerun_figures = _text(screen, "#rerun-figures").splitlines()
                assert rerun_figures[0] == "large · scripted:large"
                assert rerun_figures[1].startswith("$? · ")  # the scripted model has no price: never $0
                assert rerun_figures[2].startswith("ttft ") and rerun_figures[2].endswith(" tok/s")
                await pilot.press("2")
                await until(pilot, lambda: bool(app.outcomes))

            outcome = app.outcomes[0]
            assert outcome is not None
            assert (outcome.kept, outcome.answer, outcome.tier) == ("rerun", LARGE, "large")
            assert outcome.replaces == original.stats.turn_id
            assert session.last_turn_id == outcome.turn_id
            assert session.history == [Message("user", QUESTION), Message("assistant", LARGE)]
            labels = {row["turn_id"]: row["good"] for row in session.store.routed_turns()}
            assert labels == {original.stats.turn_id: False, outcome.turn_id: None}
            rows = session.store.turns(session.conversation_id)
            assert [(r["answer"], r["superseded"]) for r in rows] == [(SMALL, 1), (LARGE, 0)]

    asyncio.run(scenario())


def test_1_keeps_the_original_and_says_small_was_enough(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session([SMALL], [LARGE], data_dir=tmp_path) as session:
            original = await _first_turn(session)
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, CompareScreen)
                await until(pilot, lambda: screen.comparison is not None)
                await pilot.press("left")
                await until(pilot, lambda: bool(app.outcomes))

            outcome = app.outcomes[0]
            assert outcome is not None and (outcome.kept, outcome.answer) == ("original", SMALL)
            assert outcome.turn_id == original.stats.turn_id and outcome.replaces is None
            labels = {row["turn_id"]: row["good"] for row in session.store.routed_turns()}
            assert labels[original.stats.turn_id] is True

    asyncio.run(scenario())


def test_escape_while_streaming_cancels_the_rerun_and_keeps_the_original(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session([SMALL], [LARGE * 8], data_dir=tmp_path) as session:  # ~3 s when not cancelled
            await _first_turn(session)
            large = await session.backend("large")
            assert isinstance(large, ScriptedBackend)
            large.delay_s = 0.05  # slow enough to press Esc mid-answer
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, CompareScreen)
                await until(pilot, lambda: bool(screen.rerun_text))
                await pilot.press("escape")
                await until(pilot, lambda: bool(app.outcomes))

            assert app.outcomes == [None]
            assert 0 < len(screen.rerun_text) < len(LARGE * 8)
            assert session.history == [Message("user", QUESTION), Message("assistant", SMALL)]
            rows = session.store.turns(session.conversation_id)
            assert [(r["status"], r["superseded"]) for r in rows] == [("ok", 0), ("interrupted", 1)]
            assert all(row["good"] is None for row in session.store.routed_turns())

    asyncio.run(scenario())


def test_an_error_is_one_line_and_nothing_can_be_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_session([SMALL], data_dir=tmp_path) as session:  # no large tier
            await _first_turn(session)
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, CompareScreen)
                await until(pilot, lambda: screen.error is not None)
                assert screen.error == "there is no large tier to compare with (set [large] model in the config file)"
                assert _text(screen, "#compare-status") == screen.error
                await pilot.press("2")
                assert screen.error == "there is no rerun to keep: Esc closes and keeps the original"
                await pilot.press("escape")
                await until(pilot, lambda: bool(app.outcomes))
            assert app.outcomes == [None]

    asyncio.run(scenario())


def test_a_failed_rerun_is_one_line_and_the_original_stands(tmp_path: Path) -> None:
    async def scenario() -> None:
        failure = SlmchatError("the large server went away", "start it again")
        async with scripted_session([SMALL], [["Blue ", failure]], data_dir=tmp_path) as session:
            await _first_turn(session)
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                screen = app.screen
                assert isinstance(screen, CompareScreen)
                await until(pilot, lambda: screen.error is not None)
                assert screen.error == "the rerun failed: the large server went away (start it again)"
                await pilot.press("2")
                assert screen.error == "there is no rerun to keep: Esc closes and keeps the original"
                await pilot.press("escape")
                await until(pilot, lambda: bool(app.outcomes))
            assert app.outcomes == [None]
            assert session.history == [Message("user", QUESTION), Message("assistant", SMALL)]

    asyncio.run(scenario())
