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
from textual.binding import Binding
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
from slmchat.engine.conversations import resume
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
from slmchat.engine.transcript import stats_line
from slmchat.faces.tui.chat_log import ChatLog, TurnBlock
from slmchat.faces.tui.compare import CompareOutcome, CompareScreen
from slmchat.faces.tui.conversations import ConversationAction, ConversationsScreen
from slmchat.faces.tui.dialogs import ApprovalScreen, ConfirmScreen, ModelPicker
from slmchat.faces.tui.inspector import Inspector
from slmchat.faces.tui.plain import plain
from slmchat.faces.tui.themes import pick_theme, register_themes, save_theme_choice
from slmchat.faces.tui.turn_view import SessionTotals, TurnView
from slmchat.infra.config import Config
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session

INSPECTOR_MIN_WIDTH = 100  # narrower terminals start with the inspector hidden (Ctrl-B shows it)
LIVE_REDRAW_S = 0.25  # the inspector redraws at most this often while tokens stream
ROUTES = (Route.AUTO, Route.SMALL, Route.LARGE)

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


class SlmchatApp(App[None]):
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
    ) -> None:
        super().__init__()
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
                log.write("".join(traceback.format_exception(exc)))
            where = f"traceback in {self.debug_log}"
        await self.note(f"unexpected error: {type(exc).__name__}: {exc} ({where})", "error")

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

            self.push_screen(ConfirmScreen(f"delete these {len(result.hits)}?", lines), confirmed)
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

    # -- actions (keys, command palette) -------------------------------------------------------------

    def action_cancel(self) -> None:
        """Stop the answer that is streaming (its partial answer is kept)."""
        if self.session is not None and self.live is not None:
            self.session.cancel()

    def action_next_route(self, tier: str) -> None:
        """Send only the next turn to ``tier``, whatever the router says."""
        self.next_route = Route(tier)
        self.refresh_status()
        self.notify(f"next turn goes to the {tier} tier", timeout=2)

    def action_cycle_route(self) -> None:
        """The route for every following turn: auto, then small, then large."""
        if self.session is None:
            return
        self.session.route = ROUTES[(ROUTES.index(self.session.route) + 1) % len(ROUTES)]
        self.refresh_status()

    async def action_judge(self, good: bool) -> None:
        """Good or bad for the selected turn (default: the last); calibration learns from it."""
        if self.session is None:
            return
        turn_id = self.selected.view.turn_id if self.selected is not None else None
        try:
            judged = self.session.feedback(good, turn_id)
        except SlmchatError as exc:
            await self.note(f"error: {exc.message}" + (f" — fix: {exc.hint}" if exc.hint else ""), "error")
            return
        self.notify(f"turn {judged} noted as {'good' if good else 'bad'}", timeout=2)

    def action_toggle_tools(self) -> None:
        if self.session is not None:
            self.session.use_tools = not self.session.use_tools
            self.refresh_status()

    def action_toggle_memory(self) -> None:
        if self.session is not None and self.session.memory is not None:
            self.session.use_memory = not self.session.use_memory
            self.refresh_status()
        elif self.session is not None:
            self.notify("memory is off in the config ([memory] enabled = false)", severity="warning")

    async def action_new_chat(self) -> None:
        if self.session is None or self.live is not None:
            return
        self.session.new_conversation()
        await self.clear_log()
        self.notify("new conversation", timeout=2)

    async def clear_log(self) -> None:
        log = self.query_one(ChatLog)
        await log.remove_children()
        self.totals.clear()
        self.selected = None
        self.redraw_inspector()

    def action_toggle_inspector(self) -> None:
        inspector = self.query_one(Inspector)
        inspector.display = not inspector.display
        self.redraw_inspector()

    def action_select_turn(self, step: int) -> None:
        """Step the inspector through earlier turns (Alt-Up, Alt-Down)."""
        blocks = self.query_one(ChatLog).blocks()
        if not blocks:
            return
        current = blocks.index(self.selected) if self.selected in blocks else len(blocks) - 1
        index = max(0, min(len(blocks) - 1, current + step))
        blocks[index].focus()
        blocks[index].scroll_visible()

    def action_copy_code(self) -> None:
        blocks = self.query_one(ChatLog).blocks()
        block = self.selected or (blocks[-1] if blocks else None)
        if block is not None and block.copy_code() is not None:
            self.notify("copied the last code block (or the answer)", timeout=2)

    @work(group="models", exclusive=True)
    async def action_pick_model(self) -> None:
        """Choose the small tier's model from what ``slmchat models`` lists."""
        if self.session is None:
            return
        from slmchat.engine.models import list_models

        session = self.session
        current = {tier: session.model_name(tier) for tier in ("small", "large")}
        listing = await asyncio.to_thread(list_models, self.config, current=current, ollama_timeout_s=1.0)
        name = await self.push_screen_wait(ModelPicker(listing.backends, current["small"]))
        if name:
            result = await run_command(session, Command(next(s for s in _commands() if s.name == "model"), name))
            await self.show_result(result)

    async def action_compare(self) -> None:
        """Ask the last question again on the other tier, side by side; keep the better answer."""
        if self.session is None or self.live is not None or isinstance(self.screen, CompareScreen):
            return
        blocks = self.query_one(ChatLog).blocks()
        view = blocks[-1].view if blocks else None
        screen = CompareScreen(
            self.session,
            question=view.text if view else None,
            original_answer=view.answer if view and view.stats else None,
            original_stats=view.stats if view else None,
        )
        self.push_screen(screen, lambda outcome: self.compared(screen, outcome))

    def compared(self, screen: CompareScreen, outcome: CompareOutcome | None) -> None:
        if screen.rerun_stats is not None:
            self.totals.add(screen.rerun_stats)  # the rerun was paid for, kept or not
        if outcome is not None and outcome.kept == "rerun":
            self.run_worker(self.show_kept(outcome), group="turn", exclusive=True)
        elif outcome is not None:
            self.notify(f"kept the {outcome.tier} answer (noted for calibration)", timeout=2)
        self.refresh_status()
        self.redraw_inspector()

    async def show_kept(self, outcome: CompareOutcome) -> None:
        """The rerun now stands: its answer, figures and turn id replace the original's in the log."""
        blocks = reversed(self.query_one(ChatLog).blocks())
        block = next((b for b in blocks if b.view.turn_id == outcome.replaces), None)
        if block is None:
            return
        await block.close_stream()
        await block.answer.update(plain(outcome.answer))
        block.view.answer, block.view.stats = outcome.answer, outcome.stats  # turn_id follows stats (F6/F7 judge it)
        if outcome.stats is not None:
            block.footer.update(Text(plain(stats_line(outcome.stats)) + " · kept after compare"))
        self.redraw_inspector()

    async def action_conversations(self) -> None:
        """The stored conversations: resume, rename, delete, export."""
        if self.session is None or self.live is not None:
            return  # not during a turn: resuming would switch the conversation under it
        self.push_screen(ConversationsScreen(self.session), self.conversation_chosen)

    def conversation_chosen(self, result: ConversationAction | None) -> None:
        if result is None:
            return
        if result.action == "new":  # the open conversation was deleted; the session already started a new one
            self.run_worker(self.clear_log(), group="turn", exclusive=True)
            self.notify("the open conversation was deleted: new conversation", timeout=3)
        else:
            self.resume_conversation(result.conversation_id)

    @work(group="turn", exclusive=True)
    async def resume_conversation(self, cid: str) -> None:
        """Switch to a stored conversation and redraw its turns from their stored events."""
        assert self.session is not None
        try:
            turns = await asyncio.to_thread(resume, self.session, cid)
        except SlmchatError as exc:
            await self.note(f"error: {exc.message}" + (f" — fix: {exc.hint}" if exc.hint else ""), "error")
            return
        await self.clear_log()
        log = self.query_one(ChatLog)
        for turn in turns:
            view = TurnView(turn.user_text)
            block = await log.add_turn(view)
            for event in turn.events:
                view.apply(event)  # no destination badge: the tier's server may have changed since
                if not isinstance(event, Token):  # TurnDone sets the whole answer at once: no token replay
                    await block.show(event)
            if turn.stats is not None:
                self.totals.add(turn.stats)
        log.scroll_end(animate=False)
        self.refresh_status()
        self.redraw_inspector()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (Ctrl-P): every key's action, and every slash command."""
        yield from super().get_system_commands(screen)
        for binding in KEYS:
            key = self.get_key_display(binding)
            yield SystemCommand(f"{binding.description} ({key})", _doc(self, binding.action), _runner(self, binding))
        for spec in _commands():
            if spec.run is not None and not spec.required:
                yield SystemCommand(f"/{spec.name}", spec.help, _slash(self, f"/{spec.name}"))


def _commands():  # type: ignore[no-untyped-def]
    from slmchat.engine.commands import COMMANDS

    return COMMANDS


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
