"""`slmchat ask`: one question, the answer streamed to stdout (or one JSON object), then exit."""

from __future__ import annotations

import asyncio
import sys
from contextlib import aclosing
from typing import Any

import click

from slmchat.engine.events import (
    AnswerReset,
    ApprovalRequested,
    Compacted,
    Escalated,
    Event,
    RouteDecided,
    Token,
    TurnDone,
    TurnFailed,
)
from slmchat.engine.transcript import tool_line
from slmchat.faces.cli.session_options import SessionChoice, open_session, session_options
from slmchat.faces.signals import StopSignals, silence_stdout
from slmchat.faces.terminal_text import json_text, printable, replace_surrogates
from slmchat.infra.embedding import prefer_quick_load
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route
from slmchat.tools.prompt import call_text


@click.command()
@click.argument("text", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming text.")
@session_options
@click.option("--route", type=click.Choice([r.value for r in Route]), help="Force a tier, or let the router decide.")
@click.option("--tools/--no-tools", "tools", default=None, help="Offer the enabled tools (default) or not.")
@click.option("--yes", "-y", "approve_all", is_flag=True, help="Run tools that need approval without asking.")
@click.option("--no-memory", is_flag=True, help="Keep this turn out of memory: nothing recalled, nothing stored.")
@click.pass_context
def ask(
    ctx: click.Context,
    text: tuple[str, ...],
    as_json: bool,
    choice: SessionChoice,
    route: str | None,
    tools: bool | None,
    approve_all: bool,
    no_memory: bool,
) -> None:
    """Answer TEXT and exit. Piped input is added after TEXT (or is the question on its own).

    Tools that touch the outside world are asked about on the terminal; with no terminal
    they do not run unless --yes is given (or tools.approve = "always").
    """
    prompt, replaced = utf8_text(" ".join(text).strip())
    if not sys.stdin.isatty():
        piped, replaced_piped = read_piped()
        replaced = replaced or replaced_piped
        prompt = f"{prompt}\n\n{piped}" if prompt and piped else prompt or piped
    if replaced:
        click.echo(f"warning: the question had bytes that are not UTF-8; they were replaced by {REPLACEMENT}", err=True)
    if not prompt:
        raise SlmchatError("nothing to ask", 'give the question as an argument or on stdin: slmchat ask "..."')
    prefer_quick_load()  # one question: the embedding model loads fast rather than runs fast
    try:
        session = open_session(ctx, choice, approval="always" if approve_all else None)
        for problem in session.toolbox.problems:
            click.echo(f"warning: {printable(problem)}", err=True)
        try:
            code = asyncio.run(run_turn(session, prompt, route, as_json, tools, False if no_memory else None))
        except KeyboardInterrupt:
            click.echo("\n[interrupted: the partial answer is saved]", err=True)
            code = 130
        finally:
            session.close()  # a no-op when the turn closed it; after Ctrl-C it releases everything
    finally:
        prefer_quick_load(False)  # the command ran inside a longer process (tests): later embedders optimise
    ctx.exit(code)


REPLACEMENT = "\ufffd"


def utf8_text(text: str) -> tuple[str, bool]:
    """``text`` with undecodable bytes (lone surrogates, as Python hands over argv) replaced by U+FFFD.

    The second value says whether anything was replaced.
    """
    if replace_surrogates(text) == text:
        return text, False
    try:  # the bytes the user gave, decoded again: valid UTF-8 around a bad byte survives whole
        cleaned = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        cleaned = text
    return replace_surrogates(cleaned), True


def read_piped() -> tuple[str, bool]:
    """Piped stdin as text: read as bytes and decoded as UTF-8, bad bytes replaced (and said so)."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8").strip(), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").strip(), True


def _ask_on_terminal(call: Any) -> bool:
    """Ask on the controlling terminal (stdin may be the question); no terminal means no."""
    question = f"run {printable(call_text(call.name, call.arguments), one_line=True)}? [y/N] "
    try:  # unbuffered bytes: a terminal is not seekable, so a buffered "r+" text file cannot open on it
        with open("/dev/tty", "rb+", buffering=0) as tty:
            tty.write(question.encode("utf-8", "replace"))
            typed = tty.readline().decode("utf-8", "replace")
    except OSError:
        click.echo(f"[{call.name} needs approval and there is no terminal to ask: pass --yes to allow it]", err=True)
        return False
    return typed.strip().lower() in ("y", "yes")


async def run_turn(
    session: Any, prompt: str, route: str | None, as_json: bool, tools: bool | None = None, memory: bool | None = None
) -> int:
    """Run one turn and render it; the exit code (0 done, 130 interrupted). A failed turn raises.

    SIGTERM and SIGHUP end the turn as Ctrl-C does (the partial answer is stored); the code is then
    128 + the signal (143, 129) and one line on stderr says so.
    """
    render = TurnPrinter(as_json)
    code = 1
    try:
        preload(session, route)
        with StopSignals(session.cancel) as stop:
            async with aclosing(session.turn(prompt, route=route, tools=tools, memory=memory)) as events:
                async for event in events:
                    if isinstance(event, ApprovalRequested):
                        session.approve(event.request_id, _ask_on_terminal(event))
                    elif (done := render(event)) is not None:
                        code = done
                        break
            stop.note()
    finally:
        await session.aclose()
        if render.gone:  # the terminal closed under us: nothing more can be shown
            silence_stdout()
    return stop.exit_code or code


def preload(session: Any, route: str | None) -> None:
    """Start loading the small model (and the router's embedder, and memory) before the turn needs them.

    The turn routes first, then recalls, then loads the model it answers with: one after the other
    they were most of the time to the first byte. llama.cpp loads in C without the GIL, so the
    load runs beside routing and recall. A forced large turn does not wait for the small model.
    """
    if route == "large":
        return
    try:
        session.start_loading("small")
    except Exception:  # a load that cannot start is reported by the turn that needs it
        pass


class TurnPrinter:
    """Renders a turn's events: the answer to stdout, notes to stderr (or one JSON object at the end).

    stdout ends with the stored answer: when the text streamed so far is replaced by the tool
    loop's answer, that answer follows on a new line.
    """

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.line_open = False  # stdout holds text not yet ended by a newline
        self.tool_events: list[dict[str, Any]] = []
        self.gone = False  # stdout failed (the terminal closed, the pipe's reader left): write no more

    def _out(self, text: str) -> None:
        """Write model text to stdout with its control characters made visible (terminal or pipe alike)."""
        if self.gone:
            return
        try:
            sys.stdout.write(printable(text))
            sys.stdout.flush()
        except OSError:  # EIO after SIGHUP, EPIPE when `| head` has read enough: the turn still ends and is stored
            self.gone = True
            return
        if text:
            self.line_open = not text.endswith("\n")

    def _note(self, text: str) -> None:
        """A line on stderr that may carry model or server text."""
        try:
            click.echo(printable(text), err=True)
        except OSError:
            pass

    def _end_line(self) -> None:
        if self.line_open:
            self._out("\n")

    def __call__(self, event: Event) -> int | None:
        """Show one event; the exit code once the turn is over, else None."""
        if (line := tool_line(event)) is not None:
            self.tool_events.append(event.to_dict())
            if not self.as_json:
                self._end_line()
                self._note(line)
        elif isinstance(event, TurnDone):
            return self._done(event)
        elif isinstance(event, TurnFailed):
            self._end_line()
            raise SlmchatError(event.error, event.hint)
        elif self.as_json:
            return None
        elif isinstance(event, Token):
            self._out(event.text)
        elif isinstance(event, AnswerReset) and event.reason == "tool_answer":
            self._end_line()
            self._out(event.text)
        elif isinstance(event, RouteDecided) and event.decision.tier != event.decision.wanted:
            self._note(f"[{event.decision.reason}]")
        elif isinstance(event, Escalated):  # the new answer's tokens follow the note
            self._end_line()
            self._note(event.note)
        elif isinstance(event, Compacted):
            self._note(event.note)
        return None

    def _done(self, event: TurnDone) -> int:
        note = (event.stats.memory or {}).get("note")
        if self.as_json:
            click.echo(json_line({**answer_json(event), "tool_events": self.tool_events}))
        else:
            if note:
                self._note(f"[{note}]")
            self._end_line()
        return 0 if event.stats.status == "ok" else 130


def json_line(value: Any) -> str:
    """``value`` as one JSON line: readable UTF-8, every control character escaped (\\u001b, \\u009b)."""
    return json_text(value)


def _tenths(value: Any) -> Any:
    """Milliseconds and tokens/s to 0.1: the clock does not resolve the rest (the store keeps it all)."""
    return round(value, 1) if isinstance(value, float) else value


def answer_json(event: TurnDone) -> dict[str, Any]:
    """The fields of `ask --json` (docs/getting-started.md lists them)."""
    stats = event.stats
    return {
        "answer": stats.answer,
        "route": stats.route.to_dict(),
        "usage": stats.usage.to_dict(),
        "latency": {name: _tenths(value) for name, value in stats.latency.to_dict().items()},
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
