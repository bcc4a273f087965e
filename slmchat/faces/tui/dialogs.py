"""Small modal screens: tool approval, yes/no questions, the model picker.

Each dismisses with its answer; the app decides what to do with it. Arguments, model names
and memories are drawn as data (``Text``), never as markup.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from slmchat.engine.events import ApprovalRequested
from slmchat.faces.tui.plain import plain


class ApprovalScreen(ModalScreen[bool]):
    """ "Run this tool?" with its arguments; y approves, n or Esc denies (a denial is reported to the model)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Approve"),
        Binding("n,escape", "answer(False)", "Deny"),
    ]

    def __init__(self, request: ApprovalRequested) -> None:
        super().__init__(classes="dialog")
        self.request = request

    def compose(self) -> ComposeResult:
        arguments = json.dumps(self.request.arguments, indent=2, ensure_ascii=False)
        with Vertical(id="dialog"):
            yield Label(Text(plain(f"Run the tool {self.request.name}?"), style="bold"), markup=False)
            yield Static(Text(plain(arguments)), id="arguments", markup=False)
            yield Label(f"asked by the {self.request.tier} tier, step {self.request.step}", classes="dim")
            with Horizontal(classes="buttons"):
                yield Button("Approve (y)", id="approve", variant="success")
                yield Button("Deny (n)", id="deny", variant="error")

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()  # Enter alone must not run a tool

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "approve")

    def action_answer(self, allowed: bool) -> None:
        self.dismiss(allowed)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question with the lines it is about (``/forget`` shows the memories first)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, lines: list[str]) -> None:
        super().__init__(classes="dialog")
        self.question, self.lines = question, lines

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(plain("\n".join(self.lines))), markup=False)
            yield Label(Text(plain(self.question) + " [y/N]", style="bold"), markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ModelPicker(ModalScreen[str | None]):
    """The models ``slmchat models`` lists; Enter uses one for the small tier, Esc keeps the current one."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, groups: Any, current: str | None) -> None:
        super().__init__(classes="dialog")
        self.groups, self.current = groups, current

    def compose(self) -> ComposeResult:
        options: list[Option | None] = []
        for group in self.groups:
            names = [entry.name for entry in group.models]
            if not names:
                continue
            heading = Text(f"{group.backend} ({group.where or group.status})", style="bold")
            options.append(Option(heading, disabled=True))
            for name in names:
                mark = "  (in use)" if name == self.current else ""
                options.append(Option(Text(plain(f"  {name}{mark}")), id=name))
        with Vertical(id="dialog"):
            yield Label("Small-tier model (Enter to use, Esc to close)")
            yield OptionList(*options, id="models")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
