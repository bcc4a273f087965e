"""Compare in the terminal app: the last answer and a rerun on the other tier, side by side.

``CompareScreen`` runs ``slmchat.engine.compare`` in a worker, streams the rerun into the
right column while the left shows the answer that stood, and puts each answer's tier, model,
cost and speed under it. ``1``/left keeps the original, ``2``/right the rerun (the verdict is
stored for ``slmchat route calibrate --error-costs``); Esc closes with no verdict, stopping the
rerun if it is still coming. It dismisses with a ``CompareOutcome`` after a keep, else None.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown, Static
from textual.worker import Worker

from slmchat.engine.compare import Comparison, Side, Which, compare, keep
from slmchat.engine.events import AnswerReset, RouteDecided, Token, TurnDone, TurnFailed, TurnStats
from slmchat.engine.transcript import usd
from slmchat.faces.tui.plain import plain
from slmchat.infra.errors import SlmchatError

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session


@dataclass(frozen=True)
class CompareOutcome:
    """What the user kept. When it is the rerun, its answer ``replaces`` the original turn's in the log."""

    kept: Which
    turn_id: int
    answer: str
    tier: str
    stats: TurnStats | None
    replaces: int | None  # the original turn's id when the rerun was kept, else None


def figures(tier: str | None, model: str | None, stats: TurnStats | None) -> Text:
    """Three short lines under an answer (a column is ~38 wide): who wrote it, its cost and time, its speed."""
    who = " · ".join(p for p in (tier, model) if p) or "…"
    if stats is None:
        return Text(f"{who}\n…", no_wrap=True, overflow="ellipsis")
    latency, cost = stats.latency, stats.cost
    if cost is None or cost.usd is None:
        price = "$?"  # an unknown price is never $0
    elif cost.price_source == "local" and cost.usd == 0:
        price = "local"
    else:
        price = usd(cost.usd)
    spent = [price, f"{latency.total_ms / 1000:.1f} s", *([stats.status] if stats.status != "ok" else [])]
    speed = [
        f"ttft {latency.ttft_ms:.0f} ms" if latency.ttft_ms is not None else "ttft ?",
        f"{latency.tokens_per_s:.0f} tok/s" if latency.tokens_per_s is not None else "? tok/s",
    ]
    return Text(f"{who}\n{' · '.join(spent)}\n{' · '.join(speed)}", no_wrap=True, overflow="ellipsis")


class CompareScreen(ModalScreen[CompareOutcome | None]):
    """The last turn's answer (left) against a rerun on the other tier (right); keep one."""

    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > #compare { width: 100%; height: 100%; background: $surface; }
    CompareScreen #compare-question { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    CompareScreen #compare-columns { height: 1fr; }
    CompareScreen .compare-side { width: 1fr; height: 100%; }
    CompareScreen #original-side { border-right: vkey $panel-lighten-2; }
    CompareScreen .compare-heading { height: 1; padding: 0 1; color: $text-muted; }
    CompareScreen .compare-answer { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    CompareScreen .compare-answer Markdown { margin: 0; padding: 0; }
    CompareScreen .compare-figures { height: 3; padding: 0 1; color: $text-muted; }
    CompareScreen #compare-status { height: 1; padding: 0 1; }
    CompareScreen #compare-status.error { color: $error; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1,left", "keep('original')", "keep original", key_display="1", priority=True, id="compare_original"),
        Binding("2,right", "keep('rerun')", "keep rerun", key_display="2", priority=True, id="compare_rerun"),
        Binding("escape", "close", "close", priority=True, id="compare_close"),
    ]

    def __init__(
        self,
        session: Session,
        *,
        turn_id: int | None = None,
        question: str | None = None,
        original_answer: str | None = None,
        original_stats: TurnStats | None = None,
    ) -> None:
        """``question``, ``original_answer`` and ``original_stats`` (the app's copy of the last turn)
        show at once; without them the left column fills when the engine has read the turn."""
        super().__init__()
        self.session = session
        self.turn_id = turn_id
        self._question = question
        self._original_answer = original_answer
        self._original_stats = original_stats
        self.comparison: Comparison | None = None  # once the rerun finished ok
        self.rerun_text = ""  # the right column's text, as streamed
        self.rerun_stats: TurnStats | None = None  # the rerun's figures, kept or not (its cost was spent)
        self.error: str | None = None  # the one line shown when something went wrong
        self._worker: Worker[None] | None = None
        self._stopping = False
        self._settled = False

    def compose(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield Static(
                Text(plain(self._question or "compare"), no_wrap=True, overflow="ellipsis"), id="compare-question"
            )
            with Horizontal(id="compare-columns"):
                with Vertical(id="original-side", classes="compare-side"):
                    yield Static(Text("1 · the answer that stood"), classes="compare-heading")
                    with VerticalScroll(classes="compare-answer"):
                        yield Markdown(plain(self._original_answer or ""), id="original-answer")
                    stats = self._original_stats
                    tier = (stats.answered_by or stats.route.tier) if stats else None
                    yield Static(figures(tier, None, stats), id="original-figures", classes="compare-figures")
                with Vertical(id="rerun-side", classes="compare-side"):
                    yield Static(Text("2 · the other tier"), classes="compare-heading")
                    with VerticalScroll(classes="compare-answer"):
                        yield Markdown("", id="rerun-answer")
                    yield Static(figures(None, None, None), id="rerun-figures", classes="compare-figures")
            yield Static(Text("asking the other tier…"), id="compare-status")
            yield Footer()

    def on_mount(self) -> None:
        self._worker = self._rerun()

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_running

    @work(exclusive=True, group="compare", exit_on_error=False)
    async def _rerun(self) -> None:
        """Run the compare and stream the rerun into the right column."""
        run = compare(self.session, self.turn_id)
        answer = self.query_one("#rerun-answer", Markdown)
        stream = Markdown.get_stream(answer)
        tier: str | None = None
        model: str | None = None
        shown = False
        try:
            async for event in run:
                if self._stopping:
                    self.session.cancel()  # Esc came before the turn could be cancelled
                if not shown and run.original is not None:
                    shown = True
                    await self._show_original(run.question or "", run.original)
                if isinstance(event, RouteDecided):
                    tier, model = event.decision.tier, event.decision.model
                    self._figures("#rerun-figures", tier, model, None)
                    self._say(f"asking the {tier} tier…")
                elif isinstance(event, Token):
                    self.rerun_text += event.text
                    await stream.write(plain(event.text))
                elif isinstance(event, AnswerReset):
                    await stream.stop()
                    self.rerun_text = event.text
                    await answer.update(plain(event.text))
                    stream = Markdown.get_stream(answer)
                elif isinstance(event, TurnDone):
                    self.rerun_stats = event.stats
                    tier = event.stats.answered_by or tier
                    self._figures("#rerun-figures", tier, model, event.stats)
                elif isinstance(event, TurnFailed):
                    self._say(f"the rerun failed: {event.error}" + (f" ({event.hint})" if event.hint else ""), True)
        except SlmchatError as exc:
            self._say(f"{exc.message} ({exc.hint})" if exc.hint else exc.message, True)
        except Exception as exc:  # one line, never a traceback over the app
            self._say(f"unexpected error: {type(exc).__name__}: {exc}", True)
        finally:
            await stream.stop()
        self.comparison = run.comparison
        if self._stopping:
            self.dismiss(None)
        elif self.comparison is not None:
            self._say(f"1 keeps the {self.comparison.original.tier} answer, 2 the {self.comparison.rerun.tier} one")
        elif self.error is None:
            self._say("the rerun did not finish: Esc closes and keeps the original")

    async def _show_original(self, question: str, original: Side) -> None:
        """The engine's reading of the last turn: its question, who wrote it, its figures (and text)."""
        self.query_one("#compare-question", Static).update(Text(plain(question), no_wrap=True, overflow="ellipsis"))
        self._figures("#original-figures", original.tier, original.model, original.stats)
        if self._original_answer is None:  # the app did not pass its copy
            self._original_answer = original.answer
            await self.query_one("#original-answer", Markdown).update(plain(original.answer))

    def _figures(self, selector: str, tier: str | None, model: str | None, stats: TurnStats | None) -> None:
        self.query_one(selector, Static).update(figures(tier, model, stats))

    def _say(self, line: str, error: bool = False) -> None:
        self.error = line if error else self.error
        status = self.query_one("#compare-status", Static)
        status.update(Text(line, no_wrap=True, overflow="ellipsis"))
        status.set_class(error, "error")

    async def action_keep(self, which: Which) -> None:
        if self._settled or self._stopping:
            return
        if self.comparison is None:
            self._say("the rerun is still coming: wait for it, or Esc to close" if self.running else
                      "there is no rerun to keep: Esc closes and keeps the original", True)  # fmt: skip
            return
        self._settled = True
        try:
            side = await asyncio.to_thread(keep, self.session, self.comparison, which)
        except SlmchatError as exc:
            self._say(f"{exc.message} ({exc.hint})" if exc.hint else exc.message, True)
            return
        replaces = self.comparison.original.turn_id if which == "rerun" else None
        self.dismiss(CompareOutcome(which, side.turn_id, side.answer, side.tier, side.stats, replaces))

    def action_close(self) -> None:
        """Close with no verdict; a rerun still coming is cancelled (stored, set aside) first."""
        if self._stopping:
            return
        if self.running:
            self._stopping = True
            self.session.cancel()
            self._say("stopping the rerun…")
        else:
            self.dismiss(None)
