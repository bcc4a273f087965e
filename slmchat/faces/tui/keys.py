"""The app's keys and its command palette: one table, remappable by id under ``[tui.keys]``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding

from slmchat.engine.commands import COMMANDS, Command, parse_command, run_command

if TYPE_CHECKING:
    from slmchat.faces.tui.app import SlmchatApp

#: every key of the app; ``id`` is the name to remap it under ``[tui.keys]`` in the config
KEYS = [
    Binding("f2", "next_route('small')", "Next: small", id="force_small"),
    Binding("f3", "next_route('large')", "Next: large", id="force_large"),
    Binding("f4", "cycle_route", "Route", id="cycle_route"),
    Binding("f5", "compare", "Compare", id="compare"),
    Binding("f6", "judge(True)", "Good", id="good"),
    Binding("f7", "judge(False)", "Bad", id="bad"),
    Binding("f8", "toggle_tools", "Tools", id="toggle_tools", show=False),
    Binding("f9", "toggle_memory", "Memory", id="toggle_memory", show=False),
    Binding("ctrl+n", "new_chat", "New", id="new_chat"),
    Binding("ctrl+o", "conversations", "Chats", id="conversations"),
    Binding("ctrl+b", "toggle_inspector", "Inspector", id="toggle_inspector"),
    Binding("ctrl+g", "pick_model", "Model", id="pick_model", show=False),
    Binding("ctrl+t", "change_theme", "Theme", id="change_theme", show=False),
    Binding("ctrl+y", "copy_code", "Copy code", id="copy_code", show=False),
    Binding("alt+up", "select_turn(-1)", "Earlier turn", id="earlier_turn", show=False),
    Binding("alt+down", "select_turn(1)", "Later turn", id="later_turn", show=False),
    Binding("escape", "cancel", "Stop", id="cancel"),
]


def palette(app: SlmchatApp) -> Iterable[SystemCommand]:
    """Every key's action with its key, and every slash command that needs no argument."""
    for binding in KEYS:
        key = app.get_key_display(binding)
        yield SystemCommand(f"{binding.description} ({key})", _doc(app, binding.action), _runner(app, binding))
    for spec in COMMANDS:
        if spec.run is not None and not spec.required:
            yield SystemCommand(f"/{spec.name}", spec.help, _slash(app, f"/{spec.name}"))


def _doc(app: App[None], action: str) -> str:
    method = getattr(app, f"action_{action.split('(')[0]}", None)
    doc = (method.__doc__ or "").strip().splitlines() if method else []
    return doc[0] if doc else action


def _runner(app: App[None], binding: Binding) -> Callable[[], object]:
    return lambda: app.run_action(binding.action)


def _slash(app: SlmchatApp, line: str) -> Callable[[], object]:
    async def run() -> None:
        await app.ready.wait()
        assert app.session is not None
        parsed = parse_command(line)
        if isinstance(parsed, Command):
            await app.show_result(await run_command(app.session, parsed))

    return run
