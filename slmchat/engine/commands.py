"""The slash commands every face shares: one table, one parser, results as data.

A face hands each line to ``parse_command`` (or ``run_line``). Plain text and ``/large TEXT``
come back as a ``Prompt`` to send as a turn; a command runs against the ``Session`` and
returns a frozen ``CommandResult`` that the face renders its own way. Commands never print
and never prompt: ``/forget`` returns the matches, and ``forget_confirmed`` deletes them once
the face has asked the user. ``COMMANDS`` is the one list the parser, the runner and /help read.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError
from slmchat.memory.manager import Memory
from slmchat.memory.types import FactChange, Hit, MemoryItem
from slmchat.routing import Route
from slmchat.tools.prompt import compact_signature

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session

#: /forget offers only memories at least this similar to the query
FORGET_SIMILARITY = 0.3
FORGET_CANDIDATES = 5  # memories searched for /forget, before the similarity cut
FACTS_SHOWN = 20  # /memory lists the most recently updated facts, up to this many


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CommandResult:
    """What a command did. ``kind`` is the command's name ("model", "quit", ...); ``message`` is
    one line any face can show; when ``ok`` is False, ``hint`` says what to do about it."""

    kind: str
    message: str
    ok: bool = True
    hint: str | None = None

    @property
    def quits(self) -> bool:
        """The user asked to leave (/quit succeeded)."""
        return self.ok and self.kind == "quit"


@dataclass(frozen=True, kw_only=True)
class Help(CommandResult):
    """/help: ``text`` is the help built from ``commands`` (the table itself)."""

    text: str
    commands: tuple[CommandSpec, ...]


@dataclass(frozen=True, kw_only=True)
class NewConversation(CommandResult):
    conversation_id: str


@dataclass(frozen=True, kw_only=True)
class Models(CommandResult):
    """/model: each tier's model (None: not configured); ``changed`` when the small tier was just set."""

    small: str | None
    large: str | None
    changed: bool = False


@dataclass(frozen=True, kw_only=True)
class RouteSet(CommandResult):
    route: Route
    changed: bool = False


@dataclass(frozen=True, kw_only=True)
class Judged(CommandResult):
    turn_id: int
    good: bool


@dataclass(frozen=True)
class ToolLine:
    """One offered tool as /tools lists it: the compact signature the small model sees."""

    name: str
    signature: str
    asks_first: bool  # needs the user's approval before it runs


@dataclass(frozen=True, kw_only=True)
class Tools(CommandResult):
    tools: tuple[ToolLine, ...]
    problems: tuple[str, ...]  # plugins that could not be loaded
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class Remembered(CommandResult):
    change: FactChange


@dataclass(frozen=True, kw_only=True)
class Facts(CommandResult):
    """/memory: the most recently updated facts, and whether turns use memory now."""

    facts: tuple[MemoryItem, ...]
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class Switched(CommandResult):
    """/memory on|off: whether turns use memory from now on."""

    enabled: bool


@dataclass(frozen=True, kw_only=True)
class Matches(CommandResult):
    """/forget QUERY, step one: what would be deleted; pass ``ids`` to ``forget_confirmed``."""

    query: str
    hits: tuple[Hit, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(hit.item.id for hit in self.hits)

    @property
    def question(self) -> str:
        """The confirmation every face asks: "delete this memory?", "delete these 3 memories?"."""
        return "delete this memory?" if len(self.hits) == 1 else f"delete these {len(self.hits)} memories?"


@dataclass(frozen=True, kw_only=True)
class Forgotten(CommandResult):
    deleted: int


def failure(kind: str, message: str, hint: str | None = None) -> CommandResult:
    return CommandResult(kind=kind, message=message, ok=False, hint=hint)


# -- the commands -----------------------------------------------------------------------------

Handler = Callable[["Session", str], Awaitable[CommandResult]]


async def show_help(session: Session, arg: str) -> Help:
    names = " ".join(f"/{spec.name}" for spec in COMMANDS)
    return Help(kind="help", message=f"commands: {names}", text=help_text(), commands=COMMANDS)


async def start_new(session: Session, arg: str) -> NewConversation:
    cid = session.new_conversation()
    return NewConversation(kind="new", message=f"new conversation {cid}", conversation_id=cid)


async def choose_model(session: Session, arg: str) -> Models:
    """Show both tiers' models, or use ``arg`` for the small tier (a bad name raises SlmchatError)."""
    resolved = session.set_model("small", arg) if arg else None
    small, large = session.model_name("small"), session.model_name("large")
    shown = f"small: {small or '(not configured)'}, large: {large or '(not configured)'}"
    message = f"small tier: {resolved}" if resolved else shown
    return Models(kind="model", message=message, small=small, large=large, changed=bool(arg))


async def choose_route(session: Session, arg: str) -> RouteSet:
    if arg:
        session.route = Route(arg)
    return RouteSet(kind="route", message=f"route: {session.route.value}", route=session.route, changed=bool(arg))


async def judge(session: Session, good: bool) -> Judged:
    turn_id = session.feedback(good)  # raises SlmchatError before any answer
    word = "good" if good else "bad"
    return Judged(kind=word, message=f"noted: turn {turn_id} was {word}", turn_id=turn_id, good=good)


async def judge_good(session: Session, arg: str) -> Judged:
    return await judge(session, True)


async def judge_bad(session: Session, arg: str) -> Judged:
    return await judge(session, False)


async def switch_tools(session: Session, arg: str) -> Tools:
    """List the tools; ``on``/``off`` first offers them, or not, from the next turn on."""
    if arg:
        session.use_tools = arg == "on"
    box = session.toolbox
    # the whole first sentence of each description: the model's 8 words read as cut off (issue 16)
    lines = tuple(ToolLine(spec.name, compact_signature(spec, None), spec.requires_approval) for spec in box.specs)
    state = "on" if session.use_tools else "off"
    message = f"tools {state}: {len(lines)} available" if box else "no tools installed (see docs/tools.md)"
    return Tools(kind="tools", message=message, tools=lines, problems=tuple(box.problems), enabled=session.use_tools)


def _memory(session: Session) -> Memory:
    if session.memory is None:
        raise SlmchatError(
            "memory is off in the config ([memory] enabled = false)",
            f"set enabled = true under [memory] in {paths.config_file()}, then start again",
        )
    return session.memory


async def remember(session: Session, arg: str) -> Remembered:
    change = await asyncio.to_thread(_memory(session).remember, arg, session.conversation_id)
    return Remembered(kind="remember", message=_change_text(change), change=change)


async def show_memory(session: Session, arg: str) -> Facts | Switched:
    """List the remembered facts; ``on``/``off`` uses memory, or not, from the next turn on."""
    memory = _memory(session)
    if arg:
        session.use_memory = arg == "on"
        return Switched(kind="memory", message=f"memory {arg}", enabled=session.use_memory)
    facts = tuple(await asyncio.to_thread(memory.facts, FACTS_SHOWN))
    state = "on" if session.use_memory else "off"
    message = f"memory {state}: {len(facts)} fact{'s' if len(facts) != 1 else ''} shown"
    return Facts(kind="memory", message=message, facts=facts, enabled=session.use_memory)


async def forget(session: Session, arg: str) -> Matches:
    """Step one of /forget: the memories close enough to ``arg``; nothing is deleted yet."""
    found = await asyncio.to_thread(_memory(session).search, arg, FORGET_CANDIDATES)
    hits = tuple(hit for hit in found if hit.similarity >= FORGET_SIMILARITY)
    if hits:
        message = f"{len(hits)} memor{'y' if len(hits) == 1 else 'ies'} match {arg!r}"
    else:
        message = f"nothing remembered about {arg!r}"
    return Matches(kind="forget", message=message, query=arg, hits=hits)


async def forget_confirmed(session: Session, ids: Sequence[str]) -> CommandResult:
    """Step two of /forget: delete ``ids`` (``Matches.ids`` once the user said yes; empty: they said no)."""

    async def delete() -> Forgotten:
        memory = _memory(session)
        deleted = await asyncio.to_thread(memory.forget, list(ids)) if ids else 0
        return Forgotten(kind="forget", message=f"deleted {deleted}" if deleted else "nothing deleted", deleted=deleted)

    return await _reported("forget", delete())


async def leave(session: Session, arg: str) -> CommandResult:
    return CommandResult(kind="quit", message="bye")


def _change_text(change: FactChange) -> str:
    if change.action == "add":
        return f"remembered: {change.fact}"
    if change.action == "update":
        return f"updated: {change.replaced} → {change.fact}"
    if change.action == "delete":
        return f"forgot: {change.replaced}"
    return f"already remembered ({change.reason})"


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """One command: its name, argument and help line. The parser, the runner and /help read it.

    ``arg`` names a free-text argument; ``choices`` lists the allowed words instead. A command
    with ``sends_to`` is a tier prefix: the rest of the line is a message for that tier.
    """

    name: str
    help: str
    run: Handler | None = None
    arg: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False
    example: str = ""
    aliases: tuple[str, ...] = ()
    sends_to: Route | None = None

    @property
    def usage(self) -> str:
        """``/route [auto|small|large]``, ``/forget QUERY``, ``/new``."""
        word = "|".join(self.choices) or self.arg
        if not word:
            return f"/{self.name}"
        return f"/{self.name} {word}" if self.required else f"/{self.name} [{word}]"


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "this text", show_help),
    CommandSpec("new", "start a new conversation", start_new),
    CommandSpec("model", "show the models, or use NAME (backend:model) for the small tier", choose_model, arg="NAME"),
    CommandSpec("route", "show or set the route for the following turns", choose_route,
                choices=tuple(route.value for route in Route)),
    CommandSpec("large", "send this one message to the large tier", arg="TEXT", required=True,
                example="/large prove that there are infinitely many primes", sends_to=Route.LARGE),
    CommandSpec("small", "send this one message to the small tier", arg="TEXT", required=True,
                example="/small say hi", sends_to=Route.SMALL),
    CommandSpec("good", "judge the last answer good (calibration learns from it)", judge_good),
    CommandSpec("bad", "judge the last answer bad", judge_bad),
    CommandSpec("tools", "list the tools, or offer them (on) or not (off) from now on", switch_tools,
                choices=("on", "off")),
    CommandSpec("remember", 'remember a fact about you ("I prefer metric units")', remember, arg="TEXT",
                required=True, example="/remember I prefer metric units"),
    CommandSpec("forget", "show the memories matching QUERY and delete them if you say so", forget,
                arg="QUERY", required=True, example="/forget my dog"),
    CommandSpec("memory", "show what is remembered, or use memory (on) or not (off) from now on", show_memory,
                choices=("on", "off")),
    CommandSpec("quit", "leave", leave, aliases=("exit", "q")),
)  # fmt: skip
_BY_NAME = {name: spec for spec in COMMANDS for name in (spec.name, *spec.aliases)}


def help_text() -> str:
    """Every command in the table, one line each."""
    width = max(len(spec.usage) for spec in COMMANDS) + 2
    lines = ["commands:"]
    for spec in COMMANDS:
        also = f" (also {', '.join('/' + alias for alias in spec.aliases)})" if spec.aliases else ""
        lines.append(f"  {spec.usage:<{width}}{spec.help}{also}")
    return "\n".join(lines)


# -- parsing and running ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A line to send as a turn; ``route`` forces a tier for this one turn (``/large TEXT``)."""

    text: str
    route: Route | None = None


@dataclass(frozen=True)
class Command:
    """A known command and its checked argument, ready for ``run_command``."""

    spec: CommandSpec
    arg: str = ""


def parse_command(line: str) -> Prompt | Command | CommandResult:
    """A message (``Prompt``), a command to run, or an error result saying what to type instead."""
    text = line.strip()
    if not text.startswith("/"):
        return Prompt(text)
    head, *rest = text.split(maxsplit=1)
    name, arg = head[1:].lower(), rest[0].strip() if rest else ""
    spec = _BY_NAME.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
        hint = f"did you mean /{close[0]}? " if close else ""
        return failure("unknown", f"unknown command {head}", f"{hint}/help lists the commands")
    if spec.required and not arg:
        return failure(spec.name, f"/{spec.name} needs {spec.arg}", f"for example: {spec.example}")
    if spec.choices and arg:
        if arg.lower() not in spec.choices:
            return failure(
                spec.name, f"{spec.name} is one of {', '.join(spec.choices)}, not {arg!r}", f"usage: {spec.usage}"
            )
        arg = arg.lower()
    elif arg and not spec.arg:
        return failure(spec.name, f"/{spec.name} takes no argument", f"type {spec.usage} alone")
    if spec.sends_to is not None:
        return Prompt(arg, spec.sends_to)
    return Command(spec, arg)


async def run_command(session: Session, command: Command) -> CommandResult:
    """Run a parsed command; a ``SlmchatError`` (bad model name, no answer yet, ...) becomes an error result."""
    assert command.spec.run is not None, "a tier prefix parses to a Prompt"
    return await _reported(command.spec.name, command.spec.run(session, command.arg))


async def run_line(session: Session, line: str) -> Prompt | CommandResult:
    """Parse a line and run it if it is a command; a ``Prompt`` is for the face to send as a turn."""
    parsed = parse_command(line)
    return await run_command(session, parsed) if isinstance(parsed, Command) else parsed


async def _reported(kind: str, work: Awaitable[CommandResult]) -> CommandResult:
    try:
        return await work
    except SlmchatError as exc:
        return failure(kind, exc.message, exc.hint)
