"""The conversations a face lists, renames, deletes, exports and resumes, through the engine.

Real scripted turns stored in a real history database in the test's folder.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from slmchat import AnswerReset, Escalated, RouteDecided, Session, SlmchatError, ToolCall, ToolResult, TurnDone
from slmchat.engine.conversations import (
    TITLE_MAX_CHARS,
    ConversationSummary,
    delete,
    export,
    list_conversations,
    rename,
    resume,
)
from slmchat.infra import paths
from slmchat.infra.backends.base import Message
from slmchat.testing import scripted_session
from slmchat.tools import Toolbox, tool


def three_conversations(session: Session) -> list[str]:
    """Stores "Paris?" (2 turns), "Rome?" and "Berlin?" (1 turn each); leaves "Berlin?" open."""
    ids = []
    for questions in (["Paris?", "And Lyon?"], ["Rome?"], ["Berlin?"]):
        session.new_conversation()
        for question in questions:
            session.ask(question)
        ids.append(session.conversation_id)
    return ids


@pytest.fixture
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    with scripted_session(["It is a city."], data_dir=tmp_path) as session:
        yield session


# -- list and rename --------------------------------------------------------------------------


def test_the_list_is_newest_first_with_turns_and_the_open_one_marked(session: Session) -> None:
    paris, rome, berlin = three_conversations(session)
    listed = list_conversations(session)
    assert [(c.id, c.title, c.turns, c.current) for c in listed] == [
        (berlin, "Berlin?", 1, True),
        (rome, "Rome?", 1, False),
        (paris, "Paris?", 2, False),
    ]
    assert listed[0].updated_at >= listed[1].updated_at >= listed[2].updated_at
    assert list_conversations(session, limit=1) == listed[:1]


def test_a_new_conversation_is_listed_once_it_has_a_turn(session: Session) -> None:
    three_conversations(session)
    session.new_conversation()
    assert not any(c.current for c in list_conversations(session))
    session.ask("Madrid?")
    assert list_conversations(session)[0] == ConversationSummary(
        session.conversation_id, "Madrid?", list_conversations(session)[0].updated_at, 1, True
    )


def test_rename_keeps_one_clean_line_and_a_sane_length(session: Session) -> None:
    paris, rome, _ = three_conversations(session)
    assert rename(session, paris[:6], "  Trip\n to   France ") == "Trip to France"
    assert rename(session, rome, "x" * 500) == "x" * TITLE_MAX_CHARS
    titles = {c.id: c.title for c in list_conversations(session)}
    assert titles[paris] == "Trip to France" and titles[rome] == "x" * TITLE_MAX_CHARS


def test_an_empty_title_is_refused_with_a_hint_and_the_old_one_stays(session: Session) -> None:
    paris, _, _ = three_conversations(session)
    with pytest.raises(SlmchatError) as caught:
        rename(session, paris, " \n\t ")
    assert caught.value.message == "a title cannot be empty" and caught.value.hint
    assert {c.id: c.title for c in list_conversations(session)}[paris] == "Paris?"


def test_an_unknown_id_is_a_one_line_error_everywhere(session: Session) -> None:
    three_conversations(session)
    for call in (
        lambda: rename(session, "nope", "A title"),
        lambda: delete(session, "nope"),
        lambda: export(session, "nope", "markdown"),
        lambda: resume(session, "nope"),
    ):
        with pytest.raises(SlmchatError, match="no conversation with id 'nope'"):
            call()


# -- delete -----------------------------------------------------------------------------------


def test_deleting_another_conversation_leaves_the_open_one_as_it_was(session: Session) -> None:
    paris, rome, berlin = three_conversations(session)
    history = list(session.history)
    assert delete(session, paris) == 2
    assert [c.id for c in list_conversations(session)] == [berlin, rome]
    assert session.conversation_id == berlin and session.history == history


def test_deleting_the_open_conversation_starts_a_new_one_and_loses_nothing_else(session: Session) -> None:
    paris, rome, berlin = three_conversations(session)
    assert delete(session, berlin) == 1
    assert session.conversation_id not in (paris, rome, berlin) and session.history == []
    assert [c.id for c in list_conversations(session)] == [rome, paris]
    session.ask("Oslo?")  # the next turn starts the new conversation, not the deleted one
    assert [c.title for c in list_conversations(session)] == ["Oslo?", "Rome?", "Paris?"]
    with pytest.raises(SlmchatError):
        delete(session, berlin)


# -- export -----------------------------------------------------------------------------------


def test_export_writes_markdown_and_json_to_the_exports_folder(session: Session) -> None:
    paris, _, _ = three_conversations(session)
    md = export(session, paris, "markdown")
    assert md == paths.data_dir() / "exports" / f"{paris[:8]}.md"
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"# Conversation {paris}\n")
    assert "Paris?" in text and "And Lyon?" in text and "It is a city." in text

    data = json.loads(export(session, paris, "json").read_text(encoding="utf-8"))
    assert data["conversation_id"] == paris
    assert [(t["user"], t["answer"], t["status"]) for t in data["turns"]] == [
        ("Paris?", "It is a city.", "ok"),
        ("And Lyon?", "It is a city.", "ok"),
    ]


def test_export_never_overwrites_a_file_it_numbers_the_next_one(session: Session, tmp_path: Path) -> None:
    paris, rome, _ = three_conversations(session)
    target = tmp_path / "out" / "trip.md"
    target.parent.mkdir()
    target.write_text("mine", encoding="utf-8")
    assert export(session, paris, "markdown", target) == tmp_path / "out" / "trip-1.md"
    assert export(session, rome, "markdown", target) == tmp_path / "out" / "trip-2.md"
    assert target.read_text(encoding="utf-8") == "mine"
    assert "Rome?" in (tmp_path / "out" / "trip-2.md").read_text(encoding="utf-8")
    first, second = export(session, paris, "json"), export(session, paris, "json")
    assert (first.name, second.name) == (f"{paris[:8]}.json", f"{paris[:8]}-1.json")


def test_an_unknown_format_or_an_unwritable_place_is_a_one_line_error(session: Session, tmp_path: Path) -> None:
    paris, _, _ = three_conversations(session)
    with pytest.raises(SlmchatError, match="unknown export format 'pdf'") as caught:
        export(session, paris, "pdf")  # type: ignore[arg-type]
    assert caught.value.hint == "use markdown or json"
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    with pytest.raises(SlmchatError, match="cannot write") as caught:
        export(session, paris, "json", tmp_path / "a-file" / "x.json")
    assert caught.value.hint


# -- resume -----------------------------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def test_resume_switches_the_session_and_gives_back_each_turn_with_its_events(tmp_path: Path) -> None:
    call = '{"tool": "add", "arguments": {"a": 2, "b": 3}}'
    # the small tier answers nothing to the first question (redone on large), then calls the tool
    small = ["", call, "2 plus 3 is 5."]
    with scripted_session(small, ["Paris is the capital."], data_dir=tmp_path, tools=Toolbox().add(add)) as session:
        session.ask("Capital of France?", tools=False)  # a simple request: the router picks small
        session.ask("What is 2 + 3? Use the tool.", route="small", tools=True)
        session.ask("Hello", route="small", tools=False)  # the last scripted reply again
        old = session.conversation_id
        session.new_conversation()
        session.ask("Something else", route="small", tools=False)

        turns = resume(session, old[:5])

        assert session.conversation_id == old
        assert [(t.user_text, t.answer, t.status) for t in turns] == [
            ("Capital of France?", "Paris is the capital.", "ok"),
            ("What is 2 + 3? Use the tool.", "2 plus 3 is 5.", "ok"),
            ("Hello", "2 plus 3 is 5.", "ok"),
        ]
        escalated, tooled, _ = turns
        assert isinstance(escalated.events[0], RouteDecided) and escalated.events[0].decision.tier == "small"
        escalation = next(e for e in escalated.events if isinstance(e, Escalated))
        assert (escalation.reason, escalation.to_tier) == ("empty answer", "large")
        assert any(isinstance(e, AnswerReset) for e in escalated.events)
        assert isinstance(escalated.events[-1], TurnDone) and escalated.stats is not None
        assert escalated.stats.answered_by == "large" and escalated.stats.turn_id == escalated.turn_id
        assert [(e.name, e.arguments) for e in tooled.events if isinstance(e, ToolCall)] == [("add", {"a": 2, "b": 3})]
        assert [e.result for e in tooled.events if isinstance(e, ToolResult)] == ["5"]
        # the next turn continues the resumed conversation, with its history
        assert session.history[:2] == [
            Message("user", "Capital of France?"),
            Message("assistant", "Paris is the capital."),
        ]


def test_resume_leaves_out_a_turn_set_aside_and_keeps_a_failed_one(tmp_path: Path) -> None:
    replies = ["First answer.", "Set aside.", [SlmchatError("the server went away", "start it again")], "Last."]
    with scripted_session(replies, data_dir=tmp_path) as session:
        session.ask("one")
        session.ask("two")
        with pytest.raises(SlmchatError):
            session.ask("three")
        session.ask("four")
        cid = session.conversation_id
        session.store.set_superseded(resume(session, cid)[1].turn_id)

        turns = resume(session, cid)

        assert [(t.user_text, t.status) for t in turns] == [("one", "ok"), ("three", "failed"), ("four", "ok")]
        failed = turns[1]
        assert failed.stats is None and failed.error and "the server went away" in failed.error
        assert failed.events[-1].kind == "turn_failed"


def test_resume_and_deleting_the_open_conversation_wait_for_the_running_answer(tmp_path: Path) -> None:
    async def second_turn(session: Session, cid: str) -> None:
        async for event in session.turn("second"):  # the turn is paused at each event it yields
            if event.kind == "token":
                with pytest.raises(SlmchatError, match="while an answer is coming"):
                    resume(session, cid)
                with pytest.raises(SlmchatError, match="while an answer is coming"):
                    delete(session, cid)

    with scripted_session(["One two three four."], data_dir=tmp_path) as session:
        session.ask("first")
        asyncio.run(second_turn(session, session.conversation_id))
        assert [c.turns for c in list_conversations(session)] == [2]
