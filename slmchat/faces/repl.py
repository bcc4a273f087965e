"""The plain interactive chat (prompt-toolkit): history, multi-line input, slash commands.

Enter sends; Alt-Enter (or Esc then Enter) starts a new line. Ctrl-C stops an answer
(the partial answer is kept), Ctrl-D or /quit leaves.
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

from slmchat.engine.events import (
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
from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError
from slmchat.routing import Route
from slmchat.tools.prompt import call_text, compact_signature

HELP = """\
commands:
  /help                 this text
  /new                  start a new conversation
  /model [NAME]         show the models, or use NAME (backend:model) for the small tier
  /route [auto|small|large]  show or set the route for the following turns
  /large TEXT, /small TEXT   send this one message to that tier
  /good, /bad           judge the last answer (calibration learns from it)
  /tools [on|off]       list the tools, or offer them (on) or not (off) from now on
  /remember TEXT        remember a fact about you ("I prefer metric units")
  /forget QUERY         show the memories matching QUERY and delete them if you say so
  /memory [on|off]      show what is remembered, or use memory (on) or not (off) from now on
  /quit                 leave (Ctrl-D works too)
Enter sends, Alt-Enter adds a line, Ctrl-C stops an answer."""


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

    async def approve(self, request: ApprovalRequested) -> None:
        """Ask before a tool that touches the outside world runs; Ctrl-C or Enter mean no."""
        try:
            reply = await self.prompt.prompt_async(f"\nrun {call_text(request.name, request.arguments)}? [y/N] ")
        except (KeyboardInterrupt, EOFError):
            reply = ""
        self.session.approve(request.request_id, reply.strip().lower() in ("y", "yes"))

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def toolbar(self) -> str:
        route = self.session.route.value
        return f" {self.last_stats or self.session.status} | route: {route} | /help"

    async def run(self) -> None:
        self.write(
            f"slmchat: {self.session.model_name('small')} (small)"
            f"{', ' + str(self.session.model_name('large')) + ' (large)' if self.session.model_name('large') else ''}"
            " — /help for commands\n"
        )
        self.preload()
        while True:
            try:
                text = await self.prompt.prompt_async("› ", bottom_toolbar=self.toolbar)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            route, text = _tier_prefix(text)
            if route is None and text.startswith("/"):
                if not await self.command(text):
                    break
                continue
            if text:
                await self.answer(text, route)

    def preload(self) -> None:
        """Load the small model in the background; a failure is reported by the next turn."""
        loading = self.session.start_loading("small")
        loading.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def command(self, line: str) -> bool:
        """Run a slash command; False means quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            self.write(HELP + "\n")
        elif name in ("/good", "/bad"):
            try:
                turn_id = self.session.feedback(name == "/good")
                self.write(f"noted: turn {turn_id} was {name[1:]}\n")
            except SlmchatError as exc:
                self.write(f"error: {exc}\n")
        elif name == "/tools":
            self.tools(arg)
        elif name in ("/remember", "/forget", "/memory"):
            await self.memory_command(name, arg)
        elif name == "/new":
            cid = self.session.new_conversation()
            self.write(f"new conversation {cid}\n")
        elif name == "/model":
            if arg:
                try:
                    self.write(f"small tier: {self.session.set_model('small', arg)}\n")
                    self.last_stats = ""  # the toolbar shows the new model loading
                    self.preload()
                except SlmchatError as exc:
                    self.write(f"error: {exc}\n")
            else:
                for tier in ("small", "large"):
                    self.write(f"{tier}: {self.session.model_name(tier) or '(not configured)'}\n")  # type: ignore[arg-type]
        elif name == "/route":
            if arg:
                try:
                    self.session.route = Route(arg)
                except ValueError:
                    self.write("error: route is one of auto, small, large\n")
                    return True
            self.write(f"route: {self.session.route.value}\n")
        else:
            self.write(f"unknown command {name}; /help lists them\n")
        return True

    def tools(self, arg: str) -> None:
        if arg in ("on", "off"):
            self.session.use_tools = arg == "on"
        elif arg:
            self.write("error: /tools takes on or off\n")
            return
        box = self.session.toolbox
        for spec in box.specs:
            self.write(f"  {compact_signature(spec)}{'  (asks first)' if spec.requires_approval else ''}\n")
        for problem in box.problems:
            self.write(f"  warning: {problem}\n")
        state = "on" if self.session.use_tools else "off"
        self.write(
            f"tools {state}: {len(box.specs)} available\n" if box else "no tools installed (see docs/tools.md)\n"
        )

    async def memory_command(self, name: str, arg: str) -> None:
        """/remember, /forget and /memory: the user's own control over long-term memory."""
        memory = self.session.memory
        if memory is None:
            self.write("memory is off in the config ([memory] enabled = false)\n")
            return
        try:
            if name == "/remember":
                change = await asyncio.to_thread(memory.remember, arg, self.session.conversation_id)
                self.write(_change_text(change) + "\n")
            elif name == "/forget":
                await self.forget(memory, arg)
            elif arg in ("on", "off"):
                self.session.use_memory = arg == "on"
                self.write(f"memory {arg}\n")
            elif arg:
                self.write("error: /memory takes on or off\n")
            else:
                facts = await asyncio.to_thread(memory.facts, 20)
                for item in facts:
                    self.write(f"  {item.text}\n")
                state = "on" if self.session.use_memory else "off"
                self.write(f"memory {state}: {len(facts)} fact{'s' if len(facts) != 1 else ''} shown\n")
        except SlmchatError as exc:
            self.write(f"error: {exc.message}\n" + (f"  fix: {exc.hint}\n" if exc.hint else ""))

    async def forget(self, memory: Any, query: str) -> None:
        if not query:
            self.write("error: /forget needs something to look for: /forget my dog\n")
            return
        hits = [h for h in await asyncio.to_thread(memory.search, query, 5) if h.similarity >= FORGET_SIMILARITY]
        if not hits:
            self.write(f"nothing remembered about {query!r}\n")
            return
        for hit in hits:
            self.write(f"  {hit.item.kind}: {hit.item.text}\n")
        try:
            reply = await self.prompt.prompt_async(f"delete these {len(hits)}? [y/N] ")
        except (KeyboardInterrupt, EOFError):
            reply = ""
        if reply.strip().lower() not in ("y", "yes"):
            self.write("nothing deleted\n")
            return
        deleted = await asyncio.to_thread(memory.forget, [hit.item.id for hit in hits])
        self.write(f"deleted {deleted}\n")

    async def answer(self, text: str, route: Route | None = None) -> None:
        restore = _on_sigint(self.session.cancel)
        try:
            async with aclosing(self.session.turn(text, route=route)) as events:
                async for event in events:
                    if isinstance(event, RouteDecided) and event.decision.tier != event.decision.wanted:
                        self.write(f"[{event.decision.reason}]\n")
                    elif isinstance(event, Token):
                        self.write(event.text)
                    elif isinstance(event, ApprovalRequested):
                        await self.approve(event)
                    elif (line := tool_line(event)) is not None:
                        self.write(line + "\n")
                    elif isinstance(event, Escalated | Compacted):
                        self.write(f"\n{event.note}\n")
                    elif isinstance(event, TurnDone):
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


#: /forget offers only memories at least this similar to the query
FORGET_SIMILARITY = 0.3


def _change_text(change: Any) -> str:
    if change.action == "add":
        return f"remembered: {change.fact}"
    if change.action == "update":
        return f"updated: {change.replaced} → {change.fact}"
    if change.action == "delete":
        return f"forgot: {change.replaced}"
    return f"already remembered ({change.reason})"


def _tier_prefix(text: str) -> tuple[Route | None, str]:
    """``/large …`` or ``/small …`` forces a tier for this one turn."""
    for route in (Route.LARGE, Route.SMALL):
        prefix = f"/{route.value}"
        if text == prefix or text.startswith(prefix + " ") or text.startswith(prefix + "\n"):
            return route, text[len(prefix) :].strip()
    return None, text


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


async def run_repl(session: Session, prompt: PromptSession[str] | None = None, out: TextIO | None = None) -> None:
    """Run the chat until /quit or end of input."""
    prompt = prompt or make_prompt()
    try:
        await Repl(session, prompt, out or sys.stdout).run()
    finally:
        await session.aclose()
