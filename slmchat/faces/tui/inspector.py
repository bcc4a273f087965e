"""The turn inspector: where a turn ran and why, its speed, its cost, its memory, and the session chart.

``inspect`` turns a ``TurnView`` into Rich ``Text`` built piece by piece (model output and
stored text are appended as plain data, never parsed as markup). Everything coloured is also
said in words, so the panel reads the same without colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from slmchat.engine.transcript import usd
from slmchat.faces.tui.plain import plain
from slmchat.faces.tui.turn_view import SessionTotals, TurnView

if TYPE_CHECKING:  # the session hands these over (Session.budget); the face does not compute them
    from slmchat.engine.route_calls import BudgetUse

BAR = 16  # characters in the score bar
CHART_TURNS = 8  # turns in the session chart
FACTORS_SHOWN = 3


def score_bar(score: float, threshold: float, width: int = BAR) -> str:
    """``████████░░│░░░░░░░░░`` : the score filled, the threshold as a bar."""
    filled = round(max(0.0, min(1.0, score)) * width)
    mark = min(width - 1, round(max(0.0, min(1.0, threshold)) * width))
    cells = ["█" if i < filled else "░" for i in range(width)]
    cells[mark] = "│"
    return "".join(cells)


def _section(out: Text, title: str) -> None:
    if out:
        out.append("\n")
    out.append(title.upper() + "\n", style="bold")


def _line(out: Text, label: str, value: str, style: str = "") -> None:
    out.append(f"{label:<10}", style="dim")
    out.append(plain(value) + "\n", style=style)


def _where(out: Text, view: TurnView) -> None:
    _section(out, "where")
    decision = view.decision
    if decision is None:
        out.append("routing…\n", style="dim")
        return
    tier = view.tier or decision.tier
    _line(out, "tier", tier + (" (escalated)" if view.escalations and tier == "large" else ""), "bold")
    model = view.stats.route.model if view.stats and tier == decision.tier else None
    if view.escalations:
        model = view.escalations[-1].model or model
    _line(out, "model", model or decision.model)
    if view.destination is not None:
        badge = "LOCAL" if view.destination.local else "REMOTE"
        out.append(f"{'text':<10}", style="dim")
        out.append(f" {badge} ", style="reverse bold")
        out.append(" " + plain(view.destination.label.split(": ", 1)[-1]) + "\n")


def _route(out: Text, view: TurnView) -> None:
    decision = view.decision
    if decision is None:
        return
    _section(out, "routing")
    if decision.score is not None and decision.threshold is not None:
        side = "≥" if decision.score >= decision.threshold else "<"
        out.append(score_bar(decision.score, decision.threshold), style="bold")
        out.append(f" {decision.score:.2f} {side} {decision.threshold:.2f}\n")
    ranked = sorted(decision.factors.items(), key=lambda kv: abs(kv[1]), reverse=True)[:FACTORS_SHOWN]
    for name, value in ranked:
        toward = "↑ large" if value > 0 else "↓ small" if value < 0 else "none"
        out.append(f"  {name.replace('_', ' '):<16} {value:+.2f} {toward}\n")
    out.append(plain(decision.reason) + "\n", style="italic")
    if decision.override is not None:
        _line(out, "override", f"you chose {decision.override.value}", "bold")
    for step in view.escalations:
        _line(out, "escalated", f"{step.scope}: {step.reason} → {step.to_tier}", "bold")


def _speed(out: Text, view: TurnView) -> None:
    _section(out, "speed")
    stats = view.stats
    if stats is None:
        if view.first_token_at is None:
            out.append("waiting for the first token…\n" if not view.finished else "no answer\n", style="dim")
        else:
            ttft = (view.first_token_at - view.started) * 1000
            rate = view.live_rate()
            _line(out, "ttft", f"{ttft:.0f} ms (live)")
            _line(out, "speed", f"{rate:.0f} tok/s (live)" if rate else "…")
            _line(out, "tokens", f"{view.tokens} so far")
        return
    latency, usage = stats.latency, stats.usage
    approx = " (estimated)" if usage.estimated else ""
    _line(out, "ttft", f"{latency.ttft_ms:.0f} ms" if latency.ttft_ms is not None else "—")
    _line(out, "speed", f"{latency.tokens_per_s:.0f} tok/s" if latency.tokens_per_s else "—")
    _line(out, "tokens", f"{usage.prompt_tokens or 0} in, {usage.completion_tokens or 0} out{approx}")
    split = [("load", latency.load_ms), ("model", latency.model_ms), ("engine", latency.engine_ms),
             ("tools", latency.tool_ms)]  # fmt: skip
    _line(out, "time", f"{latency.total_ms / 1000:.2f} s")
    out.append("  " + " · ".join(f"{name} {ms:.0f} ms" for name, ms in split if ms or name == "model") + "\n")
    if stats.status != "ok":
        _line(out, "status", stats.status, "bold")


def _cost(out: Text, view: TurnView, totals: SessionTotals, budget: list[BudgetUse]) -> None:
    _section(out, "cost")
    cost = view.stats.cost if view.stats else None
    if view.stats is not None:
        if cost is None:
            _line(out, "turn", "$? (no price known)")
        elif cost.price_source == "local" and cost.usd == 0:
            _line(out, "turn", "$0 (local, no price per hour set)")
        else:
            _line(out, "turn", usd(cost.usd))
        if cost is not None:
            _line(out, "if large", usd(cost.large_equivalent_usd))
            _line(out, "saved", usd(cost.saved_usd))
    turns = len(totals.turns)
    if totals.unknown == turns and turns:
        spent = f"$? ({turns} turn{'s' if turns != 1 else ''}, no price)"
    elif totals.unknown:
        spent = f"{usd(totals.usd)} + {totals.unknown} unpriced"
    else:
        spent = usd(totals.usd)
    _line(out, "session", spent)
    if turns and totals.unknown < turns:
        _line(out, "saved", f"{usd(totals.saved_usd)} this session")
    for use in budget:
        if use.spent_usd is None:
            _line(out, use.name, f"cap {usd(use.cap_usd)}: spend unknown (no price)")
            continue
        share = min(1.0, use.spent_usd / use.cap_usd) if use.cap_usd else 1.0
        filled = round(share * 10)
        _line(out, use.name, f"{'█' * filled}{'░' * (10 - filled)} {usd(use.spent_usd)} of {usd(use.cap_usd)}")


def _memory(out: Text, view: TurnView) -> None:
    if view.recalled is None and view.saved is None and view.memory_error is None:
        return
    _section(out, "memory")
    if view.recalled is not None:
        for item in view.recalled.recalled:
            score = item.get("score")
            kind = item.get("kind", "")
            shown = plain(str(item.get("text", "")))[:60]
            out.append(f"  {score:.2f} " if isinstance(score, float) else "  ", style="dim")
            out.append(f"{kind}: {shown}\n")
    for change in view.saved.changes if view.saved else []:
        out.append(f"  stored ({change.get('action')}): {plain(str(change.get('fact') or ''))[:60]}\n")
    if view.saved is not None and not view.saved.changes:
        out.append("  stored the exchange, no new facts\n", style="dim")
    if view.memory_error:
        out.append(f"  not stored: {plain(view.memory_error)}\n", style="bold")


def _chart(out: Text, totals: SessionTotals) -> None:
    if not totals.turns:
        return
    _section(out, "session")
    recent = totals.turns[-CHART_TURNS:]
    longest = max(t.total_ms for t in recent) or 1.0
    for figures in recent:
        bar = "█" * max(1, round(figures.total_ms / longest * 10))
        tier = "L" if figures.tier == "large" else "S"
        seconds = figures.total_ms / 1000
        out.append(f"  #{figures.turn_id or '?':<4} {tier} {bar:<10} {seconds:5.1f}s {usd(figures.usd)}\n")
    out.append("  S small · L large · bar: time\n", style="dim")


def inspect(view: TurnView | None, totals: SessionTotals, budget: list[BudgetUse] | None = None) -> Text:
    """The inspector's whole text for ``view`` (None: no turn yet)."""
    out = Text()
    if view is None:
        out.append("No turn yet. Ask something: the inspector shows where it ran, why, and what it cost.\n")
    else:
        header = f"turn #{view.turn_id}" if view.turn_id is not None else "this turn"
        out.append(header + ("" if view.finished else " (running)") + "\n", style="bold")
        _where(out, view)
        _route(out, view)
        _speed(out, view)
    _cost(out, view if view is not None else TurnView(""), totals, budget or [])
    if view is not None:
        _memory(out, view)
    _chart(out, totals)
    return out


class Inspector(VerticalScroll):
    """The side panel; ``show`` redraws it for a turn (live or earlier)."""

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(inspect(None, SessionTotals()), id="inspector-body")

    def show(self, view: TurnView | None, totals: SessionTotals, budget: list[BudgetUse] | None = None) -> None:
        self.query_one("#inspector-body", Static).update(inspect(view, totals, budget))
