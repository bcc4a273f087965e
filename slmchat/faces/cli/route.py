"""`slmchat route`: score prompts in bulk and calibrate the threshold."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator

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
    from slmchat.engine.route_tuning import score_prompts

    for prompt, decision in score_prompts(_prompts(sys.stdin)):
        out = {"prompt": prompt, "score": decision.score, "factors": decision.factors}
        click.echo(json.dumps(out, ensure_ascii=False))


def _prompts(lines: Iterable[str]) -> Iterator[str]:
    """The "prompt" of each JSON line; a bad line stops with its number and the expected form."""
    for number, line in enumerate(lines, start=1):
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
        yield prompt


@route_group.command("calibrate")
@click.option("--large-share", type=float, help="Send this share of turns to the large tier (e.g. 0.2).")
@click.option("--error-costs", help="MISSED,WASTED: cost of a bad small answer, of an unneeded large call.")
@click.option("--turns", "limit", default=1000, show_default=True, help="How many recent turns to learn from.")
@click.option("--yes", is_flag=True, help="Save without asking.")
def calibrate(large_share: float | None, error_costs: str | None, limit: int, yes: bool) -> None:
    """Set the routing threshold from your recent turns (shows the effect before saving)."""
    from slmchat.engine.route_tuning import propose_threshold

    proposal = propose_threshold(large_share, error_costs, limit)
    click.echo(f"threshold {proposal.current:.4f} -> {proposal.threshold:.4f}: {proposal.how}")
    click.echo(f"expected large-tier share on your last {proposal.turns} turns: {proposal.large_share:.1%}")
    if proposal.note:
        click.echo(f"({proposal.note})")
    click.echo("expected spend: not estimated (slmchat does not forecast token use; see the budget caps)")
    if yes or click.confirm(f"save it to {proposal.config_file}?", default=False):
        proposal.save()
        click.echo(f"saved: [routing] threshold = {proposal.threshold:.4f} in {proposal.config_file}")
        click.echo(f"to undo: {proposal.undo()}")
    else:
        click.echo("not saved")
