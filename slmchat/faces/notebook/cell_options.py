"""The ``%%slm`` line: its options parsed by click from ``shlex`` words, and ``{name}`` filled in.

The model options keep the CLI's spelling (``-m/--model``); ``--help`` prints them all.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from slmchat.infra.errors import SlmchatError

FORMATS = ("markdown", "text", "code", "json")


@dataclass(frozen=True)
class CellOptions:
    """What a ``%%slm`` line asked for."""

    model: str | None = None
    route: str | None = None
    format: str = "markdown"
    output: str | None = None
    history: bool = True
    memory: bool = True
    tools: bool | None = None
    yes: bool = False
    explain: bool = False
    dry_run: bool = False


@click.command("%%slm", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model_arg", metavar="[MODEL]", required=False)
@click.option("-m", "--model", help="Model for this cell: backend:model, backend/model or an alias.")
@click.option("-r", "--route", type=click.Choice(["auto", "small", "large"]), help="Where this cell runs.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="markdown",
    show_default=True,
    help="markdown or text to show; code puts the answer's code in a new cell; json parses it.",
)
@click.option("-o", "--output", metavar="NAME", help="Also store the answer (or the parsed JSON) in this variable.")
@click.option("--no-history", is_flag=True, help="Send this cell without the earlier cells' exchanges.")
@click.option("--no-memory", is_flag=True, help="Nothing recalled for this cell, nothing remembered from it.")
@click.option("--tools/--no-tools", default=None, help="Offer the tools (or not) for this cell.")
@click.option("--yes", is_flag=True, help="Run tools that ask for approval (otherwise they do not run here).")
@click.option("--explain", is_flag=True, help="Show the whole routing decision under the answer.")
@click.option("--dry-run", is_flag=True, help="Route and price the cell only; no model runs.")
def cell_command(model_arg: str | None, model: str | None, fmt: str, no_history: bool, no_memory: bool,
                 **rest: Any) -> CellOptions:  # fmt: skip
    """Send the cell body as one turn; the answer streams, then a footer says where it ran and what it cost."""
    if model_arg and model:
        raise click.UsageError("give the model once: -m NAME or a bare NAME")
    return CellOptions(model=model or model_arg, format=fmt, history=not no_history, memory=not no_memory, **rest)


def parse_cell_line(line: str) -> CellOptions | str:
    """The options of a ``%%slm`` line, or the text to show instead (``--help``, or the error and usage)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise SlmchatError(f"cannot read the %%slm line: {exc}", "close the quotes") from exc
    if {"-h", "--help"} & set(words):
        return cell_command.get_help(click.Context(cell_command, info_name="%%slm"))
    try:
        return cell_command.main(words, prog_name="%%slm", standalone_mode=False)  # type: ignore[no-any-return]
    except click.UsageError as exc:
        raise SlmchatError(exc.format_message(), "%%slm --help lists the options") from exc


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_in(body: str, namespace: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``{name}`` replaced by the variable's value; unknown names and other braces stay as typed; ``{{`` and
    ``}}`` stand for ``{`` and ``}``. Returns the text and the names filled in (the footer says when they
    left the machine).
    """
    filled: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in namespace:
            return match.group(0)
        filled.append(name)
        return str(namespace[name])

    escaped = body.replace("{{", "\0").replace("}}", "\1")
    return _FIELD.sub(value, escaped).replace("\0", "{").replace("\1", "}"), filled
