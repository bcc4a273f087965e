"""The terminal app: a chat log, a turn inspector, and keys that overrule the router.

The app is a face: it sends lines to the session (turns) or to the command layer (slash
commands) and draws the events that come back. The session is built off the UI thread, so
the input takes keys at once while the configuration, the store and the model load.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer, Input, Static

from slmchat.engine.commands import (
    Command,
    CommandResult,
    Facts,
    Help,
    Matches,
    Models,
    Prompt,
    Tools,
    forget_confirmed,
    parse_command,
    run_command,
)
from slmchat.engine.events import (
    SESSION_EVENTS,
    ApprovalRequested,
    Event,
    MemoryFailed,
    MemorySaved,
    ModelFailed,
    RouteDecided,
    Token,
    TurnDone,
    TurnFailed,
)
from slmchat.faces.tui.actions import KeyActions
from slmchat.faces.tui.chat_log import ChatLog, TurnBlock
from slmchat.faces.tui.dialogs import ApprovalScreen, ConfirmScreen
from slmchat.faces.tui.inspector import Inspector
from slmchat.faces.tui.keys import KEYS, palette
from slmchat.faces.tui.plain import plain
from slmchat.faces.tui.themes import pick_theme, register_themes, save_theme_choice
from slmchat.faces.tui.turn_view import SessionTotals, TurnView
from slmchat.infra.config import Config
from slmchat.infra.errors import SlmchatError
from slmchat.infra.redact import redact
from slmchat.routing import Route

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from textual.driver import Driver

    from slmchat.engine.session import Session

INSPECTOR_MIN_WIDTH = 100  # narrower terminals start with the inspector hidden (Ctrl-B shows it)
LIVE_REDRAW_S = 0.25  # the inspector redraws at most this often while tokens stream


class SlmchatApp(KeyActions, App[None]):
    """The chat. ``open_session`` builds the session (in a thread); ``debug_log`` gets tracebacks."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere keep the stylesheet
    TITLE = "slmchat"
    BINDINGS = KEYS

    def __init__(
        self,
        config: Config,
        open_session: Callable[[], Session],
        *,
        debug_log: Path | None = None,
        show_inspector: bool | None = None,
        driver_class: type[Driver] | None = None,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.config = config
        self._open_session = open_session
        self.debug_log = debug_log
        self.session: Session | None = None
        self.ready = asyncio.Event()
        self.next_route: Route | None = None
        self.totals = SessionTotals()
        self.live: TurnBlock | None = None  # the running turn
        self.selected: TurnBlock | None = None  # the turn the inspector shows (None: the latest)
        self._show_inspector = show_inspector
        self._redrawn = 0.0
        self._shown_theme = ""

    # -- layout and start -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("starting…", id="status", markup=False)
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield ChatLog(id="log")
                yield Input(placeholder="Ask something, or /help", id="prompt")
            yield Inspector(id="inspector")
        yield Footer()

    def on_mount(self) -> None:
        for problem in register_themes(self):
            self.notify(problem, severity="warning", markup=False, timeout=10)
        name, warning = pick_theme(self.config.tui.theme, list(self.available_themes))
        if warning:
            self.notify(warning, severity="warning", markup=False, timeout=10)
        self._shown_theme = self.theme = name
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.config.tui.keys:
            self.set_keymap(self.config.tui.keys)
        wide = self.size.width >= INSPECTOR_MIN_WIDTH
        self.query_one(Inspector).display = wide if self._show_inspector is None else self._show_inspector
        self.query_one(ChatLog).anchor()
        self.query_one("#prompt", Input).focus()
        self.call_after_refresh(self.start_session)  # the first frame is drawn before the session's imports start

    def _remember_theme(self, theme: Theme) -> None:
        """A theme picked in the app is the next start's theme (the start-up one is never written back)."""
        if theme.name == self._shown_theme:
            return
        self._shown_theme = theme.name
        try:
            save_theme_choice(theme.name)
        except SlmchatError as exc:
            self.notify(exc.message, severity="warning", markup=False)

    @work(group="session")
    async def start_session(self) -> None:
        """Build the session off the UI thread, then load the small model in the background."""
        try:
            self.session = await asyncio.to_thread(self._open_session)
        except SlmchatError as exc:
            self.set_status(f"cannot start: {exc.message}")
            await self.note(f"error: {exc.message}" + (f" — fix: {exc.hint}" if exc.hint else ""), "error")
            return
        except Exception as exc:
            await self.unexpected(exc)
            return
        self.ready.set()
        if self.session.history:  # -c / --cid: show the conversation being continued
            self.resume_conversation(self.session.conversation_id)
        self.watch_session()
        self.session.start_loading("small")
        self.refresh_status()

    @work(group="events")
    async def watch_session(self) -> None:
        """Session events (models loading, memory writes) for the status bar, the log and the inspector."""
        assert self.session is not None
        async for event in self.session.events():
            if not isinstance(event, SESSION_EVENTS):
                continue  # turn events are drawn by the turn's own stream
            self.refresh_status()
            if isinstance(event, ModelFailed):
                fix = f" — fix: {event.hint}" if event.hint else ""
                await self.note(f"error: the {event.tier} model did not load: {event.error}{fix}", "error")
            elif isinstance(event, MemorySaved | MemoryFailed):
                for block in self.query_one(ChatLog).blocks():
                    if block.view.turn_id == event.turn_id:
                        block.view.apply(event)
                if isinstance(event, MemoryFailed):
                    await self.note(f"memory: not stored ({event.error})", "error")
                self.redraw_inspector()

    async def on_unmount(self) -> None:
        if self.session is not None:
            await self.session.aclose()

    # -- status and inspector -------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(plain(text)))

    def refresh_status(self) -> None:
        session = self.session
        if session is None:
            self.set_status("starting…")
            return
        large = session.model_name("large")
        parts = [
            session.status if session.status != "idle" else f"small: {session.model_name('small')}",
            f"large: {large}" if large else "no large tier",
            f"route: {session.route.value}",
        ]
        if self.next_route is not None:
            parts.append(f"next turn: {self.next_route.value}")
        parts.append(f"tools {'on' if session.use_tools else 'off'}")
        if session.memory is not None:
            parts.append(f"memory {'on' if session.use_memory else 'off'}")
        self.set_status(" · ".join(parts))

    def redraw_inspector(self) -> None:
        inspector = self.query_one(Inspector)
        if not inspector.display:
            return
        block = self.selected or self.live or (self.query_one(ChatLog).blocks() or [None])[-1]
        budget = self.session.budget() if self.session is not None else []
        inspector.show(block.view if block else None, self.totals, budget)
        self._redrawn = time.perf_counter()

    @on(TurnBlock.Selected)
    def turn_selected(self, message: TurnBlock.Selected) -> None:
        self.selected = message.block
        self.redraw_inspector()

    async def note(self, text: str, kind: str = "note") -> None:
        await self.query_one(ChatLog).note(text, kind)

    async def unexpected(self, exc: BaseException) -> None:
        """A bug, not a user error: one line on screen; the traceback in the debug log when there is one."""
        where = "run with --debug for the traceback"
        if self.debug_log is not None:
            self.debug_log.parent.mkdir(parents=True, exist_ok=True)
            with self.debug_log.open("a", encoding="utf-8") as log:
                log.write(redact("".join(traceback.format_exception(exc))))  # a server may echo a key
            where = f"traceback in {self.debug_log}"
        await self.note(redact(f"unexpected error: {type(exc).__name__}: {exc} ({where})"), "error")

    # -- input -------------------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    async def submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        if not line:
            return
        if self.live is not None:
            self.notify("an answer is still coming: Esc stops it", severity="warning")
            return
        event.input.value = ""
        if not self.ready.is_set():
            self.set_status("waiting for the session to start…")
            await self.ready.wait()
        assert self.session is not None
        parsed = parse_command(line)
        if isinstance(parsed, Prompt):
            route = parsed.route or self.next_route
            self.next_route = None
            self.run_turn(parsed.text, route)
            return
        result = await run_command(self.session, parsed) if isinstance(parsed, Command) else parsed
        await self.show_result(result)

    async def show_result(self, result: CommandResult) -> None:
        """A slash command's result, as lines in the log (``/forget`` asks before deleting)."""
        if result.quits:
            self.exit()
            return
        if not result.ok:
            await self.note(f"error: {result.message}" + (f" — fix: {result.hint}" if result.hint else ""), "error")
        elif isinstance(result, Help):
            await self.note(result.text + "\nkeys: Ctrl-P lists every action and its key; Esc stops an answer")
        elif isinstance(result, Models) and result.changed:
            await self.note(result.message)
            assert self.session is not None
            self.session.start_loading("small")
        elif isinstance(result, Tools):
            lines = [f"  {t.signature}{'  (asks first)' if t.asks_first else ''}" for t in result.tools]
            await self.note("\n".join([result.message, *lines, *(f"  warning: {p}" for p in result.problems)]))
        elif isinstance(result, Facts):
            await self.note("\n".join([result.message, *(f"  {fact.text}" for fact in result.facts)]))
        elif isinstance(result, Matches) and result.hits:
            lines = [f"{hit.item.kind}: {hit.item.text}" for hit in result.hits]

            async def confirmed(yes: bool | None) -> None:
                assert self.session is not None
                await self.show_result(await forget_confirmed(self.session, result.ids if yes else ()))

            self.push_screen(ConfirmScreen(result.question, lines), confirmed)
        else:
            await self.note(result.message)
        self.refresh_status()

    # -- one turn ----------------------------------------------------------------------------------

    @work(group="turn", exclusive=True)
    async def run_turn(self, text: str, route: Route | None) -> None:
        """Stream one turn into a new block of the log and the inspector."""
        assert self.session is not None
        session = self.session
        view = TurnView(text)
        self.selected = None
        block = self.live = await self.query_one(ChatLog).add_turn(view)
        self.redraw_inspector()
        try:
            async with aclosing(session.turn(text, route=route)) as events:
                async for event in events:
                    if isinstance(event, SESSION_EVENTS):
                        continue  # watch_session draws these
                    await self.take(block, event)
        except Exception as exc:
            await self.unexpected(exc)
        finally:
            await block.close_stream()
            self.live = None
            self.refresh_status()
            self.redraw_inspector()

    async def take(self, block: TurnBlock, event: Event) -> None:
        """One event of the running turn: into its view, its block and (throttled) the inspector."""
        view = block.view
        view.apply(event)
        if isinstance(event, RouteDecided) and self.session is not None:
            view.destination = self.session.tiers.destination(event.decision.tier)
        await block.show(event)
        if isinstance(event, ApprovalRequested):
            self.refresh_status()
            self.push_screen(ApprovalScreen(event), lambda allowed: self.answer_approval(event, allowed))
        elif isinstance(event, TurnDone):
            self.totals.add(event.stats)
        if isinstance(event, Token):
            if time.perf_counter() - self._redrawn >= LIVE_REDRAW_S:
                self.redraw_inspector()
        else:
            self.redraw_inspector()
        if isinstance(event, TurnFailed) and event.error:
            self.refresh_status()

    def answer_approval(self, request: ApprovalRequested, allowed: bool | None) -> None:
        if self.session is not None:
            self.session.approve(request.request_id, bool(allowed))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (Ctrl-P): Textual's own commands, every key's action, every slash command."""
        yield from super().get_system_commands(screen)
        yield from palette(self)
