"""The `slmchat` group: the chat when no command is given, and the commands beside it.

Each command lives in its own module here, imported only when that command runs (or help lists
them): `slmchat ask` loads `ask` and what a turn needs, not the other commands' modules.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import traceback
from typing import Any, ClassVar

import click

from slmchat import __version__
from slmchat.faces.cli.ask import ask
from slmchat.faces.cli.session_options import SessionChoice, open_session, session_options
from slmchat.faces.signals import say
from slmchat.faces.terminal_text import printable
from slmchat.infra.config import load_config
from slmchat.infra.errors import SlmchatError
from slmchat.infra.redact import redact


class SlmchatGroup(click.Group):
    """Turns user errors into one line on stderr (a traceback only with --debug, its keys masked).

    Ctrl-C outside a turn ends the command with 130 and one line, never a traceback; Ctrl-C or
    end of input at a question (click's "Aborted!") says which command stopped.

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
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except click.exceptions.Abort as exc:  # Ctrl-C or Ctrl-D at click.prompt / click.confirm
            say(f"aborted: `{_command(ctx)}` stopped at its question; nothing was changed")
            ctx.exit(130 if isinstance(exc.__context__, KeyboardInterrupt) else 1)
        except KeyboardInterrupt:
            say(f"\n[interrupted: `{_command(ctx)}` stopped]")
            ctx.exit(130)
        except SlmchatError as exc:
            if debug:
                _traceback(exc)
            else:
                say(f"error: {printable(exc.message)}")
                if exc.hint:
                    say(f"  fix: {printable(exc.hint)}")
            ctx.exit(exc.exit_code)
        except Exception as exc:  # a bug: one line, or with --debug the traceback, masked either way
            if debug:
                _traceback(exc)
            else:
                say(f"error: unexpected error: {type(exc).__name__}: {printable(redact(str(exc)), one_line=True)}")
                say("  fix: run again with --debug for the traceback, and report it")
            ctx.exit(1)


def _command(ctx: click.Context) -> str:
    return " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))


def _traceback(exc: BaseException) -> None:
    """The traceback Python would print, with keys masked (a server may echo one into an error)."""
    say(printable(redact("".join(traceback.format_exception(exc)))).rstrip("\n"))


class _Slmchat(SlmchatGroup):
    """The `slmchat` group: every command but `ask` and `repl` is imported when used."""

    lazy: ClassVar[dict[str, str]] = {
        **SlmchatGroup.lazy,
        "config": "slmchat.faces.cli.config:config_group",
        "doctor": "slmchat.faces.cli.doctor:doctor",
        "feedback": "slmchat.faces.cli.history:feedback",
        "history": "slmchat.faces.cli.history:history_group",
        "keys": "slmchat.faces.cli.keys:keys_group",
        "memory": "slmchat.faces.cli.memory:memory_group",
        "models": "slmchat.faces.cli.models:models",
        "route": "slmchat.faces.cli.route:route_group",
        "stats": "slmchat.faces.cli.history:stats",
        "tools": "slmchat.faces.cli.tools:tools_group",
    }


@click.group(cls=_Slmchat, invoke_without_command=True)
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

        ctx.exit(run_app(lambda: open_session(ctx, choice), debug=debug))
    _run_repl(ctx, choice)


def _wants_app() -> bool:
    """The app when the config asks for it and both ends are a terminal; the plain chat otherwise."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    return load_config().tui.face == "app"


def _run_repl(ctx: click.Context, choice: SessionChoice) -> None:
    """The plain chat; exits 128 + the signal when SIGTERM or SIGHUP ended it."""
    from slmchat.faces.repl import run_repl

    ctx.exit(asyncio.run(run_repl(open_session(ctx, choice))))


@click.command("repl")
@session_options
@click.pass_context
def repl(ctx: click.Context, choice: SessionChoice) -> None:
    """The plain chat (prompt-toolkit): for plain terminals, pipes and screen readers."""
    _run_repl(ctx, choice)


main.add_command(ask)
main.add_command(repl)
