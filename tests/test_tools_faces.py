"""Tools through the faces: the REPL and `slmchat ask`, with approvals, on the real model and plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from slmchat.engine.session import Session
from slmchat.infra.config import Config, TierConfig
from slmchat.infra.store import Store
from slmchat.testing import ScriptedBackend
from slmchat.tools import Toolbox, tool
from tests.helpers import chat, cold, small_config

PLUGINS = Path(__file__).parents[1] / "plugins"


def calculate(expression: str) -> float:
    """Calculate a math expression: add, subtract, multiply, divide."""
    left, _, right = expression.partition("*")
    return float(left) * float(right)


@tool(requires_approval=True)
def read_note(name: str) -> str:
    """Read the user's saved note with this name."""
    return f"note {name}: buy milk"


def test_the_repl_lists_calls_and_switches_tools(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(
        small_config(max_tokens=48), backends={"small": cold(small_backend)}, tools=Toolbox().add(calculate)
    )
    store_path = session.store.path
    printed = chat(session, "/tools\nWhat is 37 * 91?\n/tools off\nWhat is 37 * 91?\n/quit\n")

    assert "calculate(expression: str) - Calculate a math expression" in printed
    assert "tools on: 1 available" in printed and "tools off: 1 available" in printed
    # what SmolLM2 really does here (cold, temperature 0): it passes ".91", which this calculate
    # cannot split on "*", three times over; then it answers in words, without tools
    assert printed.count('[tool calculate(expression=".91")]') == 3  # the model's own call, as it wrote it
    assert printed.count("[failed: ValueError: could not convert string to float: '' (") == 3
    assert "[→ " not in printed  # no call succeeded
    assert "[3 recoveries this turn; no large tier is configured, so the small tier answers without tools" in printed
    assert printed.split("tools off: 1 available")[1].count("[tool ") == 0  # none after /tools off
    turns = Store(store_path).turns(Store(store_path).conversations()[0].id)
    events = Store(store_path).events(turns[0]["id"])
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["route_decided", "tool_call", "tool_result"] and kinds[-1] == "turn_done"
    tool_events = [(e["kind"], e.get("arguments"), e.get("ok")) for e in events if e["kind"].startswith("tool_")]
    assert tool_events == [("tool_call", {"expression": ".91"}, None), ("tool_result", None, False)] * 3
    assert "tool_call" not in [e["kind"] for e in Store(store_path).events(turns[1]["id"])]


@pytest.mark.parametrize(("typed", "ran"), [("y", True), ("n", False)])
def test_the_repl_asks_before_a_tool_that_needs_approval(typed: str, ran: bool) -> None:
    call = '{"tool": "read_note", "arguments": {"name": "shopping"}}'
    backend = ScriptedBackend([call, "Your shopping note says: buy milk."])
    session = Session(Config(small=TierConfig(model="scripted:script")), backends={"small": backend},
                      tools=Toolbox().add(read_note))  # fmt: skip
    store_path = session.store.path
    printed = chat(session, f"Read my saved note called shopping\n{typed}\n/quit\n")

    events = Store(store_path).events(Store(store_path).turns(Store(store_path).conversations()[0].id)[0]["id"])
    recorded = next(e for e in events if e["kind"] == "tool_call")
    assert recorded["requires_approval"] is True and recorded["approved"] is ran  # the answer is stored
    assert ("note shopping: buy milk" in printed) is ran
    assert ("[recovery denied: The user did not allow read_note" in printed) is not ran
    final = backend.seen[-1][-1].content  # the answer step sees the result, or that it was refused
    assert ("Tool result: read_note" in final) is ran
    assert len(backend.seen) == 2  # the call, then the answer
    assert backend.params[-1].json_schema is None  # the answer itself is plain text, not constrained JSON


def _install(plugin: str, target: Path) -> None:
    """pip-install one plugin from plugins/ into ``target`` (offline: no deps, no build isolation)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(PLUGINS / plugin)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _ask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slmchat", "ask", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        env={**os.environ, "SLMCHAT_MEMORY__ENABLED": "false", **env},
        start_new_session=True,  # no controlling terminal to ask on
    )  # fmt: skip


@pytest.mark.plugins
def test_ask_uses_a_plugin_installed_from_the_plugins_folder(tmp_path: Path) -> None:
    _install("slmchat-calculator", tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site"), "SLMCHAT_TOOLS__ENABLED": '["calculate"]',
           "SLMCHAT_SMALL__TEMPERATURE": "0", "SLMCHAT_SMALL__MAX_TOKENS": "48"}  # fmt: skip
    done = _ask("--json", "What is 37 * 91?", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    call, result = data["tool_events"][:2]
    assert call["name"] == "calculate" and call["requires_approval"] is False
    assert result["kind"] == "tool_result" and result["ok"]  # the plugin ran on what the model wrote
    assert "91" in call["arguments"]["expression"]
    assert data["tools"]["calls"] == 1 and data["tools"]["termination"] == "answered"
    ran_ms = [e["ms"] for e in data["tool_events"] if e["kind"] == "tool_result"]
    assert len(ran_ms) == 1 and ran_ms[0] > 0
    assert data["latency"]["tool_ms"] == pytest.approx(ran_ms[0], abs=0.05) and data["answer"]


@pytest.mark.plugins
def test_ask_runs_a_tool_that_needs_approval_only_with_yes(tmp_path: Path) -> None:
    _install("slmchat-files", tmp_path / "site")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("call the dentist on Monday\nbuy milk\n")
    # grounding off: SmolLM2 writes query="search_files" here, a call grounding drops; this test is about approval
    env = {"PYTHONPATH": str(tmp_path / "site"), "SLMCHAT_TOOLS__ENABLED": '["search_files"]',
           "FILES_TOOL_ROOT": str(notes), "SLMCHAT_SMALL__TEMPERATURE": "0",
           "SLMCHAT_TOOLS__GROUND": "false"}  # fmt: skip
    question = "Search my notes for dentist"

    refused = _ask("--json", "--tools", question, env=env)
    assert refused.returncode == 0, refused.stderr
    assert "needs approval and there is no terminal to ask: pass --yes" in refused.stderr
    events = json.loads(refused.stdout)["tool_events"]
    assert events[0]["name"] == "search_files" and events[0]["approved"] is False
    assert not any(e["kind"] == "tool_result" for e in events)  # it did not run

    allowed = _ask("--json", "--tools", "--yes", question, env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "needs approval" not in allowed.stderr
    events = json.loads(allowed.stdout)["tool_events"]
    assert events[0]["approved"] is True
    assert events[1]["kind"] == "tool_result" and events[1]["ok"]  # it ran (what it found is the model's query)
    assert isinstance(json.loads(events[1]["result"]), list)


@pytest.mark.plugins
@pytest.mark.serial
@pytest.mark.parametrize(("typed", "ran"), [("y", True), ("n", False)])
def test_ask_asks_for_approval_on_the_real_terminal(tmp_path: Path, typed: str, ran: bool) -> None:
    """In a pty (the controlling terminal), `ask` puts the question on /dev/tty and obeys the answer.

    It once opened /dev/tty as a buffered "r+" text file, which a terminal (not seekable) refuses,
    and said there was no terminal to ask.
    """
    _install("slmchat-files", tmp_path / "site")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("call the dentist on Monday\n")
    env = {**os.environ, "SLMCHAT_MEMORY__ENABLED": "false", "PYTHONPATH": str(tmp_path / "site"),
           "SLMCHAT_TOOLS__ENABLED": '["search_files"]', "FILES_TOOL_ROOT": str(notes),
           "SLMCHAT_SMALL__TEMPERATURE": "0", "SLMCHAT_TOOLS__GROUND": "false"}  # fmt: skip
    child = pexpect.spawn(
        sys.executable, ["-m", "slmchat", "ask", "--json", "--tools", "Search my notes for dentist"],
        env=env, encoding="utf-8", timeout=120, dimensions=(30, 200),
    )  # fmt: skip
    try:
        child.expect(r"run search_files\(.*\)\? \[y/N\] ")
        child.sendline(typed)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    assert "no terminal to ask" not in child.before
    events = json.loads(child.before[child.before.index("{") :])["tool_events"]
    assert events[0]["name"] == "search_files" and events[0]["approved"] is ran
    assert any(e["kind"] == "tool_result" and e["ok"] for e in events) is ran
