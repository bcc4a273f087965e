"""The chat log: one ``TurnBlock`` per turn, holding the question, the answer and what happened between.

Answers stream through Textual's ``MarkdownStream`` (appended, not re-rendered per token).
Tool calls are collapsible blocks; recoveries, escalations and compactions are one-line
markers where they happened; an answer replaced by an escalation is folded, not lost. All
model and stored text passes through ``plain`` and is drawn as data, never as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.events import Click
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets._markdown import MarkdownFence, MarkdownStream

from slmchat.engine.events import (
    AnswerReset,
    Compacted,
    Escalated,
    Event,
    MemoryRecalled,
    Recovery,
    Token,
    ToolCall,
    ToolResult,
    TurnDone,
    TurnFailed,
)
from slmchat.engine.transcript import code_blocks, stats_line
from slmchat.faces.tui.plain import plain
from slmchat.faces.tui.turn_view import TurnView
from slmchat.tools.prompt import call_text

#: tokens are joined and appended to the answer at most this often: each append costs a Markdown
#: parse and a layout of the whole log, which a per-token append cannot keep up with
STREAM_FLUSH_S = 1 / 30


class Marker(Static):
    """One line in the log: a recovery, an escalation, a compaction, a note or an error."""

    def __init__(self, text: str, kind: str = "note") -> None:
        super().__init__(Text(plain(text)), classes=f"marker {kind}", markup=False)


class ToolBlock(Collapsible):
    """A tool call, folded to one line; open it for the arguments and the result."""

    def __init__(self, call: ToolCall) -> None:
        self.call = call
        note = {True: " (approved)", False: " (not allowed)"}.get(call.approved, "")
        self.body = Static(Text(plain(f"arguments: {call.arguments}")), markup=False)
        super().__init__(self.body, title=plain(f"tool {call_text(call.name, call.arguments)}{note}"), collapsed=True)
        self.add_class("tool")

    def finish(self, result: ToolResult) -> None:
        outcome = "→" if result.ok else "failed:"
        retries = f", {result.attempts} attempts" if result.attempts > 1 else ""
        self.title = plain(f"{self.title}  {outcome} {result.result[:60]} ({result.ms:.0f} ms{retries})")
        self.body.update(Text(plain(f"arguments: {self.call.arguments}\nresult: {result.result}")))


class TurnBlock(Vertical, can_focus=True):
    """A turn in the log. Focus (click, or the keys that step through turns) selects it for the inspector."""

    class Selected(Message):
        def __init__(self, block: TurnBlock) -> None:
            self.block = block
            super().__init__()

    def __init__(self, view: TurnView) -> None:
        super().__init__(classes="turn")
        self.view = view
        self.answer = Markdown("", classes="answer")
        self.stream: MarkdownStream | None = None
        self._pending: list[str] = []  # tokens not yet appended to the answer
        self._flush_timer: Timer | None = None
        self.footer = Static("", classes="stats", markup=False)
        self._tools: list[ToolBlock] = []

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(Text.assemble(("you › ", "bold"), plain(self.view.text)), classes="question", markup=False)
        yield self.answer
        yield self.footer

    def on_focus(self) -> None:
        self.post_message(self.Selected(self))

    def on_click(self, event: Click) -> None:
        if isinstance(event.widget, MarkdownFence):  # click a code block to copy it
            self.app.copy_to_clipboard(event.widget.code)
            self.app.notify("code block copied", timeout=2)
        self.focus()

    async def _marker(self, widget: Static | Collapsible) -> None:
        await self.mount(widget, before=self.answer)

    async def _restart_answer(self, text: str, folded: str | None) -> None:
        """Close the stream, fold the replaced answer (if any), and start the answer again from ``text``."""
        await self.close_stream()
        if folded is not None:
            body = Static(Text(plain(folded)), classes="folded", markup=False)
            old = Collapsible(body, title="replaced answer (small tier)")
            old.add_class("replaced")
            await self.mount(old, before=self.answer)
        await self.answer.update(plain(text))

    async def _flush(self) -> None:
        """Append the tokens that came since the last flush as one piece (one Markdown update, one layout)."""
        self._flush_timer = None
        if not self._pending:
            return
        if self.stream is None:
            self.stream = Markdown.get_stream(self.answer)
        text, self._pending = "".join(self._pending), []
        await self.stream.write(text)

    async def close_stream(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
        await self._flush()
        if self.stream is not None:
            await self.stream.stop()
            self.stream = None

    async def show(self, event: Event) -> None:
        """Draw one event of this turn (the view has already taken it)."""
        if isinstance(event, Token):
            self._pending.append(plain(event.text))
            if self._flush_timer is None:
                self._flush_timer = self.set_timer(STREAM_FLUSH_S, self._flush)
        elif isinstance(event, AnswerReset):
            replaced = self.view.replaced[-1] if event.reason == "escalated" and self.view.replaced else None
            await self._restart_answer(event.text, replaced)
        elif isinstance(event, ToolCall):
            block = ToolBlock(event)
            self._tools.append(block)
            await self._marker(block)
        elif isinstance(event, ToolResult):
            for block in self._tools:
                if block.call.name == event.name and "→" not in str(block.title) and "failed" not in str(block.title):
                    block.finish(event)
                    break
        elif isinstance(event, Recovery):
            await self._marker(Marker(f"⟲ recovery ({event.template}): {event.message}", "recovery"))
        elif isinstance(event, Escalated):
            await self._marker(Marker(f"⇪ {event.note}", "escalation"))
        elif isinstance(event, Compacted):
            await self._marker(Marker(event.note, "note"))
        elif isinstance(event, MemoryRecalled):
            count = len(event.recalled)
            await self._marker(Marker(f"recalled {count} memor{'y' if count == 1 else 'ies'} ({event.tokens} tokens)"))
        elif isinstance(event, TurnDone):
            await self.close_stream()
            if self.answer.source != plain(event.stats.answer):
                await self.answer.update(plain(event.stats.answer))
            self.footer.update(Text(plain(stats_line(event.stats))))
        elif isinstance(event, TurnFailed):
            await self.close_stream()
            fix = f" — fix: {event.hint}" if event.hint else ""
            await self.mount(Marker(f"error: {event.error}{fix}", "error"), before=self.footer)

    def copy_code(self) -> str | None:
        """Copy the answer's last code block (or the whole answer when it has none); returns what was copied."""
        blocks = code_blocks(self.view.answer)
        text = blocks[-1] if blocks else self.view.answer
        if not text:
            return None
        self.app.copy_to_clipboard(text)
        return text


class ChatLog(VerticalScroll):
    """The scrolling log of turns and notes; follows the newest text unless the user scrolled up."""

    def blocks(self) -> list[TurnBlock]:
        return list(self.query(TurnBlock))

    async def add_turn(self, view: TurnView) -> TurnBlock:
        block = TurnBlock(view)
        await self.mount(block)
        self.scroll_end(animate=False)
        return block

    async def note(self, text: str, kind: str = "note") -> None:
        """A line outside any turn: a command's result, a model loading error."""
        await self.mount(Marker(text, kind))
        self.scroll_end(animate=False)
