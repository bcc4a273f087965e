"""Scripted recovery: one constant per failure, instead of asking the model to fix itself freely.

Each template is a single constant: its ``text`` is what the model is told, and its
``pattern`` (built from the same text) recognises that message later, for example to keep
recovery chatter out of the saved history.
"""

from __future__ import annotations

import difflib
import re
import socket
import string
from dataclasses import dataclass
from typing import Any

_FORMAT = string.Formatter()


@dataclass(frozen=True)
class Template:
    """A recovery message with ``{placeholders}``; ``action`` says what the engine does next."""

    name: str
    text: str
    #: "retry": ask the model again; "rerun": run the tool again; "answer": stop calling tools;
    #: "drop": forget the call and answer in plain words, as if no tool had been offered
    action: str

    def format(self, **values: Any) -> str:
        return self.text.format(**values)

    @property
    def pattern(self) -> re.Pattern[str]:
        """Matches any message made from this template."""
        parsed = _FORMAT.parse(self.text)
        pieces = [re.escape(literal) + (".*?" if name is not None else "") for literal, name, _, _ in parsed]
        return re.compile("".join(pieces), re.DOTALL)

    def matches(self, message: str) -> bool:
        return bool(self.pattern.fullmatch(message.strip()))


MALFORMED_JSON = Template(
    "malformed_json",
    'Your reply was not valid JSON ({reason}). Reply with JSON only: {{"tool": NAME, "arguments": {{...}}}} '
    'or {{"answer": TEXT}}.',
    "retry",
)
UNKNOWN_TOOL = Template(
    "unknown_tool", "There is no tool named {name}. Closest: {closest}. Call one of them or answer.", "retry"
)
BAD_ARGUMENTS = Template(
    "bad_arguments", "Bad arguments for {name}: {problems}. Call it again with fixed arguments.", "retry"
)
TOOL_RETRY = Template("tool_retry", "{name} failed ({error}); trying again in {delay:.1f} s.", "rerun")
TOOL_BAD_INPUT = Template("tool_bad_input", "{name} refused the input: {error}. Fix the arguments or answer.", "retry")
TOOL_FAILED = Template("tool_failed", "{name} failed: {error}. Answer without it.", "answer")
CIRCUIT_OPEN = Template("circuit_open", "{name} is out of order for now. Answer without it.", "answer")
REPEATED_CALL = Template(
    "repeated_call", "You already called {name} with these arguments: {result}. Answer now.", "answer"
)
NO_PROGRESS = Template("no_progress", "{steps} tool calls made. Answer now with what you have.", "answer")
DENIED = Template("denied", "The user did not allow {name}. Answer without it.", "answer")
#: the model is never told: its call is forgotten (the values it wrote are not in the question)
UNGROUNDED = Template(
    "ungrounded", "{name} was not called: the values the model wrote are not in the question.", "drop"
)

TEMPLATES = (
    MALFORMED_JSON, UNKNOWN_TOOL, BAD_ARGUMENTS, TOOL_RETRY, TOOL_BAD_INPUT, TOOL_FAILED, CIRCUIT_OPEN,
    REPEATED_CALL, NO_PROGRESS, DENIED, UNGROUNDED,
)  # fmt: skip


def closest_tools(name: str, known: list[str], n: int = 3) -> list[str]:
    """Known tool names nearest to ``name`` (always at least one, when any exist)."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.3)
    return [lowered[c] for c in close] or known[:n]


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying after a pause: timeouts and broken connections."""
    return isinstance(exc, TimeoutError | ConnectionError | socket.timeout) or type(exc).__name__ in {
        "ConnectTimeout", "ReadTimeout", "ConnectError", "RemoteProtocolError", "Timeout",
    }  # fmt: skip


def is_bad_input(exc: BaseException) -> bool:
    """Errors that mean the arguments were wrong: tell the model so it can fix them."""
    return isinstance(exc, ValueError | TypeError | KeyError | LookupError | ArithmeticError | FileNotFoundError)


def recovery_message(message: str) -> Template | None:
    """The template a message was made from, if any."""
    return next((t for t in TEMPLATES if t.matches(message)), None)
