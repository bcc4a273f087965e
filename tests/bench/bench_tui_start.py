"""Cold start of the terminal app in a real terminal: how soon the input takes keys, and the small model is ready.

Run from the repository root (about a minute)::

    python tests/bench/bench_tui_start.py [--runs N] [--size 100x30] [--json]
    python -m pytest tests/bench/bench_tui_start.py -m slow -s      # the same, as a slow test

Each run starts ``slmchat`` (no arguments: the Textual app) in a detached tmux session of a
fixed size, with ``SLMCHAT_DATA_DIR`` and ``SLMCHAT_CONFIG_DIR`` in a new temp folder, and
reads the screen with ``tmux capture-pane -p`` every ~10 ms from the moment tmux is asked to
start it:

* **keys**: until a typed character shows in the input line. While it does not, each poll
  types the marker again (``send-keys``), so the figure is when the app first drew a key it
  was given, whatever it did with keys typed before it was listening.
* **ready**: until the status line (the top line) says ``small: ready``: the session built
  off the UI thread and the embedded SmolLM2 loaded by llama.cpp.

A **fresh** run has empty dirs (the history database and memory are created); a **warm** run
is a second start on the same dirs, right after (files in the page cache). Runs alternate
fresh, warm, fresh, ... and the medians are printed with the slowest run. The goal of issue 11
is keys ≤ 1.0 s.

Also printed: the time to import ``slmchat.faces.tui.app`` and ``slmchat.faces.cli.main`` in a
new interpreter (median of ``--runs``), the part of the start that is plain Python imports;
``python -X importtime -c "import slmchat.faces.tui.app"`` says which modules it goes to.

The polling itself costs CPU (two tmux clients per 10 ms on the same cores as the app); the
figures include that. It is a benchmark: it exits 0 unless the app did not start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

MARK = "Q"  # typed until it shows in the input line
POLL_S = 0.01


class Tmux:
    """One program in a detached tmux session on a private server: type keys, read the screen.

    The server (``tmux -L <unique name>``) is ours alone, so closing it never touches another
    tmux the user runs, and the program gets exactly the environment given here.
    """

    def __init__(self, command: Sequence[str], *, size: tuple[int, int], env: dict[str, str]) -> None:
        self.socket = f"slmchat-{uuid.uuid4().hex[:12]}"
        self.env = {k: v for k, v in env.items() if k not in ("TMUX", "TMUX_PANE")}
        width, height = size
        self._tmux("new-session", "-d", "-s", "app", "-x", str(width), "-y", str(height), *map(str, command))
        #: the program's process id (tmux runs it directly in the pane)
        self.pid = int(self._tmux("list-panes", "-t", "app", "-F", "#{pane_pid}").split()[0])
        self._socket_path = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0 and args[0] not in ("kill-server", "list-panes"):
            raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> list[str]:
        """The visible lines, as text (no colours)."""
        return self._tmux("capture-pane", "-p", "-t", "app").splitlines()

    def text(self) -> str:
        return "\n".join(self.screen())

    def send(self, *keys: str, literal: bool = False) -> None:
        """Keys by tmux name (``Enter``, ``F3``, ``C-b``, ``Escape``), or text with ``literal``."""
        self._tmux("send-keys", "-t", "app", *(("-l",) if literal else ()), *keys)

    def alive(self) -> bool:
        """Whether the program still runs (the session ends with it)."""
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "app"], env=self.env,
                              capture_output=True).returncode == 0  # fmt: skip

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float, *, every: float = POLL_S) -> list[str]:
        """Poll the screen until ``found(lines)``; the lines then. On timeout, fail with the screen in the message."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if found(lines):
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(f"not on screen after {timeout:.0f} s; the screen:\n" + "\n".join(lines))
            time.sleep(every)

    def close(self) -> None:
        """End the session and its server (and its socket file); the program gets SIGHUP, and SIGKILL if it
        is still there after 5 s."""
        self._tmux("kill-server")
        self._socket_path.unlink(missing_ok=True)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{self.pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def slmchat_command() -> list[str]:
    """The installed ``slmchat`` script beside this Python (what a user runs), else ``python -m slmchat``."""
    script = Path(sys.executable).parent / "slmchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "slmchat"]


def app_env(config_dir: Path, data_dir: Path) -> dict[str, str]:
    """This environment with the app's dirs pointed at ``config_dir`` and ``data_dir`` and nothing else of slmchat's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLMCHAT_")}
    env.update(SLMCHAT_CONFIG_DIR=str(config_dir), SLMCHAT_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1")
    return env


def input_line(lines: list[str]) -> str:
    """The input's text row: the bordered row just above the footer (the last line)."""
    return lines[-3] if len(lines) >= 3 and lines[-3].startswith("▊") else ""


def small_ready(lines: list[str]) -> bool:
    return bool(lines) and "small: ready" in lines[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_start(dirs: Path, size: tuple[int, int], timeout: float) -> dict[str, float]:
    """Start the app once on ``dirs``: seconds (wall, and the app's CPU) until a key shows in the input
    and until the small model is ready."""
    tmux = Tmux(slmchat_command(), size=size, env=app_env(dirs / "config", dirs / "data"))
    start = time.perf_counter()
    pid = tmux.pid
    keys = ready = None
    try:
        while ready is None or keys is None:
            lines = tmux.screen()
            now = time.perf_counter() - start
            if keys is None and MARK in input_line(lines):
                keys, keys_cpu = now, cpu_seconds(pid)
            if ready is None and small_ready(lines):
                ready, ready_cpu = now, cpu_seconds(pid)
            if now > timeout:
                raise TimeoutError(f"the app did not start in {timeout:.0f} s; the screen:\n" + "\n".join(lines))
            if keys is None:
                tmux.send(MARK, literal=True)
            time.sleep(POLL_S)
        tmux.send("C-q")  # quit the app properly, so the warm run finds the files as a user leaves them
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tmux.alive():
            time.sleep(0.05)
    finally:
        tmux.close()
    return {"keys_s": keys, "ready_s": ready, "keys_cpu_s": keys_cpu, "ready_cpu_s": ready_cpu}


def import_seconds(module: str, runs: int) -> float:
    """Median wall time of ``python -c "import module"`` minus that of ``python -c pass``."""

    def timed(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    bare = statistics.median(timed("pass") for _ in range(runs))
    return statistics.median(timed(f"import {module}") for _ in range(runs)) - bare


def measure(runs: int, size: tuple[int, int], timeout: float) -> dict[str, object]:
    results: dict[str, list[dict[str, float]]] = {"fresh": [], "warm": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="slmchat-start-") as folder:
            results["fresh"].append(one_start(Path(folder), size, timeout))
            results["warm"].append(one_start(Path(folder), size, timeout))
    summary: dict[str, object] = {"runs": runs, "size": f"{size[0]}x{size[1]}", "cpus": os.cpu_count()}
    for kind, rows in results.items():
        for figure in ("keys_s", "ready_s", "keys_cpu_s", "ready_cpu_s"):
            values = [row[figure] for row in rows]
            summary[f"{kind}_{figure}"] = {"median": statistics.median(values), "max": max(values), "all": values}
    summary["import_s"] = {m: import_seconds(m, runs) for m in ("slmchat.faces.tui.app", "slmchat.faces.cli.main")}
    return summary


def report(summary: dict[str, object]) -> None:
    print(f"slmchat start in tmux {summary['size']}, {summary['runs']} runs each, {summary['cpus']} CPUs")
    print(f"  {'':<8}{'keys median':>13}{'max':>8}{'cpu':>8}{'ready median':>14}{'max':>8}{'cpu':>8}")
    for kind in ("fresh", "warm"):
        keys, keys_cpu, ready, ready_cpu = (
            summary[f"{kind}_{f}"] for f in ("keys_s", "keys_cpu_s", "ready_s", "ready_cpu_s")
        )
        line = f"  {kind:<8}{keys['median']:>12.3f}s{keys['max']:>7.3f}s{keys_cpu['median']:>7.3f}s"  # type: ignore[index]
        print(line + f"{ready['median']:>13.3f}s{ready['max']:>7.3f}s{ready_cpu['median']:>7.3f}s")  # type: ignore[index]
    print("  cpu: the app's own CPU time (all threads) at that moment, median; wall figures include waiting for CPUs")
    print("  goal: keys ≤ 1.000 s")
    for module, seconds in summary["import_s"].items():  # type: ignore[attr-defined]
        print(f"  import {module}: {seconds:.3f} s (median, new interpreter, minus bare start)")


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh and warm starts each (default 5)")
    parser.add_argument("--size", type=parse_size, default=(100, 30), help="terminal WIDTHxHEIGHT (default 100x30)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds one start may take (default 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        sys.exit("tmux is not installed: apt-get install tmux")
    summary = measure(args.runs, args.size, args.timeout)
    print(json.dumps(summary)) if args.json else report(summary)


@pytest.mark.slow
def test_bench_tui_start() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    main(["--runs", "5"])


if __name__ == "__main__":
    main()
