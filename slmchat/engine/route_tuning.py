"""Scoring prompts in bulk and calibrating the threshold: the router's tuning, for the faces.

`slmchat route score` and `slmchat route calibrate` (and later the terminal app) call these;
they never touch the router, the calibration maths or the history store themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from slmchat.engine.transcript import open_history
from slmchat.infra import paths
from slmchat.infra.config import load_config
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route, RouteContext, RouteDecision, Router
from slmchat.routing.calibrate import for_error_costs, for_share, save_threshold


def score_prompts(prompts: Iterable[str]) -> Iterator[tuple[str, RouteDecision]]:
    """Each prompt with its decision, scored as the first turn of a new conversation by the shipped router."""
    router = Router()
    models = {"small": "small", "large": "large"}
    for prompt in prompts:
        yield prompt, router.decide(RouteContext(prompt), Route.AUTO, models)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ThresholdProposal:
    """A new threshold from the user's recent turns, what it was, and why."""

    current: float
    threshold: float
    large_share: float  # the share of the user's last ``turns`` turns it would send to the large tier
    how: str  # one line: which method, on how many turns
    config_file: Path
    turns: int = 0  # the recent turns ``large_share`` is measured on
    was_set: bool = False  # ``current`` came from the config file (else it is the router's own)
    note: str | None = None  # why the share differs from the one asked for (tied scores)

    def undo(self) -> str:
        """How to go back to the threshold used before saving."""
        if self.was_set:
            return f"set threshold = {self.current:.4f} under [routing] in {self.config_file}"
        return (
            f"delete the threshold line under [routing] in {self.config_file} (the router's own is {self.current:.4f})"
        )

    def save(self) -> None:
        """Write the threshold into the config file, keeping its comments."""
        save_threshold(self.config_file, self.threshold)


def propose_threshold(large_share: float | None, error_costs: str | None, limit: int = 1000) -> ThresholdProposal:
    """Calibrate for a target large-tier share, or for the lowest cost given ``MISSED,WASTED`` error costs."""
    if (large_share is None) == (error_costs is None):
        raise SlmchatError("give exactly one of --large-share and --error-costs", "e.g. --large-share 0.2")
    turns = open_history().routed_turns(limit)
    note = None
    if large_share is not None:
        # a compare rerun asks the same question again: count each question once
        result = for_share([t["score"] for t in turns if not t["superseded"]], large_share)
        how = f"{large_share:.0%} of your last {result.turns} scored turns to the large tier"
        if abs(result.large_share - large_share) * result.turns >= 1:  # not one turn's rounding
            tied = sum(1 for t in turns if not t["superseded"] and t["score"] == result.threshold)
            note = (f"{tied} of those turns have exactly the score {result.threshold:.4f}, so they go to the same "
                    f"tier and no threshold sends {large_share:.0%}")  # fmt: skip
    else:
        try:
            missed, wasted = (float(x) for x in (error_costs or "").split(","))
        except ValueError as exc:
            raise SlmchatError(
                f"--error-costs {error_costs!r} is not MISSED,WASTED", "e.g. --error-costs 1,0.1"
            ) from exc
        result = for_error_costs(turns, missed, wasted)
        how = (f"lowest cost on {result.labelled} judged small-tier turns: {result.expected_cost:g} "
               f"(missed {missed:g} each, wasted {wasted:g} each)")  # fmt: skip
    configured = load_config().routing.threshold
    current = Router().threshold if configured is None else configured
    return ThresholdProposal(current, result.threshold, result.large_share, how, paths.config_file(), result.turns,
                             configured is not None, note)  # fmt: skip
