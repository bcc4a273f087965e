"""`slmchat route`: score prompts in bulk (and, later, calibrate the threshold)."""

from __future__ import annotations

import json
import sys

import click

from slmchat.errors import SlmchatError


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
