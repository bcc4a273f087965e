"""The terminal app's conversations list, driven by keys in a tiny host app at 80x24.

Real scripted turns in a real history database; what the screen shows is read from its
rendered lines, what it did from the engine's view of the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget

from slmchat import Session
from slmchat.engine.conversations import list_conversations, rename
from slmchat.faces.tui.conversations import (
    ConversationAction,
    ConversationsScreen,
    ConversationTable,
    DeleteQuestion,
    TitleInput,
)
from slmchat.infra import paths
from slmchat.testing import scripted_session
from tests.helpers import until


class Host(App[None]):
    """Opens the conversations list over an empty app and keeps what it closed with."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.results: list[ConversationAction | None] = []

    def on_mount(self) -> None:
        self.push_screen(ConversationsScreen(self.session), self.results.append)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """Three stored conversations, newest first: "Berlin?" (open), "Rome?", "Paris?" (2 turns)."""
    with scripted_session(["It is a city."], data_dir=tmp_path) as session:
        for questions in (["Paris?", "And Lyon?"], ["Rome?"], ["Berlin?"]):
            session.new_conversation()
            for question in questions:
                session.ask(question)
        yield session


def ids(session: Session) -> dict[str, str]:
    return {c.title: c.id for c in list_conversations(session)}


def lines(widget: Widget) -> list[str]:
    """The widget's rendered lines, as the terminal shows them."""
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


def message(app: App[None]) -> str:
    return lines(app.screen.query_one("#message"))[0].strip()


def run(session: Session, scenario: Callable[[Host, Pilot[None]], Awaitable[None]]) -> Host:
    """Run ``scenario`` against the list, shown at 80x24 once its rows are in."""

    async def main() -> Host:
        app = Host(session)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ConversationsScreen) and bool(app.screen.rows))
            await scenario(app, pilot)
        return app

    return asyncio.run(main())


def test_the_list_shows_titles_turns_and_the_open_one_in_words(session: Session) -> None:
    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        table = app.screen.query_one(ConversationTable)
        header, berlin, rome, paris = lines(table)[:4]
        assert header.split() == ["Title", "Turns", "Updated"]
        assert berlin.split()[0] == "Berlin?" and berlin.endswith("current")
        assert rome.split()[:2] == ["Rome?", "1"] and "current" not in rome
        assert paris.split()[:2] == ["Paris?", "2"]
        footer = {key.render_line(0).text.strip() for key in app.screen.query("FooterKey")}
        assert {"r Rename", "d Delete", "m Export .md", "j Export .json", "esc Close"} <= footer
        assert any(text.endswith("Resume") for text in footer)  # Enter, shown as a symbol

    run(session, scenario)


def test_arrows_and_enter_close_the_list_with_the_conversation_to_resume(session: Session) -> None:
    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("down", "down", "up", "down", "enter")
        await until(pilot, lambda: bool(app.results))
        assert not isinstance(app.screen, ConversationsScreen)

    app = run(session, scenario)
    assert app.results == [ConversationAction("resume", ids(session)["Paris?"])]


def test_esc_closes_with_nothing_to_do(session: Session) -> None:
    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("escape")
        await until(pilot, lambda: bool(app.results))

    assert run(session, scenario).results == [None]


def test_r_renames_in_place_enter_saves(session: Session) -> None:
    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("down", "r")
        field = app.screen.query_one(TitleInput)
        assert field.has_focus and field.value == "Rome?"
        await pilot.press(*"Eternal city", "enter")  # the old title is selected: typing replaces it
        await until(pilot, lambda: "Eternal city" in ids(session))
        await until(pilot, lambda: message(app) == "renamed to “Eternal city”")
        assert not app.screen.query_one("#rename").display and app.screen.query_one(ConversationTable).has_focus
        assert lines(app.screen.query_one(ConversationTable))[2].startswith(" Eternal city")

    run(session, scenario)
    assert set(ids(session)) == {"Berlin?", "Eternal city", "Paris?"}


def test_an_empty_title_is_one_line_of_error_and_esc_keeps_the_old_one(session: Session) -> None:
    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("r", "backspace", "space", "enter")
        await until(pilot, lambda: message(app).startswith("a title cannot be empty"))
        assert app.screen.query_one(TitleInput).has_focus  # still open, to try again
        await pilot.press("escape")
        assert message(app) == "title kept" and not app.results  # Esc left the title, not the list

    run(session, scenario)
    assert set(ids(session)) == {"Berlin?", "Rome?", "Paris?"}


def test_d_asks_first_n_keeps_y_deletes(session: Session) -> None:
    paris = ids(session)["Paris?"]

    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        question = app.screen.query_one(DeleteQuestion)
        await pilot.press("down", "down", "d")
        assert question.display and lines(question)[0] == "Delete “Paris?” (2 turns)? y/n"
        await pilot.press("n")
        assert not question.display and message(app) == "kept “Paris?”" and ids(session)["Paris?"] == paris
        await pilot.press("d", "y")
        await until(pilot, lambda: paris not in app.screen.rows)
        assert message(app) == "deleted “Paris?” (2 turns)"
        assert len(app.screen.query_one(ConversationTable).rows) == 2
        await pilot.press("escape")
        await until(pilot, lambda: bool(app.results))

    app = run(session, scenario)
    assert app.results == [None] and set(ids(session)) == {"Berlin?", "Rome?"}


def test_deleting_the_open_conversation_closes_with_the_new_one_to_show(session: Session) -> None:
    berlin = ids(session)["Berlin?"]

    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("d")
        assert lines(app.screen.query_one(DeleteQuestion))[0] == "Delete “Berlin?” (1 turn, the open one)? y/n"
        await pilot.press("y")
        await until(pilot, lambda: berlin not in app.screen.rows)
        assert message(app) == "deleted “Berlin?” (1 turn); a new conversation is open"
        await pilot.press("escape")
        await until(pilot, lambda: bool(app.results))

    app = run(session, scenario)
    assert session.conversation_id != berlin and session.history == []
    assert app.results == [ConversationAction("new", session.conversation_id)]


def test_m_and_j_export_and_say_where(session: Session) -> None:
    rome = ids(session)["Rome?"]
    exports = paths.data_dir() / "exports"

    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        await pilot.press("down", "m")
        await until(pilot, lambda: message(app).startswith("wrote "))
        assert message(app).endswith(f"/exports/{rome[:8]}.md")  # a long path loses its start, not its name
        await pilot.press("j")
        await until(pilot, lambda: message(app).endswith(".json"))

    run(session, scenario)
    assert "Rome?" in (exports / f"{rome[:8]}.md").read_text(encoding="utf-8")
    assert json.loads((exports / f"{rome[:8]}.json").read_text(encoding="utf-8"))["conversation_id"] == rome


def test_a_title_that_looks_like_markup_shows_literally(session: Session) -> None:
    rename(session, ids(session)["Berlin?"], "[bold]x[/bold] and [red]y")

    async def scenario(app: Host, pilot: Pilot[None]) -> None:
        assert lines(app.screen.query_one(ConversationTable))[1].startswith(" [bold]x[/bold] and [red]y ")
        await pilot.press("d")
        assert lines(app.screen.query_one(DeleteQuestion))[0].startswith("Delete “[bold]x[/bold] and [red]y”")

    run(session, scenario)


def test_with_no_conversations_the_keys_say_so_instead_of_failing(tmp_path: Path) -> None:
    async def scenario() -> None:
        with scripted_session(["unused"], data_dir=tmp_path) as session:
            app = Host(session)
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: message(app) == "no conversations yet")
                await pilot.press("r")
                assert message(app) == "no conversation to act on"
                await pilot.press("enter", "d", "m")
                assert message(app) == "no conversation to act on" and not app.results

    asyncio.run(scenario())
