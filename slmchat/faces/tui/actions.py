"""What the app's keys do: overrides, feedback, toggles, selection, and the dialogs they open.

A mixin of ``SlmchatApp``: each ``action_*`` is bound to a key in ``keys.py``, so a key's
behaviour and its binding are found by the same name.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work

from slmchat.engine.commands import COMMANDS, Command, run_command
from slmchat.engine.conversations import resume
from slmchat.engine.events import Token
from slmchat.engine.transcript import stats_line
from slmchat.faces.tui.chat_log import ChatLog
from slmchat.faces.tui.compare import CompareOutcome, CompareScreen
from slmchat.faces.tui.conversations import ConversationAction, ConversationsScreen
from slmchat.faces.tui.dialogs import ModelPicker
from slmchat.faces.tui.inspector import Inspector
from slmchat.faces.tui.plain import plain
from slmchat.faces.tui.turn_view import TurnView
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route

if TYPE_CHECKING:
    from slmchat.faces.tui.app import SlmchatApp

    Base = SlmchatApp
else:
    Base = object

ROUTES = (Route.AUTO, Route.SMALL, Route.LARGE)


class KeyActions(Base):
    """The app's actions; ``SlmchatApp`` holds the state they read (session, live turn, selection)."""

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
        from slmchat.engine.models import list_models  # only when the picker opens

        session = self.session
        current = {tier: session.model_name(tier) for tier in ("small", "large")}
        listing = await asyncio.to_thread(list_models, self.config, current=current, ollama_timeout_s=1.0)
        name = await self.push_screen_wait(ModelPicker(listing.backends, current["small"]))
        if name:
            result = await run_command(session, Command(next(s for s in COMMANDS if s.name == "model"), name))
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
