"""Choosing the threshold from the user's own turns.

Two ways, as RouteLLM does it and as cost-sensitive classification does it:
- ``for_share``: the threshold that would have sent a given share of recent turns to the
  large tier (a quantile of their scores);
- ``for_error_costs``: the threshold with the lowest cost on turns the small tier answered
  and the user judged: a bad (or escalated) answer below the threshold costs ``missed``; a
  good one above it costs ``wasted`` (a large-tier call that was not needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmchat.infra.errors import SlmchatError


@dataclass(frozen=True)
class Calibration:
    threshold: float
    turns: int  # turns it was computed from
    large_share: float  # share of those turns at or above the threshold
    labelled: int = 0  # judged small-tier turns used (error-cost method)
    expected_cost: float | None = None  # in the user's units (error-cost method)


def for_share(scores: Sequence[float], share: float) -> Calibration:
    if not 0 <= share <= 1:
        raise SlmchatError(f"--large-share must be between 0 and 1, not {share}", "e.g. --large-share 0.2")
    values = np.asarray(scores, dtype=float)
    if len(values) < 10:
        raise SlmchatError(
            f"only {len(values)} scored turns to calibrate from", "chat a while first (at least 10 turns)"
        )
    threshold = 1.0 if share == 0 else float(np.quantile(values, 1 - share, method="higher"))
    return Calibration(round(threshold, 4), len(values), float(np.mean(values >= threshold)))


def for_error_costs(turns: Sequence[dict[str, Any]], missed: float, wasted: float) -> Calibration:
    """``turns`` as from ``Store.routed_turns``; only small-tier turns with a verdict count."""
    judged = [t for t in turns if t["tier"] == "small" and (t["good"] is not None or t["escalated"])]
    if len(judged) < 5:
        raise SlmchatError(
            f"only {len(judged)} judged small-tier turns to learn from",
            "mark answers with /good and /bad in the chat (or `slmchat feedback`), at least 5",
        )
    scores = np.array([t["score"] for t in judged], dtype=float)
    needed_large = np.array([t["escalated"] or t["good"] is False for t in judged])
    candidates = np.unique(np.concatenate([scores, [0.0, 1.0 + 1e-9]]))
    costs = [
        missed * np.sum(needed_large & (scores < c)) + wasted * np.sum(~needed_large & (scores >= c))
        for c in candidates
    ]
    best = int(np.argmin(costs))  # ties: the lowest threshold, i.e. the safer one
    threshold = float(min(candidates[best], 1.0))
    all_scores = np.array([t["score"] for t in turns], dtype=float)
    return Calibration(
        round(threshold, 4), len(turns), float(np.mean(all_scores >= threshold)), len(judged), float(costs[best])
    )


def save_threshold(path: Path, threshold: float) -> None:
    """Set ``[routing] threshold`` in the config file, keeping its comments and layout."""
    import tomlkit

    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    routing = document.get("routing")
    if routing is None:
        routing = tomlkit.table()
        document["routing"] = routing
    routing["threshold"] = threshold
    path.parent.mkdir(parents=True, exist_ok=True)
    text = tomlkit.dumps(document)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
