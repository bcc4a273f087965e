"""Conversations as Markdown or JSON, for `slmchat history show|export`."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from slmchat.engine.events import event_from_dict
from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError
from slmchat.infra.store import Store


def open_history(*, readonly: bool = False) -> Store:
    """The user's history database (created if missing).

    ``readonly`` is for commands that only read: they then work on a full or read-only disk,
    and create nothing.
    """
    return Store(paths.database_file(), readonly=readonly)


def pick_conversation(store: Store, conversation_id: str | None) -> str:
    """The conversation named by an id prefix, or the latest one (None); an empty id is an error."""
    if conversation_id is not None:
        return store.find_conversation(conversation_id)
    latest = store.latest_conversation()
    if latest is None:
        raise SlmchatError("there are no conversations yet", 'start one with: slmchat ask "..."')
    return latest


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def conversation_json(store: Store, conversation_id: str) -> dict[str, Any]:
    turns = []
    for row in store.turns(conversation_id):
        events = store.events(row["id"])
        notes = [event_from_dict(e).note for e in events if e["kind"] == "compacted"]  # type: ignore[attr-defined]
        tools = [e for e in events if e["kind"] in ("tool_call", "tool_result", "recovery")]
        recalled = next((e["recalled"] for e in events if e["kind"] == "memory_recalled"), [])
        turns.append(
            {
                "turn_id": row["id"],
                "created_at": row["created_at"],
                "user": row["user_text"],
                "answer": row["answer"],
                "status": row["status"],
                "route": {"tier": row["tier"], "model": row["model"], "reason": row["route_reason"]},
                "error": row["error"],
                "usage": {
                    "prompt_tokens": row["prompt_tokens"],
                    "completion_tokens": row["completion_tokens"],
                    "estimated": bool(row["estimated"]) if row["estimated"] is not None else None,
                },
                "latency": {
                    "ttft_ms": row["ttft_ms"],
                    "total_ms": row["total_ms"],
                    "tokens_per_s": row["tokens_per_s"],
                },
                "notes": notes,
                "tool_events": tools,
                "recalled": recalled,
            }
        )
    return {"conversation_id": conversation_id, "turns": turns}


def conversation_markdown(store: Store, conversation_id: str) -> str:
    data = conversation_json(store, conversation_id)
    lines = [f"# Conversation {conversation_id}", ""]
    for turn in data["turns"]:
        lines += [f"## {_when(turn['created_at'])}", "", "**You:**", "", turn["user"], ""]
        route = turn["route"]
        label = f"**Assistant** ({route['tier']}, {route['model']})"
        if turn["status"] != "ok":
            label += f" — {turn['status']}"
        lines += [f"> {note}" for note in turn["notes"]]
        lines += [f"> recalled: {r['text']}" for r in turn["recalled"]]
        lines += [f"> {line}" for e in turn["tool_events"] if (line := tool_line(event_from_dict(e)))]
        lines += [label + ":", "", turn["answer"] or "_(no answer)_", ""]
        if turn["error"]:
            lines += [f"> error: {turn['error']}", ""]
    return "\n".join(lines).rstrip() + "\n"


def stats_line(stats: Any) -> str:
    """One line of figures for a finished turn: tier, model, tokens, speed."""
    usage, latency = stats.usage, stats.latency
    approx = "~" if usage.estimated else ""
    tier = stats.answered_by or stats.route.tier
    parts = [tier, stats.route.model if tier == stats.route.tier else f"escalated to {tier}"]
    if usage.prompt_tokens is not None or usage.completion_tokens is not None:
        parts.append(f"{approx}{usage.prompt_tokens or 0}→{approx}{usage.completion_tokens or 0} tok")
    if latency.ttft_ms is not None:
        parts.append(f"ttft {latency.ttft_ms:.0f} ms")
    if latency.tokens_per_s is not None:
        parts.append(f"{latency.tokens_per_s:.0f} tok/s")
    parts.append(f"{latency.total_ms / 1000:.1f} s")
    cost = getattr(stats, "cost", None)
    if cost is not None:
        if cost.price_source == "local" and cost.usd == 0:
            parts.append("local")
        else:
            parts.append("$?" if cost.usd is None else usd(cost.usd))
        if cost.saved_usd:
            parts.append(f"saved {usd(cost.saved_usd)}")
    tools = getattr(stats, "tools", None)
    if tools and (tools["calls"] or tools["recoveries"]):
        parts.append(f"{tools['calls']} tool call{'s' if tools['calls'] != 1 else ''}, {latency.tool_ms:.0f} ms")
        if tools["recoveries"]:
            parts.append(f"{tools['recoveries']} recover{'ies' if tools['recoveries'] != 1 else 'y'}")
    if stats.status != "ok":
        parts.append(stats.status)
    return " · ".join(parts)


def route_line(decision: Any) -> str:
    """Score against threshold and the reason: ``score 0.19 < 0.28 (small: simple request)``."""
    if decision.score is None or decision.threshold is None or "score" in decision.reason:
        return decision.reason  # the router's own reasons already give the comparison
    side = "≥" if decision.score >= decision.threshold else "<"
    return f"score {decision.score:.2f} {side} {decision.threshold:.2f}: {decision.reason}"


def footer_line(stats: Any, where: str | None = None) -> str:
    """The figures of a finished turn, then where it went and why (a notebook cell's footer)."""
    parts = [stats_line(stats)]
    if where:
        parts.append(where)
    if stats.escalation:
        parts.append(f"escalated: {stats.escalation}")
    parts.append(route_line(stats.route))
    return " · ".join(parts)


def tool_line(event: Any) -> str | None:
    """The line faces show for a tool event (None for other events)."""
    from slmchat.tools.prompt import call_text

    kind = getattr(event, "kind", "")
    if kind == "tool_call":
        note = {True: " (approved)", False: " (not allowed)"}.get(event.approved, "")
        return f"[tool {call_text(event.name, event.arguments)}{note}]"
    if kind == "tool_result":
        result = event.result if len(event.result) <= 200 else event.result[:199] + "…"
        retries = f", {event.attempts} attempts" if event.attempts > 1 else ""
        return f"[{'→' if event.ok else 'failed:'} {result} ({event.ms:.0f} ms{retries})]"
    if kind == "recovery":
        return f"[recovery {event.template}: {event.message}]"
    return None


FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of an answer, in order (what a face copies or puts in a new cell)."""
    return [block.rstrip("\n") for block in FENCE.findall(markdown)]


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def usd(value: float | None) -> str:
    """Dollars with enough digits that a small amount does not read as zero; ``$?`` when unknown."""
    if value is None:
        return "$?"
    return f"${value:.4f}" if abs(value) >= 0.0001 or value == 0 else f"${value:.2g}"
