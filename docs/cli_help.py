"""The command reference in docs/cli.md, written from the CLI itself by cog.

Regenerate after changing a command: ``cog -r docs/cli.md``. CI runs ``cog --check docs/cli.md``,
which fails when the page and ``slmchat … --help`` differ.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from slmchat.faces.cli import main

WIDTH = 100  # fixed, so the page does not depend on the terminal it was made in


def commands(command: click.Command = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path, depth first, in the order `--help` lists them."""
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=" ".join(("slmchat", *path)))
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="slmchat", terminal_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"slmchat {' '.join(path)} --help failed: {result.output}")
    return result.output.rstrip() + "\n"


def reference() -> str:
    """One section per command: its name as a heading, then its help as printed."""
    parts = []
    for path in commands():
        name = " ".join(("slmchat", *path))
        parts.append(f"\n## `{name}`\n\n```text\n{help_text(path)}```\n")
    return "".join(parts)
