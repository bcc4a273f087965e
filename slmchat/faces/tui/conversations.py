"""The conversations list: resume, rename, delete or export a stored conversation, by key.

A modal screen over the chat. It reads and writes the history only through
``slmchat.engine.conversations``, always in a worker thread (SQLite may wait on another
slmchat's write for seconds), and closes with what the app must redraw, or ``None``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Static

from slmchat.engine.conversations import (
    TITLE_MAX_CHARS,
    ConversationSummary,
    ExportFormat,
    delete,
    export,
    list_conversations,
    rename,
)
from slmchat.infra.errors import SlmchatError

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session

T = TypeVar("T")

#: fixed columns (turns, updated, the "current" mark) with DataTable's one-cell padding each side
_FIXED_COLUMNS = (5 + 2) + (10 + 2) + (7 + 2)


@dataclass(frozen=True)
class ConversationAction:
    """What the app does when the list closes.

    ``resume``: resume ``conversation_id`` and redraw its turns. ``new``: the open conversation
    was deleted and the session has started ``conversation_id``, a new one: clear the log.
    """

    action: Literal["resume", "new"]
    conversation_id: str


class ConversationTable(DataTable[Text]):
    """The rows; Enter resumes (shown in the footer, unlike DataTable's own Enter)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Resume", id="conversations.resume"),
    ]


class TitleInput(Input):
    """The new title, edited in place; Enter saves, Esc keeps the old one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Save", id="conversations.rename_save"),
        Binding("escape", "screen.cancel_rename", "Cancel", id="conversations.rename_cancel"),
    ]


class DeleteQuestion(Static, can_focus=True):
    """The yes/no asked before a conversation is deleted."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "screen.answer_delete(True)", "Delete it", id="conversations.delete_yes"),
        Binding("n,escape", "screen.answer_delete(False)", "Keep it", key_display="n", id="conversations.delete_no"),
    ]


class ConversationsScreen(ModalScreen[ConversationAction | None]):
    """The stored conversations, newest first; the open one is marked "current"."""

    DEFAULT_CSS = """
    ConversationsScreen { align: center middle; }
    ConversationsScreen #box {
        width: 100%; max-width: 110; height: 1fr; max-height: 40;
        border: round $accent; border-title-align: left; padding: 0 1; background: $surface;
    }
    ConversationsScreen ConversationTable { height: 1fr; }
    ConversationsScreen #rename { height: auto; display: none; }
    ConversationsScreen #rename Label { padding: 1 1 0 0; }
    ConversationsScreen TitleInput { width: 1fr; }
    ConversationsScreen DeleteQuestion { height: 1; display: none; color: $warning; text-style: bold; }
    ConversationsScreen #message { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ConversationsScreen #message.error { color: $error; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rename", "Rename", id="conversations.rename"),
        Binding("d", "delete", "Delete", id="conversations.delete"),
        Binding("m", "export('markdown')", "Export .md", id="conversations.export_markdown"),
        Binding("j", "export('json')", "Export .json", id="conversations.export_json"),
        Binding("escape", "close", "Close", id="conversations.close"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.rows: dict[str, ConversationSummary] = {}
        self._mode: Literal["list", "rename", "confirm"] = "list"
        self._target: ConversationSummary | None = None  # the row being renamed or deleted
        self._started_new = False  # the open conversation was deleted: the app must clear its log

    def compose(self) -> ComposeResult:
        with Vertical(id="box") as box:
            box.border_title = "Conversations"
            yield ConversationTable(cursor_type="row", zebra_stripes=True)
            with Horizontal(id="rename"):
                yield Label("Title:")
                yield TitleInput(max_length=TITLE_MAX_CHARS)
            yield DeleteQuestion()
            yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ConversationTable).focus()
        self._reload()

    # -- the list -----------------------------------------------------------------------------

    @work(group="store")
    async def _reload(self) -> None:
        await self._refresh_rows()

    async def _refresh_rows(self, select: str | None = None) -> None:
        rows = await self._off_thread("listing the conversations", list_conversations, self.session)
        if rows is not None:
            self._fill(rows, select)

    def on_resize(self) -> None:
        """The title column takes the width the other columns leave: redo it once the layout is done."""
        self.call_after_refresh(lambda: self._fill(list(self.rows.values()), None) if self.rows else None)

    def _fill(self, rows: list[ConversationSummary], select: str | None) -> None:
        table = self.query_one(ConversationTable)
        keep = select or self._selected_id()
        index = table.cursor_row
        self.rows = {row.id: row for row in rows}
        table.clear(columns=True)
        table.add_column("Title", width=max(16, table.size.width - _FIXED_COLUMNS - 2))
        table.add_column("Turns", width=5)
        table.add_column("Updated", width=10)
        table.add_column("", width=7)
        now = time.time()
        for row in rows:
            title = Text(row.title, no_wrap=True, overflow="ellipsis") if row.title else Text("(untitled)", "dim")
            turns = Text(str(row.turns))
            mark = Text("current", "bold") if row.current else Text("")
            table.add_row(title, turns, Text(short_date(row.updated_at, now)), mark, key=row.id)
        if keep in self.rows:
            table.move_cursor(row=table.get_row_index(keep))
        elif rows:
            table.move_cursor(row=min(index, len(rows) - 1))
        if not rows:
            self._say("no conversations yet")

    def _selected_id(self) -> str | None:
        table = self.query_one(ConversationTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _selected(self) -> ConversationSummary | None:
        summary = self.rows.get(self._selected_id() or "")
        if summary is None:
            self._say("no conversation to act on", error=True)
        return summary

    @on(ConversationTable.RowSelected)
    def _resume(self, message: DataTable.RowSelected) -> None:
        self.dismiss(ConversationAction("resume", str(message.row_key.value)))

    def action_close(self) -> None:
        self.dismiss(ConversationAction("new", self.session.conversation_id) if self._started_new else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a title is edited or a deletion asked, only that answer's keys apply."""
        if action in ("rename", "delete", "export", "close"):
            return self._mode == "list"
        return True

    def _set_mode(self, mode: Literal["list", "rename", "confirm"], target: ConversationSummary | None = None) -> None:
        self._mode, self._target = mode, target
        self.query_one("#rename").display = mode == "rename"
        self.query_one(DeleteQuestion).display = mode == "confirm"
        if mode == "list":
            self.query_one(ConversationTable).focus()
        self.refresh_bindings()

    # -- rename -------------------------------------------------------------------------------

    def action_rename(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        self._set_mode("rename", summary)
        field = self.query_one(TitleInput)
        field.value = summary.title
        field.focus()
        self._say("")

    def action_cancel_rename(self) -> None:
        self._set_mode("list")
        self._say("title kept")

    @on(TitleInput.Submitted)
    def _save_title(self, message: Input.Submitted) -> None:
        if self._target is not None:
            self._rename(self._target.id, message.value)

    @work(group="store")
    async def _rename(self, cid: str, title: str) -> None:
        saved = await self._off_thread("renaming", rename, self.session, cid, title)
        if saved is None:
            return  # the error is shown; the title stays open for another try
        self._set_mode("list")
        self._say(Text.assemble("renamed to “", saved, "”"))
        await self._refresh_rows(select=cid)

    # -- delete -------------------------------------------------------------------------------

    def action_delete(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        question = self.query_one(DeleteQuestion)
        turns = f"{summary.turns} turn{'' if summary.turns == 1 else 's'}"
        current = ", the open one" if summary.current else ""
        question.update(Text.assemble("Delete “", _title(summary), f"” ({turns}{current})? y/n"))
        self._set_mode("confirm", summary)
        question.focus()
        self._say("")

    def action_answer_delete(self, yes: bool) -> None:
        target = self._target
        self._set_mode("list")
        if target is None:
            return
        if yes:
            self._delete(target)
        else:
            self._say(Text.assemble("kept “", _title(target), "”"))

    @work(group="store")
    async def _delete(self, target: ConversationSummary) -> None:
        deleted = await self._off_thread("deleting", delete, self.session, target.id)
        if deleted is None:
            return
        turns = f"{deleted} turn{'' if deleted == 1 else 's'}"
        if target.current:
            self._started_new = True
            self._say(Text.assemble("deleted “", _title(target), f"” ({turns}); a new conversation is open"))
        else:
            self._say(Text.assemble("deleted “", _title(target), f"” ({turns})"))
        await self._refresh_rows()

    # -- export -------------------------------------------------------------------------------

    def action_export(self, fmt: ExportFormat) -> None:
        summary = self._selected()
        if summary is not None:
            self._export(summary.id, fmt)

    @work(group="store")
    async def _export(self, cid: str, fmt: ExportFormat) -> None:
        written = await self._off_thread("exporting", export, self.session, cid, fmt)
        if written is not None:
            room = self.query_one("#message").size.width - len("wrote ")
            self._say(f"wrote {display_path(written, room)}")

    # -- one line of news -----------------------------------------------------------------------

    def _say(self, line: str | Text, *, error: bool = False) -> None:
        message = self.query_one("#message", Static)
        message.set_class(error, "error")
        message.update(Text(line) if isinstance(line, str) else line)

    async def _off_thread(self, what: str, call: Callable[..., T], *args: Any) -> T | None:
        """``call(*args)`` in a worker thread; a failure becomes the screen's one error line."""
        try:
            return await asyncio.to_thread(call, *args)
        except SlmchatError as exc:
            self._say(str(exc), error=True)
        except Exception as exc:  # a bug or a broken database: one line here, the rest in the log
            self.log.error(f"{what} failed", exc)
            self._say(f"{what} failed: {type(exc).__name__}: {exc}", error=True)
        return None


def _title(summary: ConversationSummary) -> str:
    return summary.title or "(untitled)"


def short_date(ts: float, now: float) -> str:
    """A local date that fits 10 cells: the time today, the day this year, else the full date."""
    when, today = datetime.fromtimestamp(ts), datetime.fromtimestamp(now)
    if when.date() == today.date():
        return when.strftime("%H:%M")
    if when.year == today.year:
        return when.strftime("%d %b")
    return when.strftime("%Y-%m-%d")


def display_path(path: Path, width: int) -> str:
    """The path in ``width`` cells or fewer: the home folder as ``~``, then its start elided, never its name."""
    try:
        text = "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        text = str(path)
    return text if len(text) <= width else "…" + text[-max(width - 1, len(path.name)) :]
