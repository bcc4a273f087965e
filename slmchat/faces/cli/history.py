"""`slmchat history`, `feedback` and `stats`: what was asked, how it went, what it cost."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import click

from slmchat.faces.terminal_text import printable
from slmchat.infra.errors import SlmchatError


@click.group("history")
def history_group() -> None:
    """List, show and export past conversations."""


@history_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def history_list(limit: int, as_json: bool) -> None:
    """The most recent conversations: id, last update, turns, title."""
    from slmchat.engine.transcript import open_history

    rows = open_history(readonly=True).conversations(limit)
    if as_json:
        click.echo(json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no conversations yet")
    for row in rows:
        when = datetime.fromtimestamp(row.updated_at).strftime("%Y-%m-%d %H:%M")
        title = printable(row.title, one_line=True)  # stored text is data: an escape sequence is shown, not obeyed
        click.echo(f"{row.id}  {when}  {row.turns:>3} turn{'' if row.turns == 1 else 's'}  {title}")


@history_group.command("show")
@click.argument("conversation_id", required=False)
def history_show(conversation_id: str | None) -> None:
    """Print a conversation (default: the latest) as Markdown."""
    from slmchat.engine.transcript import conversation_markdown, open_history, pick_conversation

    store = open_history(readonly=True)
    click.echo(printable(conversation_markdown(store, pick_conversation(store, conversation_id))), nl=False)


@history_group.command("export")
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

    store = open_history(readonly=True)
    cid = pick_conversation(store, conversation_id)
    text = conversation_markdown(store, cid) if fmt == "md" else dumps(conversation_json(store, cid)) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        # to a terminal, escape sequences are shown, not obeyed; to a pipe the export is exact
        click.echo(printable(text) if click.get_text_stream("stdout").isatty() else text, nl=False)


@click.command()
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


@click.command()
@click.option("--since", help="First day to count, YYYY-MM-DD (default: everything).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every model call as CSV.")
def stats(since: str | None, as_json: bool, as_csv: bool) -> None:
    """Turns per tier, escalations, overrides, spend, savings, latency and TTFT percentiles."""
    from slmchat.accounting.stats import render, summarize, to_csv
    from slmchat.engine.transcript import open_history

    if as_json and as_csv:
        raise SlmchatError(
            "--json and --csv cannot be used together", "give --json for the summary or --csv for every call"
        )
    start = 0.0
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").timestamp()
        except ValueError as exc:
            raise SlmchatError(f"--since {since!r} is not a date", "write it as YYYY-MM-DD") from exc
    calls = open_history(readonly=True).call_rows(start)
    if as_csv:
        click.echo(to_csv(calls), nl=False)
    elif as_json:
        click.echo(json.dumps(summarize(calls), indent=2))
    else:
        click.echo(render(summarize(calls)))
