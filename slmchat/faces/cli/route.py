"""`slmchat route`: score prompts in bulk and calibrate the threshold."""

from __future__ import annotations

import json
import sys

import click

from slmchat.infra.errors import SlmchatError


@click.group("route")
def route_group() -> None:
    """Inspect and tune the router."""


@route_group.command("score")
def score() -> None:
    """Read {"prompt": ...} JSON lines on stdin; write {"prompt", "score", "factors"} lines.

    Each prompt is scored as the first turn of a new conversation with the default configuration.
    """
    from slmchat.routing import Route, RouteContext, Router

    router = Router()
    models = {"small": "small", "large": "large"}
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
            if not isinstance(prompt, str):
                raise TypeError
        except (ValueError, KeyError, TypeError) as exc:
            raise SlmchatError(
                f'line {number} of stdin is not a JSON object with a string "prompt"',
                'give one object per line, e.g. {"prompt": "What is 2 + 2?"}',
            ) from exc
        decision = router.decide(RouteContext(prompt), Route.AUTO, models)  # type: ignore[arg-type]
        out = {"prompt": prompt, "score": decision.score, "factors": decision.factors}
        click.echo(json.dumps(out, ensure_ascii=False))


@route_group.command("calibrate")
@click.option("--large-share", type=float, help="Send this share of turns to the large tier (e.g. 0.2).")
@click.option("--error-costs", help="MISSED,WASTED: cost of a bad small answer, of an unneeded large call.")
@click.option("--turns", "limit", default=1000, show_default=True, help="How many recent turns to learn from.")
@click.option("--yes", is_flag=True, help="Save without asking.")
def calibrate(large_share: float | None, error_costs: str | None, limit: int, yes: bool) -> None:
    """Set the routing threshold from your recent turns (shows the effect before saving)."""
    from slmchat.engine.transcript import open_history
    from slmchat.infra import paths
    from slmchat.infra.config import load_config
    from slmchat.routing.calibrate import for_error_costs, for_share, save_threshold
    from slmchat.routing.policy import Router

    if (large_share is None) == (error_costs is None):
        raise SlmchatError("give exactly one of --large-share and --error-costs", "e.g. --large-share 0.2")
    turns = open_history().routed_turns(limit)
    if large_share is not None:
        result = for_share([t["score"] for t in turns], large_share)
        how = f"{large_share:.0%} of your last {result.turns} scored turns to the large tier"
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
    current = load_config().routing.threshold
    current = Router().threshold if current is None else current
    click.echo(f"threshold {current:.4f} -> {result.threshold:.4f}: {how}")
    click.echo(f"expected large-tier share on those turns: {result.large_share:.1%}")
    click.echo("expected spend: not estimated (slmchat does not forecast token use; see the budget caps)")
    if yes or click.confirm(f"save it to {paths.config_file()}?", default=False):
        save_threshold(paths.config_file(), result.threshold)
        click.echo("saved")
