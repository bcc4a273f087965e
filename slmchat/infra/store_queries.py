"""What accounting and routing read from the history: tokens per tier, every model call, scored turns.

Read-only queries over the turns, usage and events tables, for the spend caps (``tokens_since``),
``slmchat stats --csv`` (``call_rows``) and ``route calibrate`` (``routed_turns``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


class SpendQueries:
    """A mixin of ``Store``: the read-only queries of accounting and router calibration."""

    db: sqlite3.Connection

    def tokens_since(self, since: float, tier: str = "large") -> tuple[int, int]:
        """Prompt and completion tokens used on ``tier`` by turns stored since ``since`` (a timestamp)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(u.prompt_tokens), 0), COALESCE(SUM(u.completion_tokens), 0) FROM usage u"
            " JOIN turns t ON t.id = u.turn_id WHERE u.tier = ? AND t.created_at >= ?",
            (tier, since),
        ).fetchone()
        return int(row[0]), int(row[1])

    def call_rows(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every model call since ``since``, oldest first, with its turn's time, routed tier and override."""
        rows = self.db.execute(
            "SELECT t.id AS turn_id, t.created_at, t.conversation_id, t.tier AS routed_tier, t.status,"
            " u.id AS call_id, u.tier, u.model, u.prompt_tokens, u.completion_tokens, u.estimated, u.usd,"
            " u.large_equivalent_usd, u.price_source, u.ttft_ms, u.total_ms, u.tokens_per_s,"
            " (SELECT json_extract(payload, '$.decision.override') FROM events e"
            "  WHERE e.turn_id = t.id AND e.kind = 'route_decided') AS override,"
            " (SELECT json_extract(payload, '$.decision.wanted') FROM events w"
            "  WHERE w.turn_id = t.id AND w.kind = 'route_decided') AS wanted_tier,"
            " EXISTS(SELECT 1 FROM events x WHERE x.turn_id = t.id AND x.kind = 'escalated') AS escalated"
            " FROM turns t JOIN usage u ON u.turn_id = t.id WHERE t.created_at >= ? ORDER BY t.id, u.id",
            (since,),
        ).fetchall()
        return [dict(r) for r in rows]

    def routed_turns(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Recent turns the router scored, newest first: tier, score, override and any feedback."""
        rows = self.db.execute(
            "SELECT t.id, t.tier, t.superseded, e.payload, f.good,"
            " EXISTS(SELECT 1 FROM events x WHERE x.turn_id = t.id AND x.kind = 'escalated') AS escalated FROM turns t"
            " JOIN events e ON e.turn_id = t.id AND e.kind = 'route_decided'"
            " LEFT JOIN feedback f ON f.turn_id = t.id ORDER BY t.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for row in rows:
            decision = json.loads(row["payload"])["decision"]
            if decision.get("score") is None:
                continue
            good = None if row["good"] is None else bool(row["good"])
            out.append({"turn_id": row["id"], "tier": row["tier"], "score": decision["score"],
                        "override": decision.get("override"), "good": good,
                        "escalated": bool(row["escalated"]), "superseded": bool(row["superseded"])})  # fmt: skip
        return out
