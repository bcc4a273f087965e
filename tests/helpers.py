"""Helpers and fakes shared by tests (test modules import from here, never from each other)."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import operator
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from slmchat.engine.events import Event, Recovery, Token
from slmchat.engine.session import Session
from slmchat.faces.repl import make_prompt, run_repl
from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamItem
from slmchat.infra.config import Config, TierConfig
from slmchat.testing import ScriptedBackend
from slmchat.tools.agent import ToolLoop
from slmchat.tools.calls import ReplySchema
from slmchat.tools.recovery import Template, recovery_message

#: ../shared/data beside the checkout: evaluation data too big to ship. Tests that need it are
#: marked ``@pytest.mark.shared_data("sub/path", ...)``; tests/conftest.py skips them when it is
#: missing, and fails them instead when ``CI=true``.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# -- sessions and turns ----------------------------------------------------------------------


def small_config(**small: Any) -> Config:
    """A config whose small tier is the shipped model with short, repeatable answers."""
    fields = {"model": "llamacpp:smollm2", "max_tokens": 24, "temperature": 0.0, "seed": 1, **small}
    return Config(small=TierConfig(**fields))


def collect(session: Session, text: str, route: str | None = None) -> list[Any]:
    """All events of one turn, run to the end."""

    async def run() -> list[Any]:
        return [event async for event in session.turn(text, route=route)]

    return asyncio.run(run())


def cold(backend: Any) -> Any:
    """Empty a llama.cpp backend's KV cache, so the next prompt is evaluated whole, as on a fresh load.

    The shared ``small_backend`` keeps the last prompt cached and later calls replay only what
    differs. llama.cpp's logits for a whole-prompt batch and for a one-token replay differ in
    the last digits, enough to flip a near tie at temperature 0 (SmolLM2 starts "La" or "The"
    for the capital of France). Tests that assert what the real model writes start cold, so the
    answer does not depend on which test ran before.
    """
    backend.llama.reset()
    return backend


class CountingBackend(ScriptedBackend):
    """``slmchat.testing.ScriptedBackend`` that also counts the pieces it has streamed (``sent``)."""

    sent = 0

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        async for item in super().stream(messages, params, cancel):
            if isinstance(item, str):
                self.sent += 1
            yield item


# -- the CLI in a real process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slmchat(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; tool plugins and memory are off unless ``env`` turns them on."""
    env = {"SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "slmchat", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def assert_key_absent(root: Path, key: str, encodings: tuple[str, ...] = ("utf-8", "utf-16-le")) -> None:
    """Fail, naming every file under ``root`` that contains ``key`` (read as bytes, in chunks)."""
    needles = [key.encode(encoding) for encoding in encodings]
    overlap = max(len(n) for n in needles) - 1
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        tail = b""
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    window = tail + chunk
                    if any(n in window for n in needles):
                        found.append(path)
                        break
                    tail = window[-overlap:] if overlap else b""
        except OSError:
            continue  # sockets, files that vanished, unreadable files
    if found:
        pytest.fail(f"the key was found in {len(found)} file(s): " + ", ".join(str(p) for p in found))


# -- the agent loop with scripted model replies ----------------------------------------------

#: raw replies SmolLM2-135M really wrote, and where each comes from
TOOL_REPLIES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "smollm2_tool_replies.json").read_text(encoding="utf-8")
)


def text(key: str) -> str:
    """The recorded reply ``key`` of tests/data/smollm2_tool_replies.json."""
    return TOOL_REPLIES["replies"][key]["text"]


class Script:
    """A step function replaying model replies in order; it keeps what each step was shown."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.seen: list[tuple[str, list[Message], ReplySchema | None]] = []

    def __call__(self, tier: str, messages: list[Message], schema: ReplySchema | None) -> AsyncIterator[str]:
        self.seen.append((tier, list(messages), schema))
        assert self.replies, "the loop asked the model more often than the script expects"
        reply = self.replies.pop(0)

        async def pieces() -> AsyncIterator[str]:
            for start in range(0, len(reply), 5):  # a few characters at a time, as a model streams
                yield reply[start : start + 5]
                await asyncio.sleep(0)

        return pieces()

    @property
    def tiers(self) -> list[str]:
        return [tier for tier, _, _ in self.seen]


def run(loop: ToolLoop, question: str = "Help me.") -> list[Event]:
    """Every event of one run of the loop (how it ended is in ``loop.result.termination``)."""

    async def go() -> list[Event]:
        return [event async for event in loop.run("", [Message("user", question)])]

    return asyncio.run(go())


def call(name: str, **arguments: Any) -> str:
    """A call as the constrained model writes it."""
    return json.dumps({"tool": name, "arguments": arguments})


def answer(text: str) -> str:
    return json.dumps({"answer": text})


def recoveries(events: list[Event]) -> list[Recovery]:
    return [e for e in events if isinstance(e, Recovery)]


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events if not isinstance(e, Token)]


def assert_recovery(event: Recovery, template: Template, **values: Any) -> None:
    """The event names the template and carries its text; the text leads back to the same constant."""
    assert event.template == template.name
    assert event.action == template.action
    assert event.message == template.format(**values)
    assert recovery_message(event.message) is template


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression such as 2 * (3 + 4)."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {expression!r}")

    try:
        return value(ast.parse(expression, mode="eval").body)
    except SyntaxError as exc:
        raise ValueError(f"not arithmetic: {expression!r}") from exc


def weather(city: str, unit: str = "celsius") -> str:
    """Today's weather in a city."""
    return f"sunny, 21 degrees {unit}"


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}  # fmt: skip


def chat(session: Session, typed: str) -> str:
    """Type ``typed`` into the REPL and return what it printed."""
    out = io.StringIO()

    async def go() -> None:
        with create_pipe_input() as pipe:
            pipe.send_text(typed)
            prompt = make_prompt(input=pipe, output=DummyOutput())
            await run_repl(session, prompt, out)

    asyncio.run(go())
    return out.getvalue()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let a Textual app under Pilot run until ``condition`` holds (no fixed sleeps); fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the app did not get there in time")
        await pilot.pause(0.02)


@contextmanager
def serve(command: list[str], health_url: str, log: Path, env: dict[str, str], timeout: float):  # type: ignore[no-untyped-def]
    """Run a real server until the block ends; fail the test (with its log) if it does not come up."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})

    def up() -> bool:
        try:
            with urllib.request.urlopen(health_url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return proc.poll() is not None  # stop waiting if it died

    try:
        if not wait_until(up, timeout=timeout) or proc.poll() is not None:
            pytest.fail(f"{command[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


#: a child process that holds an exclusive SQLite lock until its stdin closes
LOCK_HOLDER = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=0)\nc.execute('BEGIN EXCLUSIVE')\n"
LOCK_HOLDER += "print('locked', flush=True)\nsys.stdin.read()\n"
