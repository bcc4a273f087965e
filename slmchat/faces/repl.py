"""The plain interactive chat (prompt-toolkit): history, multi-line input, events as text.

Slash lines go to the command layer (``slmchat.engine.commands``); this module only prints
what comes back. Enter sends; Alt-Enter (or Esc then Enter) starts a new line. Ctrl-C stops
an answer (the partial answer is kept), Ctrl-D or /quit leaves. SIGTERM and SIGHUP (the terminal
closed) stop the answer as Ctrl-C does and then leave. Everything printed goes through
``terminal_text.printable``: an answer's escape sequences are shown, never obeyed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings

from slmchat.engine.commands import (
    Command,
    CommandResult,
    Facts,
    Help,
    Matches,
    Models,
    Prompt,
    Tools,
    forget_confirmed,
    parse_command,
    run_command,
)
from slmchat.engine.events import (
    AnswerReset,
    ApprovalRequested,
    Compacted,
    Escalated,
    RouteDecided,
    Token,
    TurnDone,
    TurnFailed,
)
from slmchat.engine.session import Session
from slmchat.engine.transcript import stats_line, tool_line
from slmchat.faces.process import freeze_loaded_objects
from slmchat.faces.signals import StopSignals
from slmchat.faces.terminal_text import printable
from slmchat.infra import paths
from slmchat.routing import Route
from slmchat.tools.prompt import call_text

#: the REPL's own keys, shown after the commands in /help
KEYS = "Enter sends, Alt-Enter adds a line, Ctrl-C stops an answer, Ctrl-D leaves."


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return keys


class Repl:
    """Reads input, runs turns through the session, prints tokens as they come."""

    def __init__(self, session: Session, prompt: PromptSession[str], out: TextIO) -> None:
        self.session = session
        self.prompt = prompt
        self.out = out
        self.last_stats = ""
        self.memory_note: str | None = None
        self.answered = False  # a first answer came (the process has loaded what it needs)
        self.answering = False
        self.gone = False  # the output failed (the terminal closed): write no more
        self.stop = StopSignals(self._stop)

    async def approve(self, request: ApprovalRequested) -> None:
        """Ask before a tool that touches the outside world runs; Ctrl-C or Enter mean no."""
        try:
            reply = await self.prompt.prompt_async(f"\nrun {call_text(request.name, request.arguments)}? [y/N] ")
        except (KeyboardInterrupt, EOFError):
            reply = ""
        self.session.approve(request.request_id, reply.strip().lower() in ("y", "yes"))

    def write(self, text: str) -> None:
        """Write to the terminal with control characters made visible: answers and stored text are data."""
        if self.gone:
            return
        try:
            self.out.write(printable(text))
            self.out.flush()
        except OSError:  # EIO after SIGHUP: the answer still ends and is stored
            self.gone = True

    def _stop(self) -> None:
        """SIGTERM or SIGHUP: stop the answer (it is kept) or leave the prompt; ``run`` then returns."""
        self.session.cancel()
        if self.prompt.app.is_running:
            self.prompt.app.exit(exception=EOFError())

    def toolbar(self) -> str:
        route = self.session.route.value
        return f" {self.last_stats or self.session.status} | route: {route} | /help"

    async def run(self) -> int:
        """Chat until /quit, end of input or a stop signal; the exit code (128 + the signal, else 0)."""
        with self.stop:
            await self._chat()
            self.stop.note("the partial answer is saved" if self.answering else "the chat is closed")
        return self.stop.exit_code

    async def _chat(self) -> None:
        self.write(
            f"slmchat: {self.session.model_name('small')} (small)"
            f"{', ' + str(self.session.model_name('large')) + ' (large)' if self.session.model_name('large') else ''}"
            " — /help for commands\n"
        )
        self.preload()
        while self.stop.received is None:
            try:
                text = await self.prompt.prompt_async("› ", bottom_toolbar=self.toolbar)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            except OSError:
                if self.stop.received is not None:  # the terminal is gone (SIGHUP)
                    break
                raise
            parsed = parse_command(text)
            if isinstance(parsed, Prompt):
                if parsed.text:
                    await self.answer(parsed.text, parsed.route)
                continue
            result = await run_command(self.session, parsed) if isinstance(parsed, Command) else parsed
            if result.quits:
                break
            await self.show(result)

    def preload(self) -> None:
        """Load the small model in the background; a failure is reported by the next turn."""
        loading = self.session.start_loading("small")
        loading.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def show(self, result: CommandResult) -> None:
        """Print a command's result; /forget asks before its second step."""
        if not result.ok:
            self.write(f"error: {result.message}\n" + (f"  fix: {result.hint}\n" if result.hint else ""))
        elif isinstance(result, Help):
            self.write(f"{result.text}\n{KEYS}\n")
        elif isinstance(result, Models) and result.changed:
            self.write(result.message + "\n")
            self.last_stats = ""  # the toolbar shows the new model loading
            self.preload()
        elif isinstance(result, Models):
            for tier, model in (("small", result.small), ("large", result.large)):
                self.write(f"{tier}: {model or '(not configured)'}\n")
        elif isinstance(result, Tools):
            for tool in result.tools:
                self.write(f"  {tool.signature}{'  (asks first)' if tool.asks_first else ''}\n")
            for problem in result.problems:
                self.write(f"  warning: {problem}\n")
            self.write(result.message + "\n")
        elif isinstance(result, Facts):
            for fact in result.facts:
                self.write(f"  {fact.text}\n")
            self.write(result.message + "\n")
        elif isinstance(result, Matches) and result.hits:
            await self.forget(result)
        else:
            self.write(result.message + "\n")

    async def forget(self, matches: Matches) -> None:
        """The second step of /forget: delete the matches only if the user says yes."""
        for hit in matches.hits:
            self.write(f"  {hit.item.kind}: {hit.item.text}\n")
        try:
            reply = await self.prompt.prompt_async(f"{matches.question} [y/N] ")
        except (KeyboardInterrupt, EOFError):
            reply = ""
        yes = reply.strip().lower() in ("y", "yes")
        await self.show(await forget_confirmed(self.session, matches.ids if yes else ()))

    async def answer(self, text: str, route: Route | None = None) -> None:
        restore = _on_sigint(self.session.cancel)
        self.answering = True
        try:
            async with aclosing(self.session.turn(text, route=route)) as events:
                async for event in events:
                    if isinstance(event, RouteDecided) and event.decision.tier != event.decision.wanted:
                        self.write(f"[{event.decision.reason}]\n")
                    elif isinstance(event, Token):
                        self.write(event.text)
                    elif isinstance(event, ApprovalRequested):
                        await self.approve(event)
                    elif isinstance(event, AnswerReset):
                        if event.reason == "tool_answer":  # the answer that was stored replaces what streamed
                            self.write("\n" + event.text)
                    elif (line := tool_line(event)) is not None:
                        self.write(line + "\n")
                    elif isinstance(event, Escalated | Compacted):
                        self.write(f"\n{event.note}\n")
                    elif isinstance(event, TurnDone):
                        if not self.answered:  # everything is loaded now: keep it out of the GC's scans
                            freeze_loaded_objects()
                            self.answered = True
                        note = (event.stats.memory or {}).get("note")
                        if note and note != self.memory_note:  # said once, not after every turn
                            self.write(f"\n[{note}]")
                        self.memory_note = note
                        self.last_stats = stats_line(event.stats)
                        self.write("\n" + ("[interrupted]\n" if event.stats.status == "interrupted" else ""))
                    elif isinstance(event, TurnFailed):
                        self.last_stats = f"last turn failed: {event.error}"
                        self.write(("\n" if event.partial else "") + f"error: {event.error}\n")
                        if event.hint:
                            self.write(f"  fix: {event.hint}\n")
        finally:
            restore()
            self.answering = self.stop.received is not None  # what a stop signal interrupted, for its note


def _on_sigint(callback: Callable[[], None]) -> Callable[[], None]:
    """Route Ctrl-C to ``callback`` while an answer streams; returns the undo."""
    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGINT)


def _history() -> History:
    try:
        paths.data_dir().mkdir(parents=True, exist_ok=True)
        return FileHistory(str(paths.data_dir() / "repl_history"))
    except OSError:
        return InMemoryHistory()


def make_prompt(**kwargs: Any) -> PromptSession[str]:
    """The input line: file-backed history, Enter sends, Alt-Enter adds a line."""
    kwargs.setdefault("history", _history())
    return PromptSession(key_bindings=_bindings(), multiline=False, **kwargs)


async def run_repl(session: Session, prompt: PromptSession[str] | None = None, out: TextIO | None = None) -> int:
    """Run the chat until /quit, end of input or SIGTERM/SIGHUP; the exit code (0, or 128 + the signal)."""
    prompt = prompt or make_prompt()
    try:
        return await Repl(session, prompt, out or sys.stdout).run()
    finally:
        await session.aclose()
