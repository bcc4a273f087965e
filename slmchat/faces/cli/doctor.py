"""`slmchat doctor`: one line per check, with the fix under each problem."""

from __future__ import annotations

import asyncio
import sys

import click


@click.command()
def doctor() -> None:
    """Check what is installed and reachable, and say how to fix what is not."""
    from slmchat.engine.doctor import run_checks

    checks = asyncio.run(run_checks())
    failed = False
    for check in checks:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[check.level]
        click.echo(f"{mark}  {check.name}: {check.detail}")
        if check.fix and check.level != "ok":
            click.echo(f"      fix: {check.fix}")
        failed |= check.level == "fail"
    sys.exit(1 if failed else 0)
