"""Totals over stored turns: per tier, per day, spend and savings, latency percentiles."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np

CSV_COLUMNS = ["turn_id", "call_id", "day", "conversation_id", "routed_tier", "tier", "model", "prompt_tokens",
               "completion_tokens", "estimated", "usd", "large_equivalent_usd", "price_source", "ttft_ms",
               "total_ms", "tokens_per_s", "override", "escalated", "wanted_tier"]  # fmt: skip


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def _sum(values: list[float | None]) -> dict[str, Any]:
    """A sum that says how many parts were unknown, instead of counting them as 0."""
    known = [v for v in values if v is not None]
    return {"usd": sum(known), "unknown": len(values) - len(known)}


def _pct(values: list[float | None], q: float) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.percentile(known, q)) if known else None


def summarize(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the calls from ``Store.call_rows``; a turn is counted once, on the tier that answered."""
    turns: dict[int, dict[str, Any]] = {}
    for call in calls:  # oldest call first: the last one per turn is the answer that stands
        turns.setdefault(call["turn_id"], {"calls": []})["calls"].append(call)
    per_tier: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_conversation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for turn in turns.values():
        last = turn["calls"][-1]
        per_tier[last["tier"]].append(last)
        per_day[_day(last["created_at"])].append(turn)
        per_conversation[last["conversation_id"]].append(turn)

    def money(turn_list: list[dict[str, Any]]) -> dict[str, Any]:
        every = [c for t in turn_list for c in t["calls"]]
        spend = _sum([c["usd"] for c in every])
        equivalent = _sum([c["large_equivalent_usd"] for c in every])
        complete = not spend["unknown"] and not equivalent["unknown"]
        saved = equivalent["usd"] - spend["usd"] if complete else None  # a saving with unknown parts is unknown
        return {"spend": spend, "large_equivalent": equivalent, "saved_usd": saved}

    n = len(turns)
    escalated = sum(1 for t in turns.values() if t["calls"][-1]["escalated"])
    overrides = sum(1 for t in turns.values() if t["calls"][-1]["override"])
    return {
        "turns": n,
        "turns_per_tier": {tier: len(rows) for tier, rows in sorted(per_tier.items())},
        "escalations": escalated,
        "escalation_rate": escalated / n if n else None,
        "overrides": overrides,
        **money(list(turns.values())),
        "latency_per_tier": {
            tier: {
                "p50_total_ms": _pct([r["total_ms"] for r in rows], 50),
                "p95_total_ms": _pct([r["total_ms"] for r in rows], 95),
                "p50_ttft_ms": _pct([r["ttft_ms"] for r in rows], 50),
                "p95_ttft_ms": _pct([r["ttft_ms"] for r in rows], 95),
            }
            for tier, rows in sorted(per_tier.items())
        },
        "per_day": {day: {"turns": len(rows), **money(rows)} for day, rows in sorted(per_day.items())},
        "per_conversation": {cid: {"turns": len(rows), **money(rows)} for cid, rows in per_conversation.items()},
    }


def usd(value: float | None, unknown: int = 0) -> str:
    text = "?" if value is None else f"${value:.4f}"
    return text + (f" (+{unknown} unknown)" if unknown else "")


def render(summary: dict[str, Any]) -> str:
    s = summary
    tiers = ", ".join(f"{tier} {count}" for tier, count in s["turns_per_tier"].items()) or "none"
    rate = f"{s['escalation_rate']:.1%}" if s["escalation_rate"] is not None else "-"
    lines = [
        f"{s['turns']} turns ({tiers}); escalations {s['escalations']} ({rate}); overrides {s['overrides']}",
        f"spend {usd(s['spend']['usd'], s['spend']['unknown'])}; large-tier equivalent "
        f"{usd(s['large_equivalent']['usd'], s['large_equivalent']['unknown'])}; saved {usd(s['saved_usd'])}",
        "",
        f"{'tier':<7}{'p50 ms':>10}{'p95 ms':>10}{'p50 ttft':>10}{'p95 ttft':>10}",
    ]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for tier, lat in s["latency_per_tier"].items():
        lines.append(f"{tier:<7}{ms(lat['p50_total_ms']):>10}{ms(lat['p95_total_ms']):>10}"
                     f"{ms(lat['p50_ttft_ms']):>10}{ms(lat['p95_ttft_ms']):>10}")  # fmt: skip
    lines.append("")
    for day, d in s["per_day"].items():
        lines.append(f"{day}  {d['turns']:>4} turns  spend {usd(d['spend']['usd'], d['spend']['unknown'])}"
                     f"  saved {usd(d['saved_usd'])}")  # fmt: skip
    return "\n".join(lines)


def to_csv(calls: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for call in calls:
        writer.writerow({**call, "day": _day(call["created_at"])})
    return out.getvalue()
