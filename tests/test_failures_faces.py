"""Issue 13, the faces' part: what `ask`, the chat and the `slmchat` command do when things go wrong.

Escape sequences in an answer are shown, never obeyed; SIGTERM and SIGHUP end a turn the way
Ctrl-C does; bytes that are not UTF-8 become U+FFFD with one warning; Ctrl-C while the CLI
starts ends it quietly with 130; `--debug` tracebacks never show a key a server echoed back.
Each test runs the real CLI in a process (or the real chat) against the real small model or a
tiny real HTTP server speaking the OpenAI wire format.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pexpect
import pytest
from click.testing import CliRunner

from slmchat.faces.cli import SlmchatGroup
from slmchat.faces.cli.ask import run_turn
from slmchat.testing import scripted_session
from tests.helpers import assert_key_absent, chat, slmchat, wait_until, write_config

#: an answer that would retitle the window, write the clipboard and clear the screen if obeyed
HOSTILE = "Sure.\x1b]0;pwned\x07 Copied\x1b]52;c;ZWNobyBoaQ==\x07 and\x1b[2J\x1b[H done\x9b2J."
KEY = "sk-planted-0123456789abcdefXYZ"
LONG_QUESTION = "Write a long story about a dragon and a knight who become friends."


def assert_inert(printed: str) -> None:
    """Nothing a terminal would obey is left, and the sequences are visible as text."""
    assert "\x1b" not in printed and "\x07" not in printed and "\x9b" not in printed, repr(printed)
    assert "␛]0;pwned␇" in printed and "␛]52;c;ZWNobyBoaQ==␇" in printed and "␛[2J" in printed


# -- a tiny OpenAI-compatible server ------------------------------------------------------------


class _OpenAIWire(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: streams ``server.answer`` as SSE chunks, or answers 400 with
    the caller's Authorization header echoed in the error, as some providers do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.answer  # type: ignore[attr-defined]
        if answer is None:
            sent = self.headers.get("Authorization", "")
            body = {"error": {"message": f"Incorrect API key provided: {sent}", "type": "invalid_request_error"}}
            data = json.dumps(body).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = [answer[i : i + 7] for i in range(0, len(answer), 7)]
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}
            self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]})
        usage = {"prompt_tokens": 9, "completion_tokens": len(pieces), "total_tokens": 9 + len(pieces)}
        self._event(
            {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [], "usage": usage}
        )
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, chunk: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def openai_server(answer: str | None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for the duration of the block; its base_url."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIWire)
    server.answer = answer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def large_tier(tmp_path: Path, base_url: str) -> None:
    write_config(tmp_path, f'[large]\nmodel = "openai:wire"\nbase_url = "{base_url}"\napi_key_env = "MY_LARGE_KEY"\n')


def exported_turn() -> dict[str, Any]:
    exported = slmchat("history", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    return json.loads(exported.stdout)["turns"][-1]


# -- 3. escape sequences are data ---------------------------------------------------------------


def test_ask_shows_an_answers_escape_sequences_instead_of_obeying_them(tmp_path: Path) -> None:
    with openai_server(HOSTILE) as url:
        large_tier(tmp_path, url)
        env = {"MY_LARGE_KEY": KEY}
        streamed = slmchat("ask", "--route", "large", "Say something.", env=env)
        as_json = slmchat("ask", "--json", "--route", "large", "Say something.", env=env)

    assert (streamed.returncode, streamed.stderr) == (0, ""), streamed.stderr
    assert_inert(streamed.stdout)
    assert streamed.stdout.startswith("Sure.␛]0;pwned␇ Copied")
    assert as_json.returncode == 0, as_json.stderr
    assert "\x1b" not in as_json.stdout and "\x07" not in as_json.stdout and "\x9b" not in as_json.stdout
    assert "\\u001b]0;pwned\\u0007" in as_json.stdout and "\\u009b2J" in as_json.stdout  # escaped, not pictured
    assert json.loads(as_json.stdout)["answer"] == HOSTILE  # the data itself is kept exactly
    assert exported_turn()["answer"] == HOSTILE


def test_ask_renders_a_scripted_answer_through_printable_on_a_pipe(capfd: pytest.CaptureFixture[str]) -> None:
    session = scripted_session([HOSTILE])
    assert asyncio.run(run_turn(session, "Say something.", None, False)) == 0
    printed = capfd.readouterr().out
    assert_inert(printed)
    assert printed.endswith("done\\x9b2J.\n")  # a C1 CSI has no picture: its hex code shows


def test_the_chat_shows_escape_sequences_instead_of_obeying_them() -> None:
    printed = chat(scripted_session([HOSTILE]), "Say something.\n/quit\n")
    assert_inert(printed)


# -- 5a. SIGTERM and SIGHUP end the turn like Ctrl-C ------------------------------------------------


def read_first_bytes(proc: subprocess.Popen[bytes], timeout: float = 90.0) -> bytes:
    """The first answer bytes on the process's stdout (the model has started streaming)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no answer started in time"
    assert proc.stdout is not None
    return os.read(proc.stdout.fileno(), 100)


@pytest.mark.serial
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_keeps_the_question_and_the_partial_answer_of_ask(signum: signal.Signals) -> None:
    env = {**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false"}
    env["SLMCHAT_SMALL__MAX_TOKENS"] = "1000"  # far longer than the test waits
    command = [sys.executable, "-m", "slmchat", "ask", LONG_QUESTION]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = read_first_bytes(proc)
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 128 + signum
    assert err.decode() == f"[stopped by {signum.name}: the partial answer is saved]\n"
    turn = exported_turn()
    assert (turn["user"], turn["status"]) == (LONG_QUESTION, "interrupted")
    assert turn["answer"].strip() and (first + rest).decode().strip().startswith(turn["answer"].strip()[:4])
    assert turn["usage"]["completion_tokens"] < 1000


def spawn_chat(*args: str) -> pexpect.spawn:
    """``slmchat`` in a real terminal (a pty) with a long answer ahead; the app when no args are given."""
    env = {**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false"}
    env["SLMCHAT_SMALL__MAX_TOKENS"] = "1000"
    return pexpect.spawn(
        sys.executable, ["-m", "slmchat", *args], env=env, encoding="utf-8", timeout=90, dimensions=(30, 110)
    )


def close_terminal(child: pexpect.spawn) -> int:
    """Close the terminal as a closed window does (the kernel sends SIGHUP); the process's exit code."""
    os.close(child.child_fd)
    child.closed = True
    _, status = os.waitpid(child.pid, 0)
    child.ptyproc.terminated = True  # reaped here: pexpect must not wait for it again
    return os.waitstatus_to_exitcode(status)


def assert_interrupted_turn() -> None:
    turn = exported_turn()
    assert (turn["user"], turn["status"]) == (LONG_QUESTION, "interrupted")
    assert turn["answer"].strip()


@pytest.mark.serial
def test_closing_the_terminal_of_the_chat_keeps_the_partial_answer() -> None:
    child = spawn_chat("repl")
    child.expect("›")
    child.sendline(LONG_QUESTION)
    child.expect_exact("\x1b[?2004l")  # the input line is done: what follows is the answer
    child.expect(r"\w{3,}")  # its first word
    assert close_terminal(child) == 129
    assert_interrupted_turn()


@pytest.mark.serial
@pytest.mark.parametrize("stop", ["SIGTERM", "closed terminal"])
def test_a_stop_signal_keeps_the_partial_answer_of_the_app(stop: str) -> None:
    child = spawn_chat()
    try:
        child.expect("Ask something")
        child.send(LONG_QUESTION + "\r")
        child.expect(r"tok/s \(live\)")  # the inspector: tokens are streaming
        if stop == "SIGTERM":
            child.kill(signal.SIGTERM)
            child.expect(pexpect.EOF)
            child.close()
            code = child.exitstatus
            assert "[stopped by SIGTERM: the partial answer is saved]" in child.before
        else:
            code = close_terminal(child)
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert code == (143 if stop == "SIGTERM" else 129)
    assert_interrupted_turn()


def frames_then_stop(writer: Any, wait: float, frames: int = 100) -> threading.Thread:
    """Send ``frames`` redraws to Textual's writer thread, then stop it; the drawing thread after ``wait`` s."""

    def draw() -> None:
        for _ in range(frames):
            writer.write("\x1b[H frame")
        writer.stop()

    drawing = threading.Thread(target=draw, daemon=True)
    drawing.start()
    drawing.join(wait)
    return drawing


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Textual's writer, on EIO
def test_the_apps_writer_outlives_a_closed_terminal() -> None:
    """The cause of an app that never left after its terminal closed (CI, 2026-11-30): Textual's writer
    thread died on EIO and its queue of 30 frames then blocked the event loop. The app's driver writes
    through ``TerminalOutput``, which drops frames once the terminal is gone."""
    from queue import Empty

    from textual.drivers._writer_thread import WriterThread

    from slmchat.faces.tui.driver import TerminalOutput

    def closed_terminal() -> Any:
        master, slave = os.openpty()
        os.close(master)  # the window closes: the kernel hangs the terminal up
        return os.fdopen(slave, "w")

    bare = closed_terminal()
    with pytest.raises(OSError):  # what a frame meets now (EIO)
        bare.write("frame")
        bare.flush()
    dying = WriterThread(closed_terminal())
    dying.start()
    blocked = frames_then_stop(dying, wait=2)
    assert blocked.is_alive(), "Textual's own writer did not block: this test no longer shows the cause"
    while blocked.is_alive():  # unblock it, so no thread is left behind
        try:
            dying._queue.get(timeout=0.1)
        except Empty:
            pass

    output = TerminalOutput(closed_terminal())
    writer = WriterThread(output)
    writer.start()
    assert not frames_then_stop(writer, wait=10).is_alive()
    assert output.gone and not writer.is_alive()


@pytest.mark.serial
def test_the_chat_stopped_at_its_prompt_leaves_with_the_signals_code() -> None:
    child = pexpect.spawn(sys.executable, ["-m", "slmchat", "repl"], encoding="utf-8", timeout=60)
    try:
        child.expect("›")
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 143
    assert "[stopped by SIGTERM: the chat is closed]" in child.before
    assert "Traceback" not in child.before


# -- 8a. bytes that are not UTF-8 -------------------------------------------------------------------


def test_a_question_with_bytes_that_are_not_utf8_is_answered_and_stored() -> None:
    base = [sys.executable, "-m", "slmchat", "ask"]
    env = {**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false"}
    env["SLMCHAT_SMALL__MAX_TOKENS"] = "12"
    piped = subprocess.run(base, input=b"Hi \xff", capture_output=True, env=env, timeout=120)
    turn_piped = exported_turn()
    as_argument = subprocess.run([*base, b"Hello \xfe there"], capture_output=True, env=env, timeout=120)
    turn_argument = exported_turn()

    warning = "warning: the question had bytes that are not UTF-8; they were replaced by \ufffd\n"
    for result, turn, question in [
        (piped, turn_piped, "Hi \ufffd"),
        (as_argument, turn_argument, "Hello \ufffd there"),
    ]:
        assert result.returncode == 0, result.stderr.decode()
        assert result.stderr.decode() == warning
        assert result.stdout.decode().strip()  # one answer
        assert (turn["user"], turn["status"]) == (question, "ok")
        assert turn["answer"].strip() == result.stdout.decode().strip()


# -- 8e. Ctrl-C while the CLI starts --------------------------------------------------------------


@pytest.mark.serial
@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.3, 0.4])
def test_ctrl_c_while_the_cli_starts_exits_130_without_a_traceback(delay: float) -> None:
    """Ctrl-C at ``delay`` s after Python has imported the ``slmchat`` package, while the CLI's modules load.

    Before that it is Python's own start-up (site, .pth files), which no program can make quiet:
    ``-X importtime`` says when the package is in (0.03 s on an idle machine, far more on a busy one).
    """
    env = {**os.environ, "SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "slmchat", "ask", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    while not (line := proc.stderr.readline().decode()).rstrip().endswith("| slmchat"):
        assert line, "the process ended before it imported slmchat: " + "".join(seen)
        seen.append(line)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    said = "\n".join(line for line in err.decode().splitlines() if not line.startswith("import time:"))
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
    # 130 from the exit, or -2: ended by SIGINT itself, which a shell also reports as $? = 130. One CI
    # run under load saw -2 (cause not found: possibly a KeyboardInterrupt while llama.cpp had fd 2 on
    # /dev/null, so its traceback went nowhere); either way the user sees nothing and $? is 130.
    assert proc.returncode in (130, -signal.SIGINT), said


@pytest.mark.serial
def test_ctrl_c_at_a_question_says_which_command_stopped() -> None:
    child = pexpect.spawn(sys.executable, ["-m", "slmchat", "keys", "set", "openai"], encoding="utf-8", timeout=60)
    try:
        child.expect("API key for openai")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    said = r"\naborted: `[\w/. -]*slmchat keys` stopped at its question; nothing was changed\r\n"  # python -m slmchat
    assert re.search(said, child.before), child.before
    assert "Aborted!" not in child.before


# -- --debug never shows a key ------------------------------------------------------------------------


def test_a_key_a_server_echoes_is_masked_in_errors_debug_tracebacks_and_history(tmp_path: Path) -> None:
    with openai_server(None) as url:
        large_tier(tmp_path, url)
        env = {"MY_LARGE_KEY": KEY}
        plain = slmchat("ask", "--route", "large", "hi", env=env)
        stored = exported_turn()
        debug = slmchat("--debug", "ask", "--route", "large", "hi", env=env)

    for result in (plain, debug):
        assert KEY not in result.stdout + result.stderr, result.args
        assert (result.returncode, result.stdout) == (1, "")
    assert plain.stderr.startswith(f"error: {url.removesuffix('/v1')}")
    assert "Incorrect API key provided: Bearer [redacted]" in plain.stderr
    assert len(plain.stderr.splitlines()) == 2 and "Traceback" not in plain.stderr  # error and fix
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "openai.BadRequestError: Error code: 400" in debug.stderr  # the cause, with its own words
    assert "Bearer [redacted]" in debug.stderr
    assert stored["status"] == "failed" and "[redacted]" in stored["error"] and KEY not in json.dumps(stored)
    assert_key_absent(tmp_path, KEY)


def _failing_cli() -> click.Group:
    """A group under slmchat's error handling whose one command fails the way a bug would."""

    @click.group(cls=SlmchatGroup)
    @click.option("--debug", is_flag=True)
    def cli(debug: bool) -> None:
        pass

    @cli.command()
    def fetch() -> None:
        raise RuntimeError(f"the server said: Bearer {KEY}")

    return cli


def test_an_unexpected_error_is_one_line_and_its_traceback_only_with_debug() -> None:
    plain = CliRunner().invoke(_failing_cli(), ["fetch"])
    debug = CliRunner().invoke(_failing_cli(), ["--debug", "fetch"])

    assert (plain.exit_code, plain.stdout) == (1, "")
    assert plain.stderr == (
        "error: unexpected error: RuntimeError: the server said: Bearer [redacted]\n"
        "  fix: run again with --debug for the traceback, and report it\n"
    )
    assert (debug.exit_code, debug.stdout) == (1, "")
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.endswith("RuntimeError: the server said: Bearer [redacted]\n")
    assert KEY not in plain.stderr + debug.stderr


@pytest.mark.serial
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_a_real_terminal_an_answer_cannot_retitle_the_window(tmp_path: Path) -> None:
    socket_name = f"slmchat-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket_name]
    done = tmp_path / "done"
    with openai_server(HOSTILE) as url:
        large_tier(tmp_path, url)
        env = " ".join(
            f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.startswith(("SLMCHAT_", "HF_", "PYTHON"))
        )
        ask = f"env {env} MY_LARGE_KEY={KEY} {sys.executable} -m slmchat ask --route large hi"
        command = f"{ask}; touch {done}; sleep 60"  # the pane stays open to be read
        subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "20", command], check=True)
        try:
            assert wait_until(done.exists, timeout=90), "the answer did not finish"
            title = subprocess.run([*tmux, "display", "-p", "#{pane_title}"], capture_output=True, text=True).stdout
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
        finally:
            subprocess.run([*tmux, "kill-server"], check=False)
    assert "pwned" not in title
    assert "Sure.␛]0;pwned␇ Copied" in screen  # shown, with the screen not cleared
