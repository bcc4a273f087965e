"""The `slmchat` command: the REPL by default, plus ask, config, history and doctor."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any, ClassVar

import click

from slmchat import __version__
from slmchat.engine.events import ApprovalRequested, Compacted, Escalated, RouteDecided, Token, TurnDone, TurnFailed
from slmchat.engine.transcript import tool_line
from slmchat.infra import paths
from slmchat.infra.config import load_config, write_template
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route
from slmchat.tools.prompt import call_text


class SlmchatGroup(click.Group):
    """Turns user errors into one line on stderr (a traceback only with --debug).

    Groups named in ``lazy`` are imported only when used: `slmchat eval` lives in the
    evaluation package, which the runtime never imports.
    """

    lazy: ClassVar[dict[str, str]] = {"eval": "slmchat.eval.cli:eval_group"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

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


def _session(ctx: click.Context, **kwargs: Any) -> Any:
    from slmchat.engine.session import Session

    return Session(load_config(), debug=ctx.obj["debug"], **kwargs)


@click.group(cls=SlmchatGroup, invoke_without_command=True)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="slmchat")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Chat with a small local model that escalates to a large one when needed.

    With no command, opens the interactive chat.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ctx.invoked_subcommand is None:
        from slmchat.faces.repl import run_repl

        session = _session(ctx)
        asyncio.run(run_repl(session))


@main.command()
@click.argument("text", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming text.")
@click.option("--model", help="Model for the small tier, as backend:model or an alias.")
@click.option("--route", type=click.Choice([r.value for r in Route]), help="Force a tier, or let the router decide.")
@click.option("--new/--continue", "new", default=True, help="Start a new conversation (default) or continue the last.")
@click.option("--conversation", "conversation_id", help="Continue the conversation with this id.")
@click.option("--tools/--no-tools", "tools", default=None, help="Offer the enabled tools (default) or not.")
@click.option("--yes", "-y", "approve_all", is_flag=True, help="Run tools that need approval without asking.")
@click.option("--no-memory", is_flag=True, help="Keep this turn out of memory: nothing recalled, nothing stored.")
@click.pass_context
def ask(
    ctx: click.Context,
    text: tuple[str, ...],
    as_json: bool,
    model: str | None,
    route: str | None,
    new: bool,
    conversation_id: str | None,
    tools: bool | None,
    approve_all: bool,
    no_memory: bool,
) -> None:
    """Answer TEXT and exit. Piped input is added after TEXT (or is the question on its own).

    Tools that touch the outside world are asked about on the terminal; with no terminal
    they do not run unless --yes is given (or tools.approve = "always").
    """
    prompt = " ".join(text).strip()
    if not sys.stdin.isatty():
        piped = sys.stdin.read().strip()
        prompt = f"{prompt}\n\n{piped}" if prompt and piped else prompt or piped
    if not prompt:
        raise SlmchatError("nothing to ask", 'give the question as an argument or on stdin: slmchat ask "..."')
    session = _session(
        ctx, conversation_id=conversation_id, resume_latest=not new, approval="always" if approve_all else None
    )
    if model:
        session.set_model("small", model)
    for problem in session.toolbox.problems:
        click.echo(f"warning: {problem}", err=True)
    try:
        code = asyncio.run(_ask(session, prompt, route, as_json, tools, False if no_memory else None))
    except KeyboardInterrupt:
        click.echo("\n[interrupted: the partial answer is saved]", err=True)
        code = 130
    finally:
        session.close()  # a no-op when the turn closed it; after Ctrl-C it releases everything
    ctx.exit(code)


def _ask_on_terminal(call: Any) -> bool:
    """Ask on the controlling terminal (stdin may be the question); no terminal means no."""
    question = f"run {call_text(call.name, call.arguments)}? [y/N] "
    try:
        with open("/dev/tty", "r+", encoding="utf-8") as tty:
            tty.write(question)
            tty.flush()
            return tty.readline().strip().lower() in ("y", "yes")
    except OSError:
        click.echo(f"[{call.name} needs approval and there is no terminal to ask: pass --yes to allow it]", err=True)
        return False


async def _ask(
    session: Any, prompt: str, route: str | None, as_json: bool, tools: bool | None = None, memory: bool | None = None
) -> int:
    streamed = False
    tool_events: list[dict[str, Any]] = []
    try:
        async with aclosing(session.turn(prompt, route=route, tools=tools, memory=memory)) as events:
            async for event in events:
                if isinstance(event, ApprovalRequested):
                    session.approve(event.request_id, _ask_on_terminal(event))
                elif (line := tool_line(event)) is not None:
                    tool_events.append(event.to_dict())
                    if not as_json:
                        click.echo(("\n" if streamed else "") + line, err=True)
                        streamed = False
                elif isinstance(event, Token) and not as_json:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    streamed = True
                elif isinstance(event, RouteDecided) and not as_json and event.decision.tier != event.decision.wanted:
                    click.echo(f"[{event.decision.reason}]", err=True)
                elif isinstance(event, Escalated) and not as_json:
                    if streamed:
                        sys.stdout.write("\n")
                    click.echo(event.note, err=True)
                elif isinstance(event, Compacted) and not as_json:
                    click.echo(event.note, err=True)
                elif isinstance(event, TurnDone):
                    note = (event.stats.memory or {}).get("note")
                    if note and not as_json:
                        click.echo(f"[{note}]", err=True)
                    if as_json:
                        click.echo(json.dumps({**_ask_json(event), "tool_events": tool_events}, ensure_ascii=False))
                    elif streamed:
                        sys.stdout.write("\n")
                    return 0 if event.stats.status == "ok" else 130
                elif isinstance(event, TurnFailed):
                    if streamed:
                        sys.stdout.write("\n")
                    raise SlmchatError(event.error, event.hint)
    finally:
        await session.aclose()
    return 1


def _ask_json(event: TurnDone) -> dict[str, Any]:
    stats = event.stats
    return {
        "answer": stats.answer,
        "route": stats.route.to_dict(),
        "usage": stats.usage.to_dict(),
        "latency": stats.latency.to_dict(),
        "status": stats.status,
        "cost": stats.cost.to_dict() if stats.cost else None,
        "escalation": stats.escalation,
        "answered_by": stats.answered_by,
        "tools": stats.tools,
        "memory": stats.memory,
        "history_dropped": stats.history_dropped,
        "history_shortened": stats.history_shortened,
        "conversation_id": stats.conversation_id,
        "turn_id": stats.turn_id,
    }


@main.group()
def config() -> None:
    """Show or create the configuration file."""


@config.command("path")
def config_path() -> None:
    """Print where the config file is (or would be)."""
    click.echo(str(paths.config_file()))


@config.command("show")
def config_show() -> None:
    """Print the effective configuration (file, defaults and SLMCHAT_* overrides) as JSON."""
    click.echo(json.dumps(load_config().model_dump(mode="json"), indent=2))


@config.command("init")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def config_init(force: bool) -> None:
    """Write a commented config file with every default."""
    click.echo(f"wrote {write_template(force=force)}")


@main.group()
def history() -> None:
    """List, show and export past conversations."""


@history.command("list")
@click.option("--limit", default=20, show_default=True)
def history_list(limit: int) -> None:
    """The most recent conversations."""
    from datetime import datetime

    from slmchat.engine.transcript import open_history

    rows = open_history().conversations(limit)
    if not rows:
        click.echo("no conversations yet")
    for row in rows:
        when = datetime.fromtimestamp(row.updated_at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{row.id}  {when}  {row.turns:>3} turn{'' if row.turns == 1 else 's'}  {row.title}")


@history.command("show")
@click.argument("conversation_id", required=False)
def history_show(conversation_id: str | None) -> None:
    """Print a conversation (default: the latest) as Markdown."""
    from slmchat.engine.transcript import conversation_markdown, open_history, pick_conversation

    store = open_history()
    click.echo(conversation_markdown(store, pick_conversation(store, conversation_id)), nl=False)


@history.command("export")
@click.argument("conversation_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def history_export(conversation_id: str | None, fmt: str, output: Path | None) -> None:
    """Export a conversation (default: the latest) as Markdown or JSON."""
    from slmchat.engine.transcript import (
        conversation_json,
        conversation_markdown,
        dumps,
        open_history,
        pick_conversation,
    )

    store = open_history()
    cid = pick_conversation(store, conversation_id)
    text = conversation_markdown(store, cid) if fmt == "md" else dumps(conversation_json(store, cid)) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("verdict", type=click.Choice(["good", "bad"]))
@click.option("--turn", "turn_id", type=int, help="The turn to judge (default: the latest).")
def feedback(verdict: str, turn_id: int | None) -> None:
    """Judge an answer good or bad; `slmchat route calibrate --error-costs` learns from it."""
    from slmchat.engine.transcript import open_history

    store = open_history()
    turn_id = turn_id or store.latest_turn_id()
    if turn_id is None:
        raise SlmchatError("there is no answer to judge yet", 'ask something first: slmchat ask "..."')
    store.set_feedback(turn_id, verdict == "good")
    click.echo(f"noted: turn {turn_id} was {verdict}")


@main.command()
@click.option("--since", help="First day to count, YYYY-MM-DD (default: everything).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every model call as CSV.")
def stats(since: str | None, as_json: bool, as_csv: bool) -> None:
    """Turns per tier, escalations, overrides, spend, savings, latency and TTFT percentiles."""
    from datetime import datetime

    from slmchat.accounting.stats import render, summarize, to_csv
    from slmchat.engine.transcript import open_history

    start = 0.0
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").timestamp()
        except ValueError as exc:
            raise SlmchatError(f"--since {since!r} is not a date", "write it as YYYY-MM-DD") from exc
    calls = open_history().call_rows(start)
    if as_csv:
        click.echo(to_csv(calls), nl=False)
    elif as_json:
        click.echo(json.dumps(summarize(calls), indent=2))
    else:
        click.echo(render(summarize(calls)))


def _add_groups() -> None:
    from slmchat.faces.cli.keys import keys_group
    from slmchat.faces.cli.memory import memory_group
    from slmchat.faces.cli.route import route_group

    main.add_command(keys_group)
    main.add_command(memory_group)
    main.add_command(route_group)


@main.command()
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


_add_groups()
