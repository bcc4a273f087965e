"""Resident memory of the terminal app with the embedded model loaded, against one `slmchat ask`.

Run from the repository root (about a minute)::

    python tests/bench/bench_tui_memory.py [--runs N] [--json]
    python -m pytest tests/bench/bench_tui_memory.py -m slow -s      # the same, as a slow test

Both run the default config (SmolLM2 in llama.cpp as the small tier, memory on, no large tier)
with ``SLMCHAT_DATA_DIR`` and ``SLMCHAT_CONFIG_DIR`` in a new temp folder each run:

* **app**: ``slmchat`` in a detached tmux session (100x30). Its resident set (``VmRSS`` in
  /proc/<pid>/status) once the status line says ``small: ready`` and the figure has settled
  (changed less than 1 MB over a second), then again after it answered "hi" (``VmRSS``, and
  ``VmHWM``: the peak so far).
* **ask**: ``slmchat ask hi``, its peak resident set: "Maximum resident set size" from
  ``/usr/bin/time -v`` when present, else ``VmHWM`` polled every 10 ms until it exits.

Medians over ``--runs`` are printed in MB (10^6 bytes), with the ratios app/ask. It is a
benchmark: it exits 0 unless a program failed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from bench_tui_start import Tmux, app_env, slmchat_command, small_ready

SIZE = (100, 30)


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (``VmRSS``, ``VmHWM``)."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


def settled_kb(pid: int, timeout: float = 10.0) -> int:
    """``VmRSS`` once it changed by less than 1 MB over a second (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = status_kb(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = status_kb(pid, "VmRSS")
        if abs(now - last) < 1000:
            return now
        last = now
    return last


def answered(lines: list[str]) -> bool:
    """A finished turn's stats line (``... tok/s ...``) is in the log and the status line is idle again."""
    return bool(lines) and "thinking" not in lines[0] and any("tok/s" in line for line in lines[1:])


def app_memory(dirs: Path, timeout: float) -> dict[str, int]:
    tmux = Tmux(slmchat_command(), size=SIZE, env=app_env(dirs / "config", dirs / "data"))
    try:
        tmux.wait_for(small_ready, timeout)
        ready = settled_kb(tmux.pid)
        tmux.send("hi", literal=True)
        tmux.send("Enter")
        tmux.wait_for(answered, timeout, every=0.1)
        after = settled_kb(tmux.pid)
        return {"ready_kb": ready, "answered_kb": after, "answered_peak_kb": status_kb(tmux.pid, "VmHWM")}
    finally:
        tmux.close()


def ask_peak_kb(dirs: Path, timeout: float) -> int:
    command = [*slmchat_command(), "ask", "hi"]
    env = app_env(dirs / "config", dirs / "data")
    if Path("/usr/bin/time").exists():
        done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"slmchat ask failed: {done.stderr[-2000:]}")
        return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, status_kb(process.pid, "VmHWM"))
        except (OSError, RuntimeError):  # exiting: /proc/<pid> is going or a zombie without Vm lines
            pass
        time.sleep(0.01)
    if process.returncode != 0:
        raise RuntimeError(f"slmchat ask failed with exit code {process.returncode}")
    return peak


def measure(runs: int, timeout: float) -> dict[str, object]:
    rows: list[dict[str, int]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="slmchat-mem-app-") as app_dir:
            row = app_memory(Path(app_dir), timeout)
        with tempfile.TemporaryDirectory(prefix="slmchat-mem-ask-") as ask_dir:
            row["ask_peak_kb"] = ask_peak_kb(Path(ask_dir), timeout)
        rows.append(row)
    summary: dict[str, object] = {"runs": runs, "all": rows}
    for key in rows[0]:
        summary[key] = statistics.median(row[key] for row in rows)
    return summary


def report(summary: dict[str, object]) -> None:
    mb = {k: v * 1024 / 1e6 for k, v in summary.items() if k.endswith("_kb")}  # type: ignore[operator]
    print(f"resident memory, median of {summary['runs']} runs (MB), default config, fresh dirs each run")
    print(f"  app, small: ready, settled            {mb['ready_kb']:>7.0f}")
    print(f"  app, after answering 'hi'             {mb['answered_kb']:>7.0f}   peak {mb['answered_peak_kb']:.0f}")
    print(f"  slmchat ask hi, peak                  {mb['ask_peak_kb']:>7.0f}")
    print(f"  app/ask: {mb['ready_kb'] / mb['ask_peak_kb']:.2f} at ready, "
          f"{mb['answered_peak_kb'] / mb['ask_peak_kb']:.2f} peak after one answer")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each step may take (default 120)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        sys.exit("tmux is not installed: apt-get install tmux")
    summary = measure(args.runs, args.timeout)
    print(json.dumps(summary)) if args.json else report(summary)


@pytest.mark.slow
def test_bench_tui_memory() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    main([])


if __name__ == "__main__":
    main()
