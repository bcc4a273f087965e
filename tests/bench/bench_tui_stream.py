"""How fast the terminal app draws a streamed answer, against `slmchat ask`, and how fast Esc stops one.

Run from the repository root (about half a minute)::

    python tests/bench/bench_tui_stream.py [--tokens N] [--runs N] [--cancels N] [--json]
    python -m pytest tests/bench/bench_tui_stream.py -m slow -s      # the same, as a slow test

The model is ``slmchat.testing.ScriptedBackend``: a reply of ``--tokens`` pieces (2,000 by
default: words and spaces, Markdown paragraphs, headings, lists and fenced code) streamed as
fast as the face takes them, through a real ``Session`` (routing, the repetition check, the
SQLite save). The same reply, in the same process:

* **app**: ``SlmchatApp`` under Textual's ``run_test`` (headless, 100x30, the inspector shown):
  the question is typed and Enter pressed; timed from the backend's first piece to the turn's
  worker finished (``TurnDone`` drawn, ``live`` back to None) and the screen refreshed.
* **ask**: the ``TurnPrinter`` of ``slmchat ask`` (slmchat/faces/cli/ask.py) rendering the events
  to a StringIO, from the first piece to the ``TurnDone``.

Each prints tokens/s (pieces over that wall time) and CPU per token (``time.process_time``,
all threads, over the same span), best of ``--runs`` (the least disturbed by other processes)
and the median, and the app/ask ratio. Goal (issue 11): the app keeps up with ≥ 500 tokens/s.

**Esc**: a slow stream (``delay_s=0.005``, ≤ 200 tokens/s); once 40 tokens are drawn, Esc is
pressed (``pilot.press``, in a task: it returns only when the app is idle) and the time is taken
until the session's ``cancel()`` is called (the key reached the app), until its ``TurnDone``
(status ``interrupted``) went out, and until the turn's worker is done (that ``TurnDone`` drawn,
``live`` None); median and max of ``--cancels``. Goal: ≤ 100 ms.

It is a benchmark: it exits 0 unless a turn did not end as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from slmchat.engine.events import Event, TurnDone, TurnFailed
from slmchat.engine.session import Session
from slmchat.faces.cli.ask import TurnPrinter
from slmchat.faces.tui.app import SlmchatApp
from slmchat.faces.tui.chat_log import ChatLog
from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamItem
from slmchat.infra.config import Config, MemoryConfig, TierConfig
from slmchat.infra.store import Store
from slmchat.testing import ScriptedBackend

QUESTION = "Explain the event loop"
SIZE = (100, 30)
WORDS = (
    "the event loop runs one task at a time and switches at each await so a face can draw while the model "
    "answers tokens arrive in order each one is appended to the answer and the screen is refreshed when "
    "nothing else is waiting a slow call blocks every task so work that takes long runs in a thread"
).split()
CODE = (
    "async def main():", "    async for event in session.turn(text):", "        if isinstance(event, Token):",
    "            print(event.text, end='')", "    await session.aclose()", "asyncio.run(main())",
)  # fmt: skip


def markdown_pieces(count: int, seed: int = 11) -> list[str]:
    """``count`` stream pieces of a Markdown answer: paragraphs, headings, lists and a code block, no loops."""
    rng = random.Random(seed)
    pieces: list[str] = []
    section = 0
    while len(pieces) < count:
        section += 1
        pieces += ["##", f" Part {section}\n\n"]
        for _ in range(rng.randint(40, 80)):
            pieces.append(rng.choice(WORDS) + " ")
        pieces[-1] = pieces[-1].rstrip() + ".\n\n"
        for item in range(rng.randint(3, 6)):
            pieces.append(f"- step {item + 1}:")
            pieces += [" " + rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
            pieces.append("\n")
        pieces.append("\n```python\n")
        for line in CODE[: rng.randint(3, len(CODE))]:
            pieces += [part + " " for part in line.split(" ")[:-1]] + [line.split(" ")[-1] + "\n"]
        pieces.append("```\n\n")
    return pieces[:count]


class FirstPiece(ScriptedBackend):
    """A ``ScriptedBackend`` that notes the wall and CPU clocks when its first piece goes out."""

    first: tuple[float, float] | None = None

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        self.first = None
        async for item in super().stream(messages, params, cancel):
            if self.first is None and isinstance(item, str):
                self.first = (time.perf_counter(), time.process_time())
            yield item


class TimedSession(Session):
    """A ``Session`` that notes when ``cancel`` was called and when its turn's last event went out."""

    cancelled_at = ended_at = 0.0

    def cancel(self) -> None:
        self.cancelled_at = time.perf_counter()
        super().cancel()

    async def turn(self, text: str, **options: Any) -> AsyncIterator[Event]:
        async for event in super().turn(text, **options):
            if isinstance(event, TurnDone | TurnFailed):
                self.ended_at = time.perf_counter()
            yield event


def bench_session(backend: ScriptedBackend, data_dir: Path, max_tokens: int) -> TimedSession:
    """A real session on ``backend``: no large tier, no memory, history in ``data_dir``.

    The tier is priced in the config (0 per token), as a local model is: otherwise its first turn
    would import genai-prices (~0.3 s) to look up a "scripted" model, which is not what is timed.
    """
    small = TierConfig(model="scripted:small", max_tokens=max_tokens, usd_per_mtok_in=0.0, usd_per_mtok_out=0.0)
    config = Config(small=small, memory=MemoryConfig(enabled=False))
    return TimedSession(config, backends={"small": backend}, store=Store(data_dir / "history.db"))


def rate(tokens: int, wall: float, cpu: float) -> dict[str, float]:
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "cpu_ms_per_token": 1000 * cpu / tokens}


async def turn_worker(app: SlmchatApp, pilot: Pilot[Any], text: str) -> Any:
    """Type ``text`` into the input, press Enter; the worker that runs the turn."""
    before = {id(w) for w in app.workers}
    app.query_one("#prompt", Input).focus()
    await pilot.press(*text, "enter")
    while not (workers := [w for w in app.workers if w.group == "turn" and id(w) not in before]):
        await asyncio.sleep(0.001)
    return workers[0]


def app_stream(pieces: list[str], data_dir: Path) -> dict[str, float]:
    """One answer of ``pieces`` drawn by the app; its rate from the first piece to the turn drawn."""
    backend = FirstPiece([pieces], model="small")
    app = SlmchatApp(Config(), lambda: bench_session(backend, data_dir, len(pieces)), show_inspector=True)
    figures: dict[str, float] = {}

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            worker = await turn_worker(app, pilot, QUESTION)
            await worker.wait()
            await pilot.pause()
            end, end_cpu = time.perf_counter(), time.process_time()
            block = app.query_one(ChatLog).blocks()[-1]
            if backend.first is None or block.view.stats is None or block.view.stats.status != "ok":
                raise RuntimeError(f"the app's turn did not end ok: {block.view.stats or block.view.failure}")
            if block.answer.source != "".join(pieces):
                raise RuntimeError("the app drew a different answer than was streamed")
            figures.update(rate(len(pieces), end - backend.first[0], end_cpu - backend.first[1]))

    asyncio.run(scenario())
    return figures


def ask_stream(pieces: list[str], data_dir: Path) -> dict[str, float]:
    """The same answer through `slmchat ask`'s TurnPrinter into a StringIO."""
    backend = FirstPiece([pieces], model="small")
    session = bench_session(backend, data_dir, len(pieces))
    out = io.StringIO()

    async def scenario() -> tuple[float, float]:
        render = TurnPrinter(as_json=False)
        try:
            async with aclosing(session.turn(QUESTION)) as events:
                async for event in events:
                    if render(event) is not None:
                        return time.perf_counter(), time.process_time()
        finally:
            await session.aclose()  # as ask's run_turn does
        raise RuntimeError("the turn ended without a TurnDone")

    with contextlib.redirect_stdout(out):
        end, end_cpu = asyncio.run(scenario())
    if backend.first is None or out.getvalue().rstrip("\n") != "".join(pieces).rstrip("\n"):
        raise RuntimeError("ask printed a different answer than was streamed")
    return rate(len(pieces), end - backend.first[0], end_cpu - backend.first[1])


def esc_latency(cancels: int, data_dir: Path, after_tokens: int = 40) -> list[dict[str, float]]:
    """Esc pressed mid-stream, ``cancels`` times in one app: seconds from the press to the session's
    ``cancel()``, to its ``TurnDone`` going out, and to the turn's worker done (``live`` None)."""
    pieces = markdown_pieces(4000, seed=5)
    backend = ScriptedBackend([pieces], model="small", delay_s=0.005)
    session = bench_session(backend, data_dir, len(pieces))
    app = SlmchatApp(Config(), lambda: session, show_inspector=True)
    latencies: list[dict[str, float]] = []

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await app.ready.wait()
            for n in range(cancels):
                worker = await turn_worker(app, pilot, f"{QUESTION} {n}")
                while app.live is None or app.live.view.tokens < after_tokens:
                    await asyncio.sleep(0.005)
                block = app.live
                start = time.perf_counter()
                # press in a task: Pilot.press returns only once the app is idle, which is not what is timed
                press = asyncio.create_task(pilot.press("escape"))
                await worker.wait()
                end = time.perf_counter()
                latencies.append(
                    {
                        "cancel": session.cancelled_at - start,
                        "turn_done": session.ended_at - start,
                        "drawn": end - start,
                    }
                )
                await press
                if block.view.stats is None or block.view.stats.status != "interrupted" or app.live is not None:
                    raise RuntimeError(f"Esc did not interrupt the turn: {block.view.stats or block.view.failure}")

    asyncio.run(scenario())
    return latencies


def measure(tokens: int, runs: int, cancels: int) -> dict[str, Any]:
    pieces = markdown_pieces(tokens)
    result: dict[str, Any] = {"tokens": tokens, "runs": runs, "size": f"{SIZE[0]}x{SIZE[1]}"}
    with tempfile.TemporaryDirectory(prefix="slmchat-stream-") as folder:
        rows: dict[str, list[dict[str, float]]] = {"app": [], "ask": []}
        for run in range(runs):  # alternate, so both see the same machine
            rows["app"].append(app_stream(pieces, Path(folder) / f"app{run}"))
            rows["ask"].append(ask_stream(pieces, Path(folder) / f"ask{run}"))
        for face, values in rows.items():
            best = max(values, key=lambda row: row["tokens_per_s"])
            result[face] = {
                "best": best,
                "median_tokens_per_s": statistics.median(row["tokens_per_s"] for row in values),
                "median_cpu_ms_per_token": statistics.median(row["cpu_ms_per_token"] for row in values),
            }
        esc = esc_latency(cancels, Path(folder) / "esc")
    result["esc_ms"] = {
        step: {
            "median": 1000 * statistics.median(row[step] for row in esc),
            "max": 1000 * max(row[step] for row in esc),
        }
        for step in ("cancel", "turn_done", "drawn")
    }
    result["esc_ms"]["drawn"]["all"] = [round(1000 * row["drawn"], 1) for row in esc]
    return result


def report(result: dict[str, Any]) -> None:
    print(f"streaming {result['tokens']} scripted tokens (Markdown), best and median of {result['runs']} runs")
    print(f"  {'':<34}{'tokens/s':>10}{'median':>9}{'CPU ms/token':>14}{'median':>9}")
    for face, label in (("app", f"app (run_test {result['size']})"), ("ask", "ask (TurnPrinter → StringIO)")):
        row = result[face]
        print(f"  {label:<34}{row['best']['tokens_per_s']:>10.0f}{row['median_tokens_per_s']:>9.0f}"
              f"{row['best']['cpu_ms_per_token']:>14.3f}{row['median_cpu_ms_per_token']:>9.3f}")  # fmt: skip
    app, ask = result["app"]["best"], result["ask"]["best"]
    print(f"  app/ask: {app['tokens_per_s'] / ask['tokens_per_s']:.4f} of the rate, "
          f"{app['cpu_ms_per_token'] / ask['cpu_ms_per_token']:.0f}x the CPU per token")  # fmt: skip
    print("  goal: the app keeps up with ≥ 500 tokens/s")
    esc = result["esc_ms"]
    print(f"Esc mid-stream, {len(esc['drawn']['all'])} times: ms from the key press (median, max)")
    for step, label in (("cancel", "session.cancel() called"), ("turn_done", "TurnDone out of the session"),
                        ("drawn", "turn drawn, live None (goal ≤ 100)")):  # fmt: skip
        print(f"  {label:<38}{esc[step]['median']:>7.0f}{esc[step]['max']:>7.0f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="pieces in the streamed answer (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="streams per face (default 3)")
    parser.add_argument("--cancels", type=int, default=7, help="Esc presses to time (default 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    result = measure(args.tokens, args.runs, args.cancels)
    print(json.dumps(result)) if args.json else report(result)


@pytest.mark.slow
def test_bench_tui_stream() -> None:
    main([])


if __name__ == "__main__":
    main()
