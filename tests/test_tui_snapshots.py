"""Snapshots of the terminal app's screens (pytest-textual-snapshot), at fixed sizes.

The streams are scripted and every measured time is set to fixed figures before the picture
is taken (``steady``), so a snapshot changes only when what the app draws changes. Update
them with ``python -m pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the
SVGs in ``tests/__snapshots__/`` before committing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static

from slmchat.engine.events import Latency
from slmchat.engine.session import Session
from slmchat.engine.transcript import stats_line
from slmchat.faces.tui.app import SlmchatApp
from slmchat.faces.tui.chat_log import ChatLog
from slmchat.faces.tui.dialogs import ApprovalScreen
from slmchat.faces.tui.plain import plain
from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamItem
from slmchat.infra.config import Config
from slmchat.infra.store import Store
from slmchat.testing import ScriptedBackend, scripted_session
from slmchat.tools import Toolbox, tool
from tests.helpers import until
from tests.test_tui_app import LOOP

ANSWER = (
    "Paris is the capital of France.\n\nA few facts:\n\n- population about **2.1 million**\n"
    "- on the Seine\n\n```python\nprint('Bonjour')\n```\n"
)
STEADY = Latency(ttft_ms=120.0, total_ms=850.0, tokens_per_s=110.0, model_ms=700.0, engine_ms=150.0)


def steady(app: SlmchatApp) -> None:
    """Replace every measured time with fixed figures, then redraw what shows them."""
    app.totals.clear()
    for block in app.query_one(ChatLog).blocks():
        view = block.view
        view.started, view.first_token_at = 0.0, 0.12
        view.last_token_at = 0.12 + max(0, view.tokens - 1) / 110
        if view.stats is not None:
            view.stats = replace(view.stats, latency=STEADY)
            block.footer.update(Text(plain(stats_line(view.stats))))
            app.totals.add(view.stats)
    app.redraw_inspector()


class StillApp(SlmchatApp):
    """The app with a cursor that does not blink: a snapshot must not catch it half way."""

    def on_mount(self) -> None:  # Textual calls the base class's on_mount too
        self.query_one(Input).cursor_blink = False


def app_for(session: Any) -> SlmchatApp:
    return StillApp(Config(), session)


async def asked(app: SlmchatApp, pilot: Pilot[Any], text: str) -> None:
    await until(pilot, app.ready.is_set)
    await pilot.click("#prompt")
    await pilot.press(*text, "enter")
    await until(pilot, lambda: bool(app.query_one(ChatLog).blocks()) and app.live is None)
    steady(app)
    await pilot.pause()


def test_first_start_at_80_by_24(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Nothing asked yet: the status line, the empty log, the input and the footer keys."""
    app = app_for(lambda: scripted_session(["ok"], data_dir=tmp_path))

    async def ready(pilot: Pilot[Any]) -> None:
        await until(pilot, app.ready.is_set)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


class GatedBackend(ScriptedBackend):
    """Streams ``open_for`` pieces, then waits (for ever, in a snapshot): an answer caught mid-stream."""

    def __init__(self, replies: list[Any], open_for: int) -> None:
        super().__init__(replies, model="small")
        self.open_for = open_for
        self.sent = 0

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        async for item in super().stream(messages, params, cancel):
            if self.sent == self.open_for:
                await asyncio.Event().wait()
            self.sent += 1
            yield item


def test_mid_stream(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An answer half streamed: Markdown so far, the live speed in the inspector."""
    backend = GatedBackend([ANSWER], open_for=9)
    app = app_for(lambda: Session(Config(), backends={"small": backend}, store=Store(tmp_path / "h.db")))

    async def streaming(pilot: Pilot[Any]) -> None:
        await until(pilot, app.ready.is_set)
        await pilot.click("#prompt")
        await pilot.press(*"Tell me about Paris", "enter")
        await until(pilot, lambda: backend.sent == 9 and app.live is not None and app.live.view.tokens == 9)
        await pilot.pause(0.3)  # let MarkdownStream draw what came
        steady(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(110, 30), run_before=streaming)


def test_a_turn_with_an_escalation(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The loop marker, the folded small answer, the large answer, and the inspector's routing."""
    app = app_for(lambda: scripted_session([LOOP], [ANSWER], data_dir=tmp_path))

    async def escalated(pilot: Pilot[Any]) -> None:
        await asked(app, pilot, "What is the capital of France?")

    assert snap_compare(app, terminal_size=(110, 36), run_before=escalated)


@tool(requires_approval=True)
def delete_note(name: str) -> str:
    """Delete the user's saved note with this name."""
    return f"deleted {name}"


def test_the_approval_modal(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A tool that needs approval: its name and arguments, approve or deny."""
    call = '{"tool": "delete_note", "arguments": {"name": "old groceries"}}'
    app = app_for(lambda: scripted_session([call, "ok"], data_dir=tmp_path, tools=Toolbox().add(delete_note)))

    async def asking(pilot: Pilot[Any]) -> None:
        await until(pilot, app.ready.is_set)
        await pilot.click("#prompt")
        await pilot.press(*"Delete my old groceries note", "enter")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=asking)


def test_the_compare_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The last question on both tiers side by side, with cost and speed, before the user keeps one."""
    from slmchat.faces.tui.compare import CompareScreen, figures

    app = app_for(lambda: scripted_session(["Rayleigh scattering."], [ANSWER], data_dir=tmp_path))

    async def comparing(pilot: Pilot[Any]) -> None:
        await until(pilot, app.ready.is_set)
        await pilot.press("f2")
        await asked(app, pilot, "Why is the sky blue?")
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rerun_stats is not None)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await pilot.pause(0.3)
        comparison = screen.comparison
        assert comparison is not None
        for side, name in ((comparison.original, "#original-figures"), (comparison.rerun, "#rerun-figures")):
            assert side.stats is not None  # fixed times, as ``steady`` does for the log
            screen.query_one(name, Static).update(figures(side.tier, side.model, replace(side.stats, latency=STEADY)))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=comparing)
