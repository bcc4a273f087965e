"""`slmchat tools list`: the tools the model may call, which ask first, and plugins that failed."""

from __future__ import annotations

import json
from typing import Any

import click

from slmchat.infra.config import load_config

#: what happens when the model calls a tool that requires approval, per ``tools.approve``
APPROVAL_TEXT = {
    "ask": "asks first",
    "always": "runs without asking: tools.approve = always",
    "never": "never runs: tools.approve = never",
}


@click.group("tools")
def tools_group() -> None:
    """The tools the model may call (from installed plugins or [tools] enabled)."""


@tools_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: tools and problems.")
def tools_list(as_json: bool) -> None:
    """The enabled tools, their compact signatures, and which ask before they run."""
    from slmchat.tools import load_tools
    from slmchat.tools.prompt import compact_signature

    config = load_config().tools
    box = load_tools(config.enabled)
    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "signature": compact_signature(spec),
            "requires_approval": spec.requires_approval,
            "approval": config.approve if spec.requires_approval else "none",
        }
        for spec in sorted(box.specs, key=lambda spec: spec.name)
    ]
    if as_json:
        click.echo(json.dumps({"tools": rows, "problems": box.problems}, indent=2, ensure_ascii=False))
        return
    for row in rows:
        note = f"  ({APPROVAL_TEXT[row['approval']]})" if row["requires_approval"] else ""
        click.echo(f"{row['signature']}{note}")
    for problem in box.problems:
        click.echo(f"warning: {problem}", err=True)
    if not rows:
        click.echo("no tools enabled (install a plugin: see docs/tools.md)")
