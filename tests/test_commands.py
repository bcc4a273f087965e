"""The command layer on its own: every slash word a face accepts, parsed and run against a Session.

Results are data, so these tests read them directly; the REPL's rendering of the same results
is tested in tests/test_repl.py. Scripted sessions where the model is not the point.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.engine.commands import (
    COMMANDS,
    FORGET_SIMILARITY,
    Command,
    CommandResult,
    Facts,
    Forgotten,
    Help,
    Judged,
    Matches,
    Models,
    NewConversation,
    Prompt,
    Remembered,
    RouteSet,
    Switched,
    Tools,
    forget_confirmed,
    help_text,
    parse_command,
    run_line,
)
from slmchat.engine.session import Session
from slmchat.infra.config import MemoryConfig
from slmchat.memory.manager import Memory
from slmchat.memory.types import MemoryUnavailable
from slmchat.routing import Route
from slmchat.testing import scripted_session
from slmchat.tools import Toolbox, tool
from slmchat.tools.prompt import SUMMARY_WORDS, first_sentence


def run(session: Session, line: str) -> Prompt | CommandResult:
    return asyncio.run(run_line(session, line))


def calculate(expression: str) -> float:
    """Calculate a math expression: add, subtract, multiply, divide, powers and roots."""
    return 0.0


@tool(requires_approval=True)
def read_note(name: str) -> str:
    """Read the user's saved note with this name."""
    return ""


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with scripted_session(["Paris."], data_dir=tmp_path) as session:
        yield session


# -- parsing ----------------------------------------------------------------------------------


def test_plain_text_and_tier_prefixes_are_messages_not_commands() -> None:
    assert parse_command("  What is the capital of France? ") == Prompt("What is the capital of France?")
    assert parse_command("/large What is 2 + 2?") == Prompt("What is 2 + 2?", Route.LARGE)
    assert parse_command("/small\nfirst line\nsecond line") == Prompt("first line\nsecond line", Route.SMALL)
    parsed = parse_command("/route large")
    assert isinstance(parsed, Command) and parsed.spec.name == "route" and parsed.arg == "large"


def test_a_tier_prefix_without_text_says_what_to_type() -> None:
    result = parse_command("/large")
    assert isinstance(result, CommandResult) and not result.ok
    assert result.message == "/large needs TEXT" and result.hint and result.hint.startswith("for example: /large ")


def test_an_unknown_command_is_an_error_result_with_a_way_out(session: Session) -> None:
    result = run(session, "/frobnicate")
    assert isinstance(result, CommandResult) and not result.ok and result.kind == "unknown"
    assert result.message == "unknown command /frobnicate" and result.hint == "/help lists the commands"
    typo = run(session, "/rout large")
    assert isinstance(typo, CommandResult) and typo.hint == "did you mean /route? /help lists the commands"
    assert session.route == Route.AUTO  # nothing ran


def test_a_command_without_an_argument_refuses_one(session: Session) -> None:
    before = session.conversation_id
    result = run(session, "/new please")
    assert isinstance(result, CommandResult) and not result.ok
    assert result.message == "/new takes no argument" and result.hint == "type /new alone"
    assert session.conversation_id == before


def test_help_lists_every_command_of_the_table(session: Session) -> None:
    result = run(session, "/help")
    assert isinstance(result, Help) and result.ok and result.commands == COMMANDS
    assert result.text == help_text()
    lines = result.text.splitlines()[1:]
    assert len(lines) == len(COMMANDS)
    for spec, line in zip(COMMANDS, lines, strict=True):
        assert line.split()[0] == f"/{spec.name}" and spec.usage in line and spec.help in line
        assert not (isinstance(parsed := parse_command(f"/{spec.name}"), CommandResult) and parsed.kind == "unknown")
    assert "/model [NAME]" in result.text and "/route [auto|small|large]" in result.text
    assert "/forget QUERY" in result.text and "(also /exit, /q)" in result.text


# -- session commands -------------------------------------------------------------------------


def test_quit_and_its_aliases(session: Session) -> None:
    for line in ("/quit", "/exit", "/q", "/QUIT"):
        result = run(session, line)
        assert isinstance(result, CommandResult) and result.kind == "quit" and result.quits
    refused = run(session, "/quit now")
    assert isinstance(refused, CommandResult) and not refused.ok and not refused.quits


def test_new_returns_the_new_conversation(session: Session) -> None:
    session.ask("What is the capital of France?")
    old = session.conversation_id
    result = run(session, "/new")
    assert isinstance(result, NewConversation) and result.ok
    assert result.conversation_id == session.conversation_id != old
    assert result.message == f"new conversation {result.conversation_id}" and session.history == []


def test_route_shows_sets_and_validates(session: Session) -> None:
    shown = run(session, "/route")
    assert isinstance(shown, RouteSet) and shown.route == Route.AUTO and not shown.changed
    assert shown.message == "route: auto"
    set_ = run(session, "/route LARGE")
    assert isinstance(set_, RouteSet) and set_.changed and session.route == Route.LARGE
    sideways = run(session, "/route sideways")
    assert isinstance(sideways, CommandResult) and not sideways.ok
    assert sideways.message == "route is one of auto, small, large, not 'sideways'"
    assert sideways.hint == "usage: /route [auto|small|large]"
    assert session.route == Route.LARGE  # unchanged by the bad value


def test_model_shows_the_tiers_and_sets_the_small_one(session: Session) -> None:
    shown = run(session, "/model")
    assert isinstance(shown, Models) and (shown.small, shown.large, shown.changed) == ("scripted:small", None, False)
    assert shown.message == "small: scripted:small, large: (not configured)"
    bad = run(session, "/model gpt4")
    assert isinstance(bad, CommandResult) and not bad.ok and bad.kind == "model"
    assert bad.message.startswith("model name 'gpt4' has no backend") and bad.hint
    assert session.model_name("small") == "scripted:small"  # the bad name changed nothing
    good = run(session, "/model llamacpp:smollm2")  # recorded now, loaded by the next turn
    assert isinstance(good, Models) and good.changed and good.small == "llamacpp:smollm2"
    assert good.message == "small tier: llamacpp:smollm2" and session.model_name("small") == "llamacpp:smollm2"


def test_good_and_bad_judge_the_last_answer(session: Session) -> None:
    early = run(session, "/good")
    assert isinstance(early, CommandResult) and not early.ok and early.kind == "good"
    assert early.message == "there is no answer to judge yet" and early.hint == "ask something first"
    turn_id = session.ask("What is the capital of France?").turn_id
    judged = run(session, "/bad")
    assert isinstance(judged, Judged) and (judged.turn_id, judged.good) == (turn_id, False)
    assert judged.message == f"noted: turn {turn_id} was bad"
    assert [t["good"] for t in session.store.routed_turns()] == [False]


def test_tools_lists_signatures_and_switches(tmp_path: Path) -> None:
    session = scripted_session(["ok"], data_dir=tmp_path, tools=Toolbox().add(calculate, read_note))
    listed = run(session, "/tools")
    assert isinstance(listed, Tools) and listed.enabled and listed.message == "tools on: 2 available"
    assert [(t.name, t.asks_first) for t in listed.tools] == [("calculate", False), ("read_note", True)]
    assert listed.tools[0].signature.startswith("calculate(expression: str) - Calculate a math expression")
    sentence = first_sentence(session.toolbox["calculate"].spec.description)
    assert len(sentence.split()) > SUMMARY_WORDS and listed.tools[0].signature.endswith(sentence)  # not cut
    off = run(session, "/tools off")
    assert isinstance(off, Tools) and not off.enabled and not session.use_tools
    assert off.message == "tools off: 2 available"
    maybe = run(session, "/tools maybe")
    assert isinstance(maybe, CommandResult) and not maybe.ok and maybe.message.startswith("tools is one of on, off")
    assert not session.use_tools  # unchanged
    assert isinstance(on := run(session, "/tools on"), Tools) and on.enabled and session.use_tools


def test_tools_without_any_installed(session: Session) -> None:
    result = run(session, "/tools")
    assert (
        isinstance(result, Tools) and result.tools == () and result.message == "no tools installed (see docs/tools.md)"
    )


# -- memory -----------------------------------------------------------------------------------


def test_memory_commands_say_how_to_turn_memory_on(session: Session) -> None:
    assert session.memory is None
    for line in ("/remember I prefer metric units", "/forget units", "/memory", "/memory on"):
        result = run(session, line)
        assert isinstance(result, CommandResult) and not result.ok, line
        assert result.message == "memory is off in the config ([memory] enabled = false)"
        assert result.hint and "enabled = true under [memory]" in result.hint
    confirmed = asyncio.run(forget_confirmed(session, ["some-id"]))
    assert not confirmed.ok and "memory is off" in confirmed.message


def test_forget_and_remember_need_their_argument(session: Session) -> None:
    forget = run(session, "/forget")
    assert isinstance(forget, CommandResult) and not forget.ok
    assert forget.message == "/forget needs QUERY" and forget.hint == "for example: /forget my dog"
    remember = run(session, "/remember   ")
    assert isinstance(remember, CommandResult) and remember.message == "/remember needs TEXT"


def test_unusable_memory_is_an_error_result(tmp_path: Path) -> None:
    def locked() -> None:
        raise MemoryUnavailable("the memory database is locked by another program", "close the other program")

    session = scripted_session(["ok"], data_dir=tmp_path, memory=Memory(MemoryConfig(path=tmp_path), opener=locked))
    result = run(session, "/memory")
    assert isinstance(result, CommandResult) and not result.ok and result.kind == "memory"
    assert result.message == "the memory database is locked by another program"
    assert result.hint == "close the other program"


class SlowStore:
    """A memory store whose listing waits until the test lets it go (from the event loop)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def items(self, kind: str, limit: int) -> list:
        if not self.release.wait(10):
            raise MemoryUnavailable("the event loop was blocked while memory was read")
        return []


def test_memory_commands_leave_the_event_loop_free(tmp_path: Path) -> None:
    store = SlowStore()
    session = scripted_session(["ok"], data_dir=tmp_path, memory=Memory(MemoryConfig(path=tmp_path), lambda: store))

    async def go() -> CommandResult | Prompt:
        listing = asyncio.create_task(run_line(session, "/memory"))
        await asyncio.sleep(0.05)  # the command is now waiting on the store, off the loop
        store.release.set()  # only runs if the loop is free
        return await listing

    result = asyncio.run(go())
    assert isinstance(result, Facts) and result.ok and result.facts == ()


@pytest.mark.memory
def test_remember_list_and_forget_in_two_steps(tmp_path: Path) -> None:
    memory = Memory(MemoryConfig(path=tmp_path / "mem", extract=False, store_exchanges=False))
    session = scripted_session(["ok"], data_dir=tmp_path, memory=memory)

    remembered = run(session, "/remember I prefer metric units")
    assert isinstance(remembered, Remembered) and remembered.change.action == "add"
    assert remembered.message == "remembered: I prefer metric units"
    assert isinstance(run(session, "/remember My sister lives in Oslo"), Remembered)
    listed = run(session, "/memory")
    assert isinstance(listed, Facts) and listed.enabled and listed.message == "memory on: 2 facts shown"
    assert sorted(f.text for f in listed.facts) == ["I prefer metric units", "My sister lives in Oslo"]

    matches = run(session, "/forget units")
    assert isinstance(matches, Matches) and matches.query == "units"
    assert [h.item.text for h in matches.hits] == ["I prefer metric units"]  # the sister is below the threshold
    assert all(h.similarity >= FORGET_SIMILARITY for h in matches.hits)
    assert matches.message == "1 memory match 'units'"
    assert matches.question == "delete this memory?"  # not "delete these 1?"
    assert memory.store().count() == 2  # step one deletes nothing
    unrelated = run(session, "/forget my dog")
    assert isinstance(unrelated, Matches) and unrelated.hits == ()
    assert unrelated.message == "nothing remembered about 'my dog'"

    declined = asyncio.run(forget_confirmed(session, ()))
    assert isinstance(declined, Forgotten) and declined.deleted == 0 and declined.message == "nothing deleted"
    assert memory.store().count() == 2
    deleted = asyncio.run(forget_confirmed(session, matches.ids))
    assert isinstance(deleted, Forgotten) and deleted.deleted == 1 and deleted.message == "deleted 1"
    assert [item.text for item in memory.facts()] == ["My sister lives in Oslo"]

    switched = run(session, "/memory off")
    assert isinstance(switched, Switched) and not switched.enabled and not session.use_memory
    assert switched.message == "memory off"
    session.close()
