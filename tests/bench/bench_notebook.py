"""The notebook face in a real Jupyter kernel: load time, first token, display messages, decode speed vs ask.

Run from the repository root (about half a minute)::

    python tests/bench/bench_notebook.py [--runs N] [--tokens N] [--json]
    python -m pytest tests/bench/bench_notebook.py -m slow -s      # the same, as a slow test

Each run starts a python3 ipykernel on this venv's Python (``jupyter_client``), with
``SLMCHAT_CONFIG_DIR`` / ``SLMCHAT_DATA_DIR`` in a new temp folder whose config makes the
embedded SmolLM2 the small tier (``--tokens`` answer tokens, temperature 0, memory off), and
drives it as a frontend does, reading the iopub channel:

* **load**: ``%load_ext slmchat`` from sending the request to its ``execute_reply``.
* **first token, cold**: the first ``%%slm -r small`` cell, from sending it to the first display
  message carrying answer text (the model is loaded inside this cell: ``load_ms`` is printed too).
* **first token, warm**: the same cell again after ``%slm reset`` (model loaded, no history).
* **messages/s**: ``display_data`` + ``update_display_data`` messages of the warm turn over its
  wall time (send to ``execute_reply``): what the stream sends the frontend.
* **decode tok/s**: the warm turn's ``latency.tokens_per_s`` from the output's ``{"slmchat": ...}``
  metadata, against ``slmchat ask --json --route small`` on the same prompt and config in a new
  process (its second turn is not possible there, so ask's figure includes a cold model; decode
  speed is measured after the first token, so loading is not in it). Goal: ratio ≥ 0.95.

Medians over ``--runs`` kernels. It is a benchmark: it exits 0 unless the kernel could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

PROMPT = "Write a short story about a robot who learns to paint."
CONFIG = """
[small]
model = "llamacpp:smollm2"
max_tokens = {tokens}
temperature = 0.0
seed = 1

[memory]
enabled = false

[tools]
enabled = []
"""
DISPLAY = ("display_data", "update_display_data")


def bench_env(dirs: Path, tokens: int) -> dict[str, str]:
    """This environment with slmchat's dirs in ``dirs`` (config written there), offline, no keychain."""
    (dirs / "config").mkdir(parents=True, exist_ok=True)
    (dirs / "config" / "config.toml").write_text(CONFIG.format(tokens=tokens))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLMCHAT_")}
    env.update(SLMCHAT_CONFIG_DIR=str(dirs / "config"), SLMCHAT_DATA_DIR=str(dirs / "data"), HF_HUB_OFFLINE="1",
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")  # fmt: skip
    return env


def execute(kc: Any, code: str, timeout: float = 120) -> dict[str, Any]:
    """Run ``code``; seconds to the reply and to the first display with answer text, display messages, metadata."""
    start = time.perf_counter()
    msg_id = kc.execute(code)
    first = None
    displays = 0
    metadata: dict[str, Any] = {}
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind in DISPLAY:
            displays += 1
            text = msg["content"]["data"].get("text/markdown", "")
            if first is None and text.strip() not in ("", "…"):
                first = time.perf_counter() - start
            metadata = msg["content"].get("metadata", {}) or metadata
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    wall = time.perf_counter() - start
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the cell failed: {reply['content']}")
    return {"wall_s": wall, "first_s": first, "displays": displays, "stats": metadata.get("slmchat")}


def one_kernel(tokens: int) -> dict[str, float]:
    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryDirectory(prefix="slmchat-nb-") as folder:
        km, kc = start_new_kernel(kernel_name="python3", env=bench_env(Path(folder), tokens))
        try:
            load = execute(kc, "%load_ext slmchat")
            cell = f"%%slm -r small\n{PROMPT}"
            cold = execute(kc, cell)
            execute(kc, "%slm reset")
            warm = execute(kc, cell)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    if not (cold["stats"] and warm["stats"]):
        raise RuntimeError("the %%slm cell's output has no slmchat metadata")
    return {
        "load_s": load["wall_s"],
        "cold_first_s": cold["first_s"],
        "cold_load_ms": cold["stats"]["latency"]["load_ms"],
        "warm_first_s": warm["first_s"],
        "warm_wall_s": warm["wall_s"],
        "displays": warm["displays"],
        "messages_per_s": warm["displays"] / warm["wall_s"],
        "tokens": warm["stats"]["usage"]["completion_tokens"],
        "kernel_tok_s": warm["stats"]["latency"]["tokens_per_s"],
    }


def ask_tok_s(tokens: int) -> float:
    """Decode tok/s of ``slmchat ask --json --route small`` on the same prompt and config, in a new process."""
    script = Path(sys.executable).parent / "slmchat"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "slmchat"]
    with tempfile.TemporaryDirectory(prefix="slmchat-ask-") as folder:
        argv = [*command, "ask", "--json", "--route", "small", PROMPT]
        env = bench_env(Path(folder), tokens)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True)
    return float(json.loads(done.stdout)["latency"]["tokens_per_s"])


def measure(runs: int, tokens: int) -> dict[str, Any]:
    rows = [one_kernel(tokens) for _ in range(runs)]
    asks = [ask_tok_s(tokens) for _ in range(runs)]
    summary: dict[str, Any] = {"runs": runs, "max_tokens": tokens, "cpus": os.cpu_count()}
    for figure in rows[0]:
        values = [row[figure] for row in rows]
        summary[figure] = {"median": statistics.median(values), "all": values}
    summary["ask_tok_s"] = {"median": statistics.median(asks), "all": asks}
    summary["ratio"] = summary["kernel_tok_s"]["median"] / summary["ask_tok_s"]["median"]
    return summary


def report(s: dict[str, Any]) -> None:
    med = {k: v["median"] for k, v in s.items() if isinstance(v, dict)}
    print(f"%%slm in a real ipykernel, {s['runs']} kernels, SmolLM2 max_tokens={s['max_tokens']}, {s['cpus']} CPUs")
    print(f"  %load_ext slmchat            {med['load_s']:.3f} s")
    print(
        f"  first token, cold            {med['cold_first_s']:.3f} s  (model load inside: {med['cold_load_ms']:.0f} ms)"
    )
    print(f"  first token, warm            {med['warm_first_s']:.3f} s")
    print(f"  display messages             {med['displays']:.0f} in {med['warm_wall_s']:.2f} s = "
          f"{med['messages_per_s']:.1f}/s for {med['tokens']:.0f} tokens")  # fmt: skip
    print(f"  decode, kernel               {med['kernel_tok_s']:.1f} tok/s")
    print(f"  decode, slmchat ask --json   {med['ask_tok_s']:.1f} tok/s")
    print(f"  ratio kernel/ask             {s['ratio']:.3f}  (goal ≥ 0.95)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="kernels (and ask runs) to take the median of (default 3)")
    parser.add_argument("--tokens", type=int, default=128, help="the small tier's max_tokens (default 128)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    summary = measure(args.runs, args.tokens)
    print(json.dumps(summary)) if args.json else report(summary)


@pytest.mark.slow
def test_bench_notebook() -> None:
    pytest.importorskip("ipykernel")
    main(["--runs", "3"])


if __name__ == "__main__":
    main()
