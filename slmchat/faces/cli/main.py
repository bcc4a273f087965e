"""The `slmchat` group: the chat when no command is given, and the commands beside it.

Each command lives in its own module here; `eval` is imported only when used.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any, ClassVar

import click

from slmchat import __version__
from slmchat.faces.cli.ask import ask
from slmchat.faces.cli.config import config_group
from slmchat.faces.cli.doctor import doctor
from slmchat.faces.cli.history import feedback, history_group, stats
from slmchat.faces.cli.keys import keys_group
from slmchat.faces.cli.memory import memory_group
from slmchat.faces.cli.models import models
from slmchat.faces.cli.route import route_group
from slmchat.faces.cli.session_options import SessionChoice, open_session, session_options
from slmchat.faces.cli.tools import tools_group
from slmchat.infra.config import load_config
from slmchat.infra.errors import SlmchatError


class SlmchatGroup(click.Group):
    """Turns user errors into one line on stderr (a traceback only with --debug).

    Groups named in ``lazy`` are imported only when used: `slmchat eval` lives in the
    evaluation package, which the runtime never imports.
    """

    lazy: ClassVar[dict[str, str]] = {"eval": "slmchat.eval.cli:eval_group"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SlmchatError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"  fix: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=SlmchatGroup, invoke_without_command=True)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@session_options
@click.version_option(__version__, prog_name="slmchat")
@click.pass_context
def main(ctx: click.Context, debug: bool, choice: SessionChoice) -> None:
    """Chat with a small local model that escalates to a large one when needed.

    With no command, opens the terminal app (or the plain chat, `slmchat repl`, when the
    config says face = "repl" or this is not a terminal); -m, -s, -c and --cid apply to it.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ctx.invoked_subcommand is not None:
        if choice.given:
            raise SlmchatError(
                f"-m, -s, -c and --cid before `{ctx.invoked_subcommand}` are options of the chat",
                "for one question put them after ask (slmchat ask -m NAME ...); for the chat give no command",
            )
        return
    if _wants_app():
        from slmchat.faces.tui.run import run_app

        run_app(lambda: open_session(ctx, choice), debug=debug)
        return
    _run_repl(ctx, choice)


def _wants_app() -> bool:
    """The app when the config asks for it and both ends are a terminal; the plain chat otherwise."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    return load_config().tui.face == "app"


def _run_repl(ctx: click.Context, choice: SessionChoice) -> None:
    from slmchat.faces.repl import run_repl

    asyncio.run(run_repl(open_session(ctx, choice)))


@click.command("repl")
@session_options
@click.pass_context
def repl(ctx: click.Context, choice: SessionChoice) -> None:
    """The plain chat (prompt-toolkit): for plain terminals, pipes and screen readers."""
    _run_repl(ctx, choice)


COMMANDS = (ask, config_group, doctor, feedback, history_group, keys_group, memory_group, models, repl, route_group)
for command in (*COMMANDS, stats, tools_group):
    main.add_command(command)
