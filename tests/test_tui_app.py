"""The terminal app under Textual's Pilot: scripted model streams through the real engine.

Each test types and presses keys as a user would and reads what the app drew: the log's
widgets, the status line and the inspector's text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Collapsible, Input, Markdown, OptionList

from slmchat.engine.session import Session
from slmchat.faces.tui.app import SlmchatApp
from slmchat.faces.tui.chat_log import ChatLog, Marker, ToolBlock, TurnBlock
from slmchat.faces.tui.dialogs import ApprovalScreen
from slmchat.faces.tui.inspector import Inspector
from slmchat.infra.config import Config, TuiConfig
from slmchat.infra.store import Store
from slmchat.testing import Reply, scripted_session
from slmchat.tools import Toolbox, tool
from tests.helpers import until

LOOP = ["Paris is ", *["la Femme, "] * 60]  # a repetition loop: the engine escalates it


def drive(
    session: Callable[[], Session],
    scenario: Callable[[SlmchatApp, Pilot[Any]], Awaitable[None]],
    *,
    size: tuple[int, int] = (120, 36),
    config: Config | None = None,
) -> SlmchatApp:
    app = SlmchatApp(config or Config(), session)

    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await until(pilot, app.ready.is_set)
            await scenario(app, pilot)

    asyncio.run(run())
    return app


async def ask(app: SlmchatApp, pilot: Pilot[Any], text: str) -> TurnBlock:
    """Type ``text``, press Enter, wait for the turn to finish; returns its block."""
    before = len(app.query_one(ChatLog).blocks())
    await pilot.click("#prompt")
    await pilot.press(*text, "enter")
    await until(pilot, lambda: len(app.query_one(ChatLog).blocks()) > before and app.live is None)
    return app.query_one(ChatLog).blocks()[-1]


def inspector_text(app: SlmchatApp) -> str:
    return str(app.query_one("#inspector-body").render())


def status_text(app: SlmchatApp) -> str:
    return str(app.query_one("#status").render())


def scripted(tmp_path: Path, small: list[Reply], large: list[Reply] | None = None, **options: Any):  # type: ignore[no-untyped-def]
    return lambda: scripted_session(small, large, data_dir=tmp_path, **options)


def test_a_turn_streams_into_the_log_and_the_inspector_shows_where_and_how_fast(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        block = await ask(app, pilot, "What is the capital of France?")
        assert block.query_one(Markdown).source == "Paris is the **capital** of France."
        text = inspector_text(app)
        assert "tier      small" in text and "model     scripted:small" in text
        assert "LOCAL" in text and "on this machine" in text  # said in words, not by colour alone
        assert "tok/s" in text and "ttft" in text
        assert "turn      $?" in text  # a scripted model has no price: unknown, never $0
        assert "#1    S" in text  # the session chart
        assert "small · scripted:small" in str(block.footer.render())

    drive(scripted(tmp_path, ["Paris is the **capital** of France."]), scenario)


def test_the_input_takes_keys_before_the_session_is_ready(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_session() -> Session:
        release.wait(10)
        return scripted_session(["Hello there."], data_dir=tmp_path)

    app = SlmchatApp(Config(), slow_session)

    async def run() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press(*"hi")
            assert app.query_one("#prompt", Input).value == "hi"  # typed while the session starts
            assert status_text(app) == "starting…"
            await pilot.press("enter")  # sent once the session is there
            release.set()
            await until(pilot, lambda: bool(app.totals.turns))
            assert app.query_one(ChatLog).blocks()[0].view.answer == "Hello there."

    asyncio.run(run())


def test_an_escalation_folds_the_replaced_answer_and_marks_where_it_happened(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        block = await ask(app, pilot, "What is the capital of France?")
        markers = [str(m.render()) for m in block.query(Marker)]
        assert any(m.startswith("⇪ ") and "repetition loop" in m for m in markers)
        folded = block.query_one(".replaced", Collapsible)
        assert folded.collapsed and "la Femme" in str(folded.query_one(".folded").render())  # kept, folded
        assert block.query_one(Markdown).source == "Paris."
        text = inspector_text(app)
        assert "tier      large (escalated)" in text and "escalated answer: repetition loop" in text

    drive(scripted(tmp_path, [LOOP], ["Paris."]), scenario)


@tool(requires_approval=True)
def delete_note(name: str) -> str:
    """Delete the user's saved note with this name."""
    return f"deleted {name}"


def test_a_tool_that_needs_approval_asks_in_a_modal_and_a_denial_reaches_the_model(tmp_path: Path) -> None:
    call = '{"tool": "delete_note", "arguments": {"name": "old"}}'

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.click("#prompt")
        await pilot.press(*"Delete my old note", "enter")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        assert "delete_note" in str(app.screen.query_one("Label").render())
        assert '"name": "old"' in str(app.screen.query_one("#arguments").render())
        assert "waiting for approval: delete_note" in status_text(app)
        await pilot.press("n")
        await until(pilot, lambda: app.live is None)
        block = app.query_one(ChatLog).blocks()[-1]
        tool_block = block.query_one(ToolBlock)
        assert "(not allowed)" in str(tool_block.title)
        assert block.view.tools[0].call.approved is False

    drive(scripted(tmp_path, [call, "I did not delete it."], tools=Toolbox().add(delete_note)), scenario)


def test_an_approved_tool_runs_and_its_result_is_in_the_collapsible_block(tmp_path: Path) -> None:
    call = '{"tool": "delete_note", "arguments": {"name": "old"}}'

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.click("#prompt")
        await pilot.press(*"Delete my old note", "enter")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("y")
        await until(pilot, lambda: app.live is None)
        tool_block = app.query_one(ChatLog).blocks()[-1].query_one(ToolBlock)
        assert "(approved)" in str(tool_block.title) and "→ deleted old" in str(tool_block.title)
        assert "result: deleted old" in str(tool_block.body.render())

    drive(scripted(tmp_path, [call, "Deleted."], tools=Toolbox().add(delete_note)), scenario)


def test_a_failed_turn_is_one_line_with_the_fix_and_the_partial_answer_stays(tmp_path: Path) -> None:
    from slmchat.infra.errors import BackendUnavailable

    broken = ["Half an ans", "wer", BackendUnavailable("the server went away", "start it again")]

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        block = await ask(app, pilot, "Tell me")
        errors = [str(m.render()) for m in block.query(".error")]
        assert errors == ["error: the server went away — fix: start it again"]
        assert block.query_one(Markdown).source == "Half an answer"
        assert "Traceback" not in "".join(str(w.render()) for w in app.query("Static"))

    drive(scripted(tmp_path, [broken]), scenario)


def test_escape_stops_the_answer_and_keeps_what_came(tmp_path: Path) -> None:
    slow = [f"word{i} " for i in range(400)]

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.click("#prompt")
        await pilot.press(*"Go on", "enter")
        await until(pilot, lambda: app.live is not None and app.live.view.tokens > 3)
        await pilot.press("escape")
        await until(pilot, lambda: app.live is None)
        block = app.query_one(ChatLog).blocks()[-1]
        assert block.view.stats is not None and block.view.stats.status == "interrupted"
        assert 3 < block.view.tokens < 400 and "interrupted" in str(block.footer.render())

    session = lambda: scripted_session([slow], data_dir=tmp_path)  # noqa: E731
    from slmchat.testing import ScriptedBackend

    def delayed() -> Session:
        made = session()
        backend = made.tiers.loaded("small")
        assert isinstance(backend, ScriptedBackend)
        backend.delay_s = 0.005
        return made

    drive(delayed, scenario)


def test_model_output_is_data_not_markup_or_terminal_control(tmp_path: Path) -> None:
    nasty = "[bold red]shout[/bold red] \x1b[2J\x1b]0;owned\x07 done"

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        block = await ask(app, pilot, "[b]hi[/b]")
        source = block.query_one(Markdown).source
        assert "\x1b" not in source and "\x07" not in source
        assert "[bold red]shout[/bold red] ␛[2J␛]0;owned␇ done" == source
        assert "[b]hi[/b]" in str(block.query_one(".question").render())  # the question too

    drive(scripted(tmp_path, [nasty]), scenario)


def test_keys_force_a_tier_cycle_the_route_and_record_feedback(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.press("f3")
        assert "next turn: large" in status_text(app)
        block = await ask(app, pilot, "hello")
        assert block.view.decision is not None and block.view.decision.tier == "large"
        assert "you chose large" in inspector_text(app)
        assert "next turn" not in status_text(app)  # only that one turn
        await pilot.press("f4")
        assert "route: small" in status_text(app)
        await pilot.press("f4", "f4")
        assert "route: auto" in status_text(app)
        await pilot.press("f7")
        assert app.session is not None
        turn_id = block.view.turn_id
        assert [t["good"] for t in app.session.store.routed_turns() if t["turn_id"] == turn_id] == [False]

    drive(scripted(tmp_path, ["small answer"], ["large answer"]), scenario)


def test_slash_commands_go_through_the_command_layer(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.click("#prompt")
        await pilot.press(*"/route large", "enter")
        await until(pilot, lambda: "route: large" in status_text(app))
        await pilot.press(*"/rout", "enter")
        await until(pilot, lambda: bool(app.query("ChatLog > .error")))
        assert str(app.query("ChatLog > .error").last().render()) == (
            "error: unknown command /rout — fix: did you mean /route? /help lists the commands"
        )
        await pilot.press(*"/small just this", "enter")
        await until(pilot, lambda: bool(app.totals.turns))
        assert app.query_one(ChatLog).blocks()[-1].view.decision.tier == "small"  # type: ignore[union-attr]

    drive(scripted(tmp_path, ["ok"], ["ok large"]), scenario)


def test_the_inspector_shows_an_earlier_turn_when_it_is_selected(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.press("f2")
        await ask(app, pilot, "first")
        await pilot.press("f3")
        await ask(app, pilot, "second")
        assert "turn #2" in inspector_text(app) and "tier      large" in inspector_text(app)
        await pilot.press("alt+up")
        await until(pilot, lambda: "turn #1" in inspector_text(app))
        assert "tier      small" in inspector_text(app)
        await pilot.press("ctrl+b")
        assert not app.query_one(Inspector).display

    drive(scripted(tmp_path, ["one"], ["two"]), scenario)


def test_new_chat_clears_the_log_and_starts_a_conversation(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await ask(app, pilot, "first")
        assert app.session is not None
        old = app.session.conversation_id
        await pilot.press("ctrl+n")
        await until(pilot, lambda: not app.query_one(ChatLog).blocks())
        assert app.session.conversation_id != old and app.session.history == []
        assert Store(tmp_path / "history.db").conversations()[0].id == old  # the old one is kept

    drive(scripted(tmp_path, ["one"]), scenario)


def test_keys_can_be_remapped_in_the_config(tmp_path: Path) -> None:
    config = Config(tui=TuiConfig(keys={"force_large": "ctrl+l"}))

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+l")
        assert "next turn: large" in status_text(app)

    drive(scripted(tmp_path, ["ok"], ["ok"]), scenario, config=config)


def test_a_session_that_cannot_start_is_one_line_with_the_fix(tmp_path: Path) -> None:
    from slmchat.infra.errors import SlmchatError

    def broken() -> Session:
        raise SlmchatError("cannot open the history database x.db: file is not a database", "move the file aside")

    app = SlmchatApp(Config(), broken)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: bool(app.query(".error")))
            assert str(app.query_one(".error").render()) == (
                "error: cannot open the history database x.db: file is not a database — fix: move the file aside"
            )
            assert status_text(app).startswith("cannot start:")

    asyncio.run(run())


def test_the_real_small_model_answers_in_the_app(small_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """End to end on SmolLM2 in llama.cpp: routed, streamed, measured, stored."""
    from tests.helpers import cold, small_config

    def real() -> Session:
        return Session(small_config(max_tokens=32), backends={"small": cold(small_backend)},
                       store=Store(tmp_path / "history.db"))  # fmt: skip

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        block = await ask(app, pilot, "What is the capital of France?")
        assert block.view.stats is not None and block.view.stats.status == "ok"
        assert "Paris" in block.query_one(Markdown).source
        text = inspector_text(app)
        assert "tier      small" in text and "llamacpp:smollm2" in text and "LOCAL" in text
        assert block.view.stats.usage.estimated is False  # llama.cpp counts its own tokens
        assert f"{block.view.stats.usage.completion_tokens} out" in text
        assert Store(tmp_path / "history.db").turns(app.session.conversation_id)[0]["answer"] == block.view.answer  # type: ignore[union-attr]

    drive(real, scenario)


def test_the_theme_picked_in_the_app_is_the_next_starts_theme(tmp_path: Path) -> None:
    from slmchat.infra.config import load_config

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        assert app.theme == "slmchat-dark"
        app.theme = "slmchat-high-contrast"  # what the picker (Ctrl-T) does
        await pilot.pause()

    drive(scripted(tmp_path, ["ok"]), scenario)
    assert load_config().tui.theme == "slmchat-high-contrast"


def test_an_unknown_theme_in_the_config_falls_back_and_says_so(tmp_path: Path) -> None:
    from slmchat.infra import paths

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        assert app.theme == "slmchat-dark"
        assert any("nope" in str(n.message) for n in app._notifications)

    drive(scripted(tmp_path, ["ok"]), scenario, config=Config(tui=TuiConfig(theme="nope")))
    assert not paths.config_file().exists()  # the mistyped name is not overwritten behind the user's back


def test_a_resumed_conversation_is_redrawn_from_its_stored_events(tmp_path: Path) -> None:
    with scripted_session([LOOP], ["Paris."], data_dir=tmp_path) as first:
        first.ask("What is the capital of France?")
        cid = first.conversation_id

    def continued() -> Session:
        return scripted_session(["ok"], ["ok"], data_dir=tmp_path, conversation_id=cid)

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: bool(app.query_one(ChatLog).blocks()) and bool(app.totals.turns))
        block = app.query_one(ChatLog).blocks()[0]
        assert block.query_one(Markdown).source == "Paris."
        assert any("repetition loop" in str(m.render()) for m in block.query(Marker))
        assert block.query_one(".replaced", Collapsible) is not None
        assert "turn #1" in inspector_text(app) and "escalated" in inspector_text(app)

    drive(continued, scenario)


def test_ctrl_o_lists_conversations_and_enter_resumes_one(tmp_path: Path) -> None:
    with scripted_session(["Blue."], data_dir=tmp_path) as first:
        first.ask("Why is the sky blue?")

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        from slmchat.faces.tui.conversations import ConversationsScreen

        await ask(app, pilot, "hello")
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        await pilot.pause(0.2)
        await pilot.press("down", "enter")  # the newest first: this chat, then the sky one
        await until(pilot, lambda: any(b.view.text == "Why is the sky blue?" for b in app.query_one(ChatLog).blocks()))
        assert [b.view.text for b in app.query_one(ChatLog).blocks()] == ["Why is the sky blue?"]

    drive(scripted(tmp_path, ["hi"]), scenario)


def test_f5_compares_on_the_other_tier_and_keeping_the_rerun_replaces_the_answer(tmp_path: Path) -> None:
    from slmchat.faces.tui.compare import CompareScreen

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.press("f2")
        block = await ask(app, pilot, "Why is the sky blue?")
        original = block.view.turn_id
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rerun_stats is not None)
        await pilot.press("2")
        await until(pilot, lambda: block.view.answer == "Blue light scatters most.")
        assert block.query_one(Markdown).source == "Blue light scatters most."
        assert "kept after compare" in str(block.footer.render())
        assert block.view.turn_id != original and len(app.totals.turns) == 2  # the rerun was paid for too
        assert app.session is not None
        labels = {t["turn_id"]: t["good"] for t in app.session.store.routed_turns()}
        assert labels[original] is False  # the small answer lost: calibration learns it should have gone large
        assert app.session.history[-1].content == "Blue light scatters most."

    drive(scripted(tmp_path, ["Rayleigh."], ["Blue light scatters most."]), scenario)


@pytest.mark.memory
def test_memory_recalled_for_a_turn_shows_in_the_log_and_the_inspector(tmp_path: Path) -> None:
    from slmchat.infra.config import MemoryConfig
    from slmchat.memory.manager import Memory

    memory = Memory(MemoryConfig(path=tmp_path / "mem", extract=False))

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.click("#prompt")
        await pilot.press(*"/remember I prefer metric units", "enter")
        await until(pilot, lambda: any("remembered:" in str(m.render()) for m in app.query(Marker)), timeout=60)
        block = await ask(app, pilot, "Which units do I prefer?")
        assert any(str(m.render()).startswith("recalled 1 memory") for m in block.query(Marker))
        assert block.view.recalled is not None
        text = inspector_text(app)
        assert "MEMORY" in text and "fact: I prefer metric units" in text
        await until(pilot, lambda: block.view.saved is not None)  # the exchange is stored after the answer
        assert "stored the exchange" in inspector_text(app)
        await pilot.press("f9")
        assert "memory off" in status_text(app)

    drive(scripted(tmp_path, ["Metric."], memory=memory), scenario)


def test_the_model_picker_lists_the_models_and_escape_keeps_the_current_one(tmp_path: Path) -> None:
    from slmchat.faces.tui.dialogs import ModelPicker

    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+g")
        await until(pilot, lambda: isinstance(app.screen, ModelPicker))
        await pilot.pause(0.1)
        options = app.screen.query_one("#models", OptionList)
        names = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("llamacpp:smollm2" in name for name in names)  # the model that ships inside slmchat
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ModelPicker))
        assert app.session is not None and app.session.model_name("small") == "scripted:small"

    drive(scripted(tmp_path, ["ok"]), scenario)


def test_the_command_palette_lists_the_actions_with_their_keys(tmp_path: Path) -> None:
    async def scenario(app: SlmchatApp, pilot: Pilot[Any]) -> None:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Next: large (f3)" in titles and "Compare (f5)" in titles and "/remember" not in titles
        assert "/new" in titles and "/help" in titles  # slash commands without a required argument

    drive(scripted(tmp_path, ["ok"]), scenario)
