"""The terminal app end to end, in a real terminal: `slmchat` in tmux, typed at, read off the screen.

The Pilot tests (test_tui_app.py) drive the app inside the test's process; these start the
installed ``slmchat`` as a user does, in a tmux session of a fixed size, with the real SmolLM2
in llama.cpp as the small tier and a real ``llama_cpp.server`` as the large one. They type with
``tmux send-keys`` and read ``tmux capture-pane``: what a user would see, keys, escape sequences
and the terminal's own handling included. They skip without tmux, and fail instead when
``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.bench.bench_tui_start import Tmux, slmchat_command
from tests.helpers import free_port, write_config

pytestmark = pytest.mark.serial  # typed at and read off a real screen with deadlines: run alone

SIZE = (120, 40)  # ≥ 100 columns: the inspector shows from the start
TIMEOUT = 60

CONFIG = """
[small]
model = "llamacpp:smollm2"
max_tokens = 48
temperature = 0.2
seed = 1

[large]
model = "openai:smollm2-server"
base_url = "{url}"
max_tokens = 32
temperature = 0.2
seed = 1

[memory]
enabled = false

[tools]
enabled = []
"""


@pytest.fixture(autouse=True)
def tmux_installed() -> None:
    """Skip without tmux; with CI=true fail instead: a CI run must have checked the real terminal."""
    if shutil.which("tmux") is not None:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail("CI=true and tmux is not installed: .ci/run must install it (apt-get install -y tmux)")
    pytest.skip("tmux is not installed (apt-get install tmux)")


def columns(lines: list[str]) -> tuple[str, str]:
    """The chat column and the inspector column of the screen, each as text (the inspector's left edge is ``▏``)."""
    chat, inspector = [], []
    for line in lines[1:]:  # the first line is the status bar
        left, _, right = line.partition("▏")
        chat.append(left.rstrip())
        inspector.append(right.strip())
    return "\n".join(chat), "\n".join(inspector)


def answers_done(count: int):  # type: ignore[no-untyped-def]
    """A screen predicate: ``count`` turns have their stats line under the answer, and none is running."""

    def done(lines: list[str]) -> bool:
        chat, _ = columns(lines)
        finished = re.findall(r"^\s*(?:small|large) · \S+ · .*tok", chat, re.MULTILINE)
        return len(finished) >= count and "thinking" not in lines[0]

    return done


def ask(tmux: Tmux, text: str, turn: int) -> tuple[str, str]:
    """Type ``text`` and Enter; wait for turn number ``turn`` to finish; the chat and inspector columns then."""
    tmux.send(text, literal=True)
    tmux.send("Enter")
    return columns(tmux.wait_for(answers_done(turn), TIMEOUT, every=0.1))


def start_app() -> Tmux:
    """``slmchat`` (no arguments: the app) in tmux, with this test's config and data dirs; waits for the input."""
    tmux = Tmux(slmchat_command(), size=SIZE, env=dict(os.environ))
    try:
        tmux.wait_for(lambda lines: any("Ask something" in line for line in lines), TIMEOUT)
    except BaseException:
        tmux.close()
        raise
    return tmux


def test_an_answer_in_a_real_terminal_then_f3_sends_the_next_turn_to_the_large_tier(
    tmp_path: Path, llama_server: str
) -> None:
    write_config(tmp_path, CONFIG.format(url=llama_server))
    tmux = start_app()
    try:
        chat, inspector = ask(tmux, "What is the capital of France?", turn=1)
        assert "you › What is the capital of France?" in chat
        assert "Paris" in chat
        assert re.search(r"^tier\s+small$", inspector, re.MULTILINE), inspector
        assert re.search(r"^speed\s+\d+ tok/s$", inspector, re.MULTILINE), inspector
        assert "LOCAL" in inspector

        tmux.send("F3")
        status = tmux.wait_for(lambda lines: "next turn: large" in lines[0], TIMEOUT)[0]
        assert "route: auto" in status  # F3 is for one turn; the route stays as it was

        chat, inspector = ask(tmux, "And of Italy?", turn=2)
        assert "you › And of Italy?" in chat
        assert re.search(r"^tier\s+large$", inspector, re.MULTILINE), inspector
        assert re.search(r"^model\s+openai:smollm2-server$", inspector, re.MULTILINE), inspector
        assert re.search(r"^override\s+you chose large$", inspector, re.MULTILINE), inspector
        assert "next turn: large" not in tmux.screen()[0]  # used up by that turn
    finally:
        tmux.close()


def test_an_unreachable_large_tier_is_one_error_line_and_the_app_goes_on(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG.format(url=f"http://127.0.0.1:{free_port()}/v1"))  # nothing listens there
    tmux = start_app()
    try:
        tmux.send("F3")
        tmux.wait_for(lambda lines: "next turn: large" in lines[0], TIMEOUT)
        tmux.send("Hello", literal=True)
        tmux.send("Enter")
        lines = tmux.wait_for(lambda lines: "error:" in columns(lines)[0], TIMEOUT, every=0.1)
        chat, _ = columns(lines)
        assert "Traceback" not in "\n".join(lines)
        assert "fix:" in chat  # the error says how to fix it

        chat, inspector = ask(tmux, "What is the capital of France?", turn=1)  # the small tier still answers
        assert re.search(r"^tier\s+small$", inspector, re.MULTILINE), inspector
    finally:
        tmux.close()
