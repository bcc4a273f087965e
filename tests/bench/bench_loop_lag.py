"""Event-loop responsiveness while a Session answers: how late a 5 ms ticker wakes, by phase.

Run from the repository root (about a minute on two cores)::

    python tests/bench/bench_loop_lag.py [--max-tokens N] [--tick-ms T] [--worst N] [--stacks] [--no-trace]
                                         [--no-tools] [--json]

A face (the REPL, a server) shares its event loop with the engine: while a turn runs, the loop
must still redraw, read keys and serve other requests. This benchmark runs a ticker task on the
loop (``await asyncio.sleep(0.005)`` in a loop) and records how late each wake-up is
(lag = actual interval − 5 ms) while a ``Session`` with memory (a real embedded Chroma in a temp
data dir) and routing (the shipped router and its MiniLM embedding) does four turns:

* a fact ("My sister Ana lives in Porto."), a question, an explanation and a recall
  ("Where does my sister live?"), each consumed to its ``TurnDone`` and followed by
  ``await session.settle()`` (the background memory write: fact extraction by the small model
  and the Chroma writes).

The four turns run twice, each time in a new conversation of the same session: first **cold**
(model load, embedding model load, the memory database opening and every first-use cost land
here; reported apart), then **warm** (the headline figures). Before the session exists, the
ticker runs alone for ``--baseline-s`` seconds: the lag the machine itself causes (load from
other processes), to compare against.

Every tick is put in the phase it woke up in, from the turn's own events:

* ``before first token``: turn start → first ``Token`` (routing, recall, window, prompt evaluation)
* ``streaming``: first ``Token`` → last ``Token``
* ``storing``: last ``Token`` → ``TurnDone`` (stats, the SQLite save)
* ``background memory``: ``TurnDone`` → ``settle()`` returned (exchange + fact writes)

It prints ticks, p50, p99 (nearest rank: with fewer than 100 ticks that is the max) and max lag
overall and per phase, against the goal (p99 ≤ 5 ms and max ≤ 20 ms, on an idle machine), the
load average before and after, the CPU count and how busy the CPUs were during each run (this
process and the others, from /proc/stat). The worst ticks are listed with the turn and phase they
fell in, the last event before the late interval began and the events inside it.

Why a tick was late, on Linux: the ticker reads its thread's /proc/thread-self/schedstat around
every sleep, so each late tick's lag splits into the loop thread *running* (a call on the loop,
or a garbage collection), *waiting for a CPU* (the machine is busy) and, the rest, *asleep past its
timer*: waiting for the GIL that another thread holds (a C extension that does not release it).
The engine's blocking calls (routing, MiniLM, Chroma's Rust bindings, SQLite, llama.cpp) and
full garbage collections are timed with their thread (``--no-trace`` turns that off), and listed
for each late tick and in a table by the worst lag seen while each ran.

``--stacks`` also starts a sampling thread that, while a tick is overdue, takes the stack of the
loop's thread (and, when the sampler itself was held up, of the other threads): it names the
call that blocks the loop, or shows the loop idle in ``epoll`` (then the lag is CPU or GIL
contention, not a blocking call). The sampler adds a little GIL traffic of its own; measure
without it, diagnose with it.

This is a benchmark, not a test: it exits 0 unless the engine itself fails (a ``TurnFailed``,
a ``MemoryFailed`` or an exception). It is not named test_*.py, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TURNS = [
    ("fact", "My sister Ana lives in Porto."),
    ("question", "What is the capital of France?"),
    ("explanation", "Explain why the sky is blue."),
    ("recall", "Where does my sister live?"),
]
PHASES = ("before first token", "streaming", "storing", "background memory")
GOAL_P99_MS = 5.0
GOAL_MAX_MS = 20.0
SEED = 1234


# -- the ticker and the stack sampler --------------------------------------------------------


@dataclass
class Tick:
    start: float  # perf_counter just before the sleep
    wake: float  # perf_counter when the ticker ran again
    lag_ms: float  # (wake - start) - period
    #: from /proc/thread-self/schedstat (Linux), over the tick's interval: the loop thread on a CPU, and
    #: runnable but waiting for one; the rest of the lag it slept past its timer: waiting for the GIL
    cpu_ms: float | None = None
    runq_ms: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # --stacks: what the loop thread was doing


class Ticker:
    """``asyncio.sleep(period)`` in a loop; every wake-up's lateness is kept."""

    def __init__(self, period_s: float) -> None:
        self.period = period_s
        self.ticks: list[Tick] = []
        self.due: float | None = None  # when the pending sleep should end (read by the sampler)
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        period = self.period
        sched = _schedstat_reader()
        while not self._stop:
            before = sched() if sched else None
            start = time.perf_counter()
            self.due = start + period
            await asyncio.sleep(period)
            wake = time.perf_counter()
            tick = Tick(start, wake, (wake - start - period) * 1000)
            if before is not None and sched is not None:
                after = sched()
                tick.cpu_ms, tick.runq_ms = (after[0] - before[0]) / 1e6, (after[1] - before[1]) / 1e6
            self.ticks.append(tick)
        self.due = None


def _schedstat_reader() -> Any:
    """A function giving (ns on a CPU, ns runnable but waiting for one) of the calling thread, or None."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        os.pread(fd, 128, 0)
    except (OSError, AttributeError):
        return None

    def read() -> tuple[int, int]:
        fields = os.pread(fd, 128, 0).split()
        return int(fields[0]), int(fields[1])

    return read


def _where(frame: Any, depth: int = 4) -> dict[str, Any]:
    """A thread's stack, boiled down: innermost frames, the innermost slmchat frame, idle or not."""
    stack = traceback.extract_stack(frame)
    inner = [f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack[-depth:])]
    ours = next((f for f in reversed(stack) if f"{os.sep}slmchat{os.sep}" in f.filename), None)
    last = stack[-1] if stack else None
    idle = bool(last and last.filename.endswith("selectors.py") and last.name in ("select", "poll"))
    return {
        "innermost": inner,
        "slmchat": f"{_short(ours.filename)}:{ours.lineno} {ours.name} [{(ours.line or '').strip()[:90]}]"
        if ours
        else None,
        "idle_in_epoll": idle,
    }


def _short(filename: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", f"{os.sep}lib{os.sep}python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    here = str(Path.cwd()) + os.sep
    return filename[len(here) :] if filename.startswith(here) else filename


class StackSampler(threading.Thread):
    """While the ticker is overdue, sample the loop thread's stack (and the others' if we were held up)."""

    def __init__(self, ticker: Ticker, loop_ident: int, threshold_ms: float, every_ms: float = 1.0) -> None:
        super().__init__(name="bench-stack-sampler", daemon=True)
        self.ticker = ticker
        self.loop_ident = loop_ident
        self.threshold = threshold_ms / 1000
        self.every = every_ms / 1000
        self.samples: dict[int, list[dict[str, Any]]] = {}  # tick index -> samples
        #: times this thread itself woke late (it needs the GIL too): (from, to, every thread's stack then)
        self.stalls: list[tuple[float, float, dict[str, Any]]] = []
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            before = time.perf_counter()
            time.sleep(self.every)
            now = time.perf_counter()
            if now - before - self.every > self.threshold:
                # held up: some thread kept the GIL (the one that just let go is the likely one) or no CPU was free
                frames = sys._current_frames()
                names = {t.ident: t.name for t in threading.enumerate()}
                stacks = {
                    names.get(ident, str(ident)): _where(frame, depth=2)
                    for ident, frame in frames.items()
                    if ident != threading.get_ident()
                }
                self.stalls.append((before + self.every, now, stacks))
            due, index = self.ticker.due, len(self.ticker.ticks)
            if due is None or now < due + self.threshold:
                continue
            kept = self.samples.setdefault(index, [])
            if len(kept) >= 8:
                continue
            frames = sys._current_frames()
            loop_frame = frames.get(self.loop_ident)
            held_ms = (now - before - self.every) * 1000  # how late this thread itself woke
            sample: dict[str, Any] = {
                "overdue_ms": round((now - due) * 1000, 1),
                "sampler_late_ms": round(held_ms, 1),
                "loop": _where(loop_frame) if loop_frame is not None else None,
            }
            if held_ms > self.threshold * 1000:
                names = {t.ident: t.name for t in threading.enumerate()}
                sample["others"] = {
                    names.get(ident, str(ident)): _where(frame, depth=2)
                    for ident, frame in frames.items()
                    if ident not in (self.loop_ident, threading.get_ident())
                }
            kept.append(sample)


#: the engine's blocking calls that run in worker threads (or on the loop), timed by ``CallTrace``:
#: (module, class or None, attribute, label)
TRACED = [
    ("slmchat.routing.policy", "Router", "decide_turn", "route: Router.decide_turn"),
    ("slmchat.infra.embedding", "MiniLMEmbedder", "_load", "embedding: load MiniLM"),
    ("slmchat.infra.embedding", "MiniLMEmbedder", "_run", "embedding: ONNX run"),
    ("slmchat.memory.manager", "Memory", "_open_default", "memory: open Chroma"),
    ("slmchat.memory.manager", "Memory", "recall_hits", "memory: recall_hits"),
    ("slmchat.memory.store", "MemoryStore", "add", "memory: MemoryStore.add"),
    ("slmchat.memory.store", "MemoryStore", "update", "memory: MemoryStore.update"),
    ("slmchat.memory.store", "MemoryStore", "nearest_facts", "memory: MemoryStore.nearest_facts"),
    ("chromadb.api.rust", "RustBindingsAPI", "_add", "chroma: Rust bindings add"),
    ("chromadb.api.rust", "RustBindingsAPI", "_update", "chroma: Rust bindings update"),
    ("chromadb.api.rust", "RustBindingsAPI", "_query", "chroma: Rust bindings query"),
    ("chromadb.api.rust", "RustBindingsAPI", "_get", "chroma: Rust bindings get"),
    ("slmchat.memory.facts", None, "extract_facts", "memory: extract_facts (model call)"),
    ("slmchat.infra.backends.llamacpp", "LlamaCppBackend", "_open", "llama.cpp: load model"),
    ("slmchat.infra.backends.llamacpp", "LlamaCppBackend", "_generate", "llama.cpp: generate"),
    ("slmchat.infra.store", "Store", "save_turn", "store: SQLite save_turn"),
]


class CallTrace:
    """Wraps the engine's blocking calls to record (start, end, label, thread): which ran during a late tick."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, str, str]] = []
        self.missing: list[str] = []

    def install(self) -> None:
        import importlib

        for module_name, owner_name, attr, label in TRACED:
            try:
                module = importlib.import_module(module_name)
                owner = getattr(module, owner_name) if owner_name else module
                original = owner.__dict__[attr] if owner_name else getattr(module, attr)
            except (ImportError, AttributeError, KeyError):
                self.missing.append(label)
                continue
            if isinstance(original, (staticmethod, classmethod)):
                self.missing.append(label)
                continue
            setattr(owner, attr, self._wrap(original, label))

    def trace_gc(self) -> None:
        """Python's cyclic garbage collections as calls too: a full one over a big heap stops every thread."""
        import gc

        started: dict[str, float] = {}

        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
            elif "t" in started:
                start, end, generation = started.pop("t"), time.perf_counter(), info.get("generation")
                if generation == 2 or end - start > 0.002:  # the many quick young collections are left out
                    name = f"gc: generation {generation} collection"
                    self.calls.append((start, end, name, threading.current_thread().name))

        gc.callbacks.append(callback)
        self._gc_callback = callback

    def remove(self) -> None:
        import gc

        callback = getattr(self, "_gc_callback", None)
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)

    def _wrap(self, fn: Any, label: str) -> Any:
        calls = self.calls

        def record(start: float) -> None:
            calls.append((start, time.perf_counter(), label, threading.current_thread().name))

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return (yield from fn(*args, **kwargs))
                finally:
                    record(start)

            return generator
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def coroutine(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    record(start)

            return coroutine

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record(start)

        return plain

    def during(self, a: float, b: float) -> list[tuple[float, float, str, str]]:
        return [call for call in self.calls if call[0] < b and call[1] > a]


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, this process's CPU seconds, the whole machine's busy CPU seconds) now."""
    busy = float("nan")
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / ticks
    except (OSError, ValueError, IndexError):
        pass
    return time.perf_counter(), time.process_time(), busy


def cpu_share(before: tuple[float, float, float], after: tuple[float, float, float], cpus: int) -> dict[str, Any]:
    """How busy the machine's CPUs were between two snapshots, and how much of that was this process."""
    wall = after[0] - before[0]
    mine = after[1] - before[1]
    machine = after[2] - before[2]
    if wall <= 0 or math.isnan(machine):
        return {"wall_s": round(wall, 2), "this_process_cpus": round(mine / wall, 2) if wall > 0 else None}
    return {
        "wall_s": round(wall, 2),
        "machine_busy_cpus": round(machine / wall, 2),  # out of ``cpus``
        "this_process_cpus": round(mine / wall, 2),
        "other_processes_cpus": round(max(0.0, machine - mine) / wall, 2),
        "cpus": cpus,
    }


# -- the turns ---------------------------------------------------------------------------------


@dataclass
class TurnTimes:
    label: str
    text: str
    start: float = 0.0
    first_token: float | None = None
    last_token: float | None = None
    done: float | None = None
    settled: float | None = None
    tier: str | None = None
    recalled: int = 0
    answer: str = ""
    failed: str | None = None

    def phase_at(self, t: float) -> str | None:
        """The phase of this turn at time ``t`` (None if ``t`` is outside the turn)."""
        end = self.settled or self.done
        if t < self.start or end is None or t > end:
            return None
        done = self.done or end
        if t > done:
            return "background memory"
        if self.first_token is None or t < self.first_token:
            return "before first token"
        if self.last_token is not None and t <= self.last_token:
            return "streaming"
        return "storing"


@dataclass
class Run:
    name: str  # "cold" or "warm"
    start: float = 0.0
    end: float = 0.0
    turns: list[TurnTimes] = field(default_factory=list)


class Timeline:
    """Every event the bench saw, with the time it saw it: the turns' own and the session's."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []

    def add(self, what: str) -> None:
        self.events.append((time.perf_counter(), what))

    def last_before(self, t: float) -> tuple[float, str] | None:
        found = None
        for when, what in self.events:
            if when > t:
                break
            found = (when, what)
        return found

    def between(self, a: float, b: float) -> list[tuple[float, str]]:
        return [(when, what) for when, what in self.events if a < when <= b]


def describe(event: Any) -> str:
    kind = event.kind
    if kind == "route_decided":
        return f"route_decided({event.decision.tier})"
    if kind == "memory_recalled":
        return f"memory_recalled({len(event.recalled)} items, {event.ms:.0f} ms)"
    if kind == "token":
        return "token"
    if kind == "turn_done":
        return "turn_done"
    if kind == "turn_failed":
        return f"turn_failed({event.error})"
    if kind == "memory_saved":
        return f"memory_saved({len(event.changes)} changes, {event.ms:.0f} ms)"
    if kind in ("model_loading", "model_ready", "model_failed"):
        return f"{kind}({event.tier})"
    return kind


async def one_run(session: Any, run: Run, timeline: Timeline, say: Any) -> list[str]:
    """The four turns in a new conversation, each to its end and settled; returns the failures."""
    from slmchat.engine.events import MemoryRecalled, RouteDecided, Token, TurnDone, TurnFailed

    failures: list[str] = []
    session.new_conversation()
    run.start = time.perf_counter()
    timeline.add(f"{run.name}: conversation start")
    for label, text in TURNS:
        turn = TurnTimes(label, text)
        run.turns.append(turn)
        timeline.add(f"{run.name}/{label}: turn() called")
        turn.start = time.perf_counter()
        pieces: list[str] = []
        async for event in session.turn(text):
            now = time.perf_counter()
            if isinstance(event, Token):
                if turn.first_token is None:
                    turn.first_token = now
                    timeline.add(f"{run.name}/{label}: first token")
                turn.last_token = now
                pieces.append(event.text)
                continue  # tokens are not put in the timeline one by one (only first, and last below)
            timeline.add(f"{run.name}/{label}: {describe(event)}")
            if isinstance(event, RouteDecided):
                turn.tier = event.decision.tier
            elif isinstance(event, MemoryRecalled):
                turn.recalled = len(event.recalled)
            elif isinstance(event, TurnDone):
                turn.done = now
            elif isinstance(event, TurnFailed):
                turn.done = now
                turn.failed = f"{event.error} ({event.hint})"
                failures.append(f"{run.name}/{label}: {turn.failed}")
        if turn.last_token is not None:
            timeline.events.append((turn.last_token, f"{run.name}/{label}: last token"))
            timeline.events.sort(key=lambda e: e[0])
        turn.answer = "".join(pieces)
        if turn.done is None:
            turn.done = time.perf_counter()
            failures.append(f"{run.name}/{label}: the turn ended without TurnDone or TurnFailed")
        timeline.add(f"{run.name}/{label}: settle() called")
        await session.settle()
        turn.settled = time.perf_counter()
        timeline.add(f"{run.name}/{label}: settle() returned")
        say(
            f"{run.name} {label:12} {turn.tier or '?':5} first token {_ms(turn.first_token, turn.start)}, "
            f"done {_ms(turn.done, turn.start)}, settled {_ms(turn.settled, turn.start)}: "
            f"{' '.join(turn.answer.split())[:70]!r}"
        )
    run.end = time.perf_counter()
    return failures


def _ms(t: float | None, since: float) -> str:
    return f"{(t - since) * 1000:7.0f} ms" if t is not None else "   none"


async def watch_session_events(session: Any, timeline: Timeline, failures: list[str]) -> None:
    """Session events (model loading, background memory writes) into the timeline."""
    from slmchat.engine.events import SESSION_EVENTS

    async for event in session.events():
        if not isinstance(event, SESSION_EVENTS):
            continue  # the turn's own events are put in the timeline by the turn's consumer
        timeline.add(f"session: {describe(event)}")
        if event.kind == "memory_failed":
            failures.append(f"background memory write failed: {event.error}")


# -- figures -----------------------------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def lag_figures(ticks: list[Tick]) -> dict[str, Any]:
    lags = [t.lag_ms for t in ticks]
    if not lags:
        return {
            "ticks": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "over_20_ms": 0, "goal_met": None,
            "late_split": None,
        }  # fmt: skip
    p99, worst = nearest_rank(lags, 99), max(lags)
    return {
        "ticks": len(lags),
        "p50_ms": round(nearest_rank(lags, 50), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(worst, 2),
        "over_5_ms": sum(lag > GOAL_P99_MS for lag in lags),
        "over_20_ms": sum(lag > GOAL_MAX_MS for lag in lags),
        "lag_sum_ms": round(sum(lags), 1),
        "goal_met": p99 <= GOAL_P99_MS and worst <= GOAL_MAX_MS,
        "late_split": late_split(ticks),
    }


def late_split(ticks: list[Tick]) -> dict[str, float] | None:
    """Where the lag of the ticks later than 5 ms went: the loop thread running (a call on the loop),
    waiting for a CPU (the machine is busy), or asleep past its timer (waiting for the GIL)."""
    late = [t for t in ticks if t.lag_ms > GOAL_P99_MS and t.cpu_ms is not None and t.runq_ms is not None]
    if not late:
        return None
    total = sum(t.lag_ms for t in late)
    running = sum(min(t.cpu_ms or 0.0, t.lag_ms) for t in late)
    runq = sum(min(t.runq_ms or 0.0, t.lag_ms) for t in late)
    other = max(0.0, total - running - runq)
    return {
        "late_ticks": len(late),
        "lag_ms": round(total, 1),
        "loop_running_pct": round(100 * running / total, 1),
        "waiting_for_cpu_pct": round(100 * runq / total, 1),
        "waiting_for_gil_pct": round(100 * other / total, 1),
    }


def locate(run: Run, t: float) -> tuple[str | None, str]:
    """(turn label, phase) of time ``t`` in ``run``."""
    for turn in run.turns:
        phase = turn.phase_at(t)
        if phase is not None:
            return turn.label, phase
    return None, "between turns"


def sample_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What the loop's thread was doing while the tick was overdue, most frequent first."""
    where = Counter()
    idle = 0
    others: Counter[str] = Counter()
    for sample in samples:
        loop = sample.get("loop") or {}
        if loop.get("idle_in_epoll"):
            idle += 1
            where["(loop idle in epoll: CPU/GIL contention, not a blocking call)"] += 1
        else:
            where[loop.get("slmchat") or " <- ".join(loop.get("innermost", [])[:2])] += 1
        for name, info in (sample.get("others") or {}).items():
            if not info.get("idle_in_epoll"):
                others[f"{name}: {info.get('slmchat') or ' <- '.join(info.get('innermost', []))}"] += 1
    first_loop = next((s.get("loop") for s in samples if s.get("loop")), None)
    return {
        "samples": len(samples),
        "loop_idle_samples": idle,
        "loop_at": [f"{n}x {w}" for w, n in where.most_common(3)],
        "loop_innermost": first_loop.get("innermost") if first_loop and not first_loop.get("idle_in_epoll") else None,
        "other_threads": [f"{n}x {w}" for w, n in others.most_common(4)],
        "max_sampler_late_ms": max((s.get("sampler_late_ms", 0) for s in samples), default=0),
    }


def call_figures(run: Run, ticks: list[Tick], trace: CallTrace) -> list[dict[str, Any]]:
    """Per traced call: how often, how long, in which threads, and the worst loop lag while it ran."""
    by_label: dict[str, list[tuple[float, float, str, str]]] = {}
    for call in trace.during(run.start, run.end):
        by_label.setdefault(call[2], []).append(call)
    rows = []
    for label, calls in by_label.items():
        walls = [(end - start) * 1000 for start, end, _, _ in calls]
        lags = [t.lag_ms for t in ticks if any(start < t.wake and end > t.start for start, end, _, _ in calls)]
        rows.append(
            {
                "call": label,
                "n": len(calls),
                "wall_ms_p50": round(nearest_rank(walls, 50), 1),
                "wall_ms_max": round(max(walls), 1),
                "threads": sorted(
                    {thread if thread == "MainThread" else thread.rstrip("0123456789_") for *_, thread in calls}
                ),
                "ticks_during": len(lags),
                "lag_ms_max_during": round(max(lags), 1) if lags else None,
                "ticks_over_5_ms_during": sum(lag > GOAL_P99_MS for lag in lags),
            }
        )
    return sorted(rows, key=lambda r: -(r["lag_ms_max_during"] or 0))


def run_figures(
    run: Run, ticks: list[Tick], timeline: Timeline, worst_n: int, trace: CallTrace, sampler: StackSampler | None
) -> dict[str, Any]:
    inside = [t for t in ticks if run.start <= t.wake <= run.end]
    by_phase: dict[str, list[Tick]] = {p: [] for p in PHASES}
    by_turn: dict[str, list[Tick]] = {label: [] for label, _ in TURNS}
    for tick in inside:
        label, phase = locate(run, tick.wake)
        by_phase.setdefault(phase, []).append(tick)
        if label is not None:
            by_turn[label].append(tick)
    worst = []
    for tick in sorted(inside, key=lambda t: t.lag_ms, reverse=True)[:worst_n]:
        label, phase = locate(run, tick.wake)
        before = timeline.last_before(tick.start)
        during = timeline.between(tick.start, tick.wake)
        entry: dict[str, Any] = {
            "at_s": round(tick.wake - run.start, 3),
            "lag_ms": round(tick.lag_ms, 1),
            "loop_cpu_ms": round(tick.cpu_ms, 1) if tick.cpu_ms is not None else None,
            "loop_runq_ms": round(tick.runq_ms, 1) if tick.runq_ms is not None else None,
            "turn": label,
            "phase": phase,
            "last_event_before": f"{before[1]} ({(tick.start - before[0]) * 1000:.0f} ms before the sleep)"
            if before
            else None,
            "events_during": [f"{what} (+{(when - tick.start) * 1000:.0f} ms)" for when, what in during],
            # traced engine calls that overlapped the late interval: thread, and how much of it they covered
            "calls_during": [
                f"{name} [{thread}] {(end - start) * 1000:.0f} ms "
                f"(overlap {(min(end, tick.wake) - max(start, tick.start)) * 1000:.0f} ms)"
                for start, end, name, thread in trace.during(tick.start, tick.wake)
            ],
        }
        if tick.samples:
            entry["stacks"] = sample_summary(tick.samples)
        if sampler is not None:
            stalls = [st for st in sampler.stalls if st[0] < tick.wake and st[1] > tick.start]
            if stalls:
                longest = max(stalls, key=lambda st: st[1] - st[0])
                busy = {
                    name: info.get("slmchat") or " <- ".join(info.get("innermost", []))
                    for name, info in longest[2].items()
                    if not info.get("idle_in_epoll") and name != "MainThread"
                }
                entry["sampler_stall"] = {
                    "ms": round((longest[1] - longest[0]) * 1000, 1),
                    "loop_thread": longest[2].get("MainThread", {}),
                    "other_threads_when_it_resumed": busy,
                }
        worst.append(entry)
    turns = []
    for turn in run.turns:
        turns.append(
            {
                "turn": turn.label,
                "tier": turn.tier,
                "recalled": turn.recalled,
                "first_token_ms": round((turn.first_token - turn.start) * 1000, 1) if turn.first_token else None,
                "done_ms": round((turn.done - turn.start) * 1000, 1) if turn.done else None,
                "settled_ms": round((turn.settled - turn.start) * 1000, 1) if turn.settled else None,
                "answer": " ".join(turn.answer.split())[:120],
                "failed": turn.failed,
                "lag": lag_figures(by_turn[turn.label]),
            }
        )
    return {
        "seconds": round(run.end - run.start, 2),
        "overall": lag_figures(inside),
        "phases": {phase: lag_figures(phase_ticks) for phase, phase_ticks in by_phase.items()},
        "turns": turns,
        "calls": call_figures(run, inside, trace),
        "worst_ticks": worst,
    }


# -- the whole benchmark -----------------------------------------------------------------------


async def bench(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    trace = CallTrace()
    if not args.no_trace:
        trace.install()  # before the Session exists: it only wraps class attributes, nothing is loaded
        trace.trace_gc()

    from slmchat.engine.session import Session
    from slmchat.infra.config import load_config

    cpus = os.cpu_count() or 1
    period = args.tick_ms / 1000
    ticker = Ticker(period)
    sampler = None
    if args.stacks:
        sampler = StackSampler(ticker, threading.get_ident(), args.stack_threshold_ms)
        sampler.start()
    timeline = Timeline()
    failures: list[str] = []

    # constructed before the ticker starts (a face builds its Session before it serves anything)
    started = time.perf_counter()
    config = load_config()
    session = Session(config)
    construct_ms = (time.perf_counter() - started) * 1000
    timeline.add("Session() constructed")
    watcher = asyncio.ensure_future(watch_session_events(session, timeline, failures))

    # the machine alone: the ticker with nothing else on the loop
    ticker.start()
    snap = cpu_snapshot()
    await asyncio.sleep(args.baseline_s)
    baseline_ticks = list(ticker.ticks)
    cpu = {"baseline": cpu_share(snap, cpu_snapshot(), cpus)}
    cold, warm = Run("cold"), Run("warm")
    try:
        for run in (cold, warm):
            snap = cpu_snapshot()
            failures += await one_run(session, run, timeline, say)
            cpu[run.name] = cpu_share(snap, cpu_snapshot(), cpus)
            if run is cold and args.freeze_gc:
                gc.freeze()  # what the chat does after its first answer: loaded objects leave the collector's scans
    finally:
        await ticker.stop()
        if sampler is not None:
            sampler.halt()
        llama = getattr(session.tiers.loaded("small"), "_llama", None)
        n_threads = getattr(llama, "n_threads", None)
        trace.remove()
        closing = time.perf_counter()
        await session.aclose()
        close_ms = (time.perf_counter() - closing) * 1000
        await asyncio.wait_for(watcher, 5)

    if sampler is not None:
        for index, samples in sampler.samples.items():
            if index < len(ticker.ticks):
                ticker.ticks[index].samples = samples

    tools = sorted(session.toolbox.tools) if session.toolbox else []
    return {
        "tick_ms": args.tick_ms,
        "max_tokens": config.small.max_tokens,
        "model": config.small.model,
        "llama_n_threads": n_threads,
        "memory": f"embedded Chroma in {config.memory.path or 'the data dir'}",
        "routing": f"shipped router, embedding {'on' if session.router.uses_embedding else 'off'}",
        "tools": tools,
        "stacks_sampled": bool(sampler),
        "calls_traced": not args.no_trace,
        "trace_missing": trace.missing,
        "session_constructor_ms": round(construct_ms, 1),
        "session_aclose_ms": round(close_ms, 1),
        "baseline": {"seconds": args.baseline_s, **lag_figures(baseline_ticks), "cpu": cpu["baseline"]},
        "cold": {**run_figures(cold, ticker.ticks, timeline, args.worst, trace, sampler), "cpu": cpu["cold"]},
        "warm": {**run_figures(warm, ticker.ticks, timeline, args.worst, trace, sampler), "cpu": cpu["warm"]},
        "failures": failures,
    }


def code_version() -> str:
    """The commit measured, and the slmchat files changed on top of it (others edit the tree too)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "slmchat"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
    version = head.stdout.strip() or "unknown"
    return f"{version} + uncommitted changes in {', '.join(changed)}" if changed else f"{version} (clean slmchat/)"


def write_config(folder: Path, max_tokens: int, tools: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = f'[small]\nmodel = "llamacpp:smollm2"\nmax_tokens = {max_tokens}\nseed = {SEED}\n'
    text += "\n[memory]\nenabled = true\n"
    if not tools:
        text += "\n[tools]\nenabled = []\n"
    (folder / "config.toml").write_text(text, encoding="utf-8")


# -- report --------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else "       -"


def _cpu_line(cpu: dict[str, Any]) -> str:
    if "machine_busy_cpus" not in cpu:
        return f"this process used {cpu.get('this_process_cpus')} CPUs"
    return (
        f"CPUs busy {cpu['machine_busy_cpus']:.2f} of {cpu['cpus']} "
        f"(this process {cpu['this_process_cpus']:.2f}, other processes {cpu['other_processes_cpus']:.2f})"
    )


def print_report(result: dict[str, Any]) -> None:
    mark = {True: "PASS", False: "MISS", None: "-"}
    load = result["load"]
    print()
    print(
        f"== event-loop lag: {result['tick_ms']:g} ms ticker during a Session's turns "
        f"({result['model']}, n_threads={result['llama_n_threads']}, max_tokens={result['max_tokens']}, memory on, "
        f"{result['routing']}, tools: {', '.join(result['tools']) or 'none'})"
    )
    print(
        f"   machine: {load['cpus']} CPUs ({load['cpus_usable']} usable); load average (1, 5, 15 min) "
        f"{load['before']} before, {load['after']} after"
        + (
            "  [busy: other processes took CPU time during the turns, lags are inflated]"
            if load["busy"]
            else "  [other processes were idle during the turns]"
        )
    )
    print(f"   code: {result['code']}")
    print(
        f"   goal: p99 <= {GOAL_P99_MS:g} ms and max <= {GOAL_MAX_MS:g} ms on an idle machine; "
        "percentiles are nearest-rank"
    )
    if result["stacks_sampled"]:
        print("   --stacks: a sampling thread was running (a little extra GIL traffic)")
    if result["trace_missing"]:
        print(f"   not traced (not found): {', '.join(result['trace_missing'])}")
    print(
        f"   Session() constructor {result['session_constructor_ms']:.0f} ms (before the turns, not measured as lag); "
        f"aclose {result['session_aclose_ms']:.0f} ms"
    )
    b = result["baseline"]
    print(
        f"   baseline (ticker alone, {b['seconds']:g} s): {b['ticks']} ticks, p50 {b['p50_ms']:.2f} ms, "
        f"p99 {b['p99_ms']:.2f} ms, max {b['max_ms']:.2f} ms; {_cpu_line(b['cpu'])}"
    )
    for name in ("cold", "warm"):
        r = result[name]
        title = "cold run (first use: model, embedding and memory loads)" if name == "cold" else "warm run (headline)"
        print()
        print(f"-- {title}: {r['seconds']:.1f} s; {_cpu_line(r['cpu'])}")
        print(f"   {'':22}{'ticks':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'>5ms':>6}{'>20ms':>6}  goal")
        rows = [("overall", r["overall"])] + [(p, f) for p, f in r["phases"].items()]
        for label, f in rows:
            print(
                f"   {label:22}{f['ticks']:>7}{_fmt(f['p50_ms'])} {_fmt(f['p99_ms'])} {_fmt(f['max_ms'])}"
                f"{f.get('over_5_ms', 0):>6}{f.get('over_20_ms', 0):>6}  {mark[f['goal_met']]}"
            )
        print("   where the lag of ticks later than 5 ms went (loop thread running a call / waiting for a CPU / asleep")
        print("   past its timer, i.e. waiting for the GIL another thread holds), from /proc/thread-self/schedstat:")
        for label, f in rows:
            split = f.get("late_split")
            if split:
                print(
                    f"     {label:22}{split['late_ticks']:>5} ticks, {split['lag_ms']:8.0f} ms: running "
                    f"{split['loop_running_pct']:5.1f}%  CPU wait {split['waiting_for_cpu_pct']:5.1f}%  "
                    f"GIL wait {split['waiting_for_gil_pct']:5.1f}%"
                )
        print(f"   {'per turn':22}")
        for t in r["turns"]:
            f = t["lag"]
            print(
                f"   {'  ' + t['turn']:22}{f['ticks']:>7}{_fmt(f['p50_ms'])} {_fmt(f['p99_ms'])} {_fmt(f['max_ms'])}"
                f"{f.get('over_5_ms', 0):>6}{f.get('over_20_ms', 0):>6}  {mark[f['goal_met']]}"
                f"   [{t['tier']}, recalled {t['recalled']}, first token {t['first_token_ms']} ms, "
                f"done {t['done_ms']} ms, settled {t['settled_ms']} ms]"
            )
        if r["calls"]:
            print("   engine calls (traced), by the worst loop lag while they ran (overlap is not proof of cause):")
            print(f"     {'call':38}{'n':>4}{'p50 ms':>8}{'max ms':>8}  {'max lag':>8}{'>5ms':>6}  threads")
            for c in r["calls"]:
                lag = f"{c['lag_ms_max_during']:8.1f}" if c["lag_ms_max_during"] is not None else "       -"
                print(
                    f"     {c['call']:38}{c['n']:>4}{c['wall_ms_p50']:>8.1f}{c['wall_ms_max']:>8.1f}  {lag}"
                    f"{c['ticks_over_5_ms_during']:>6}  {', '.join(c['threads'])}"
                )
        print("   worst ticks:")
        for w in r["worst_ticks"]:
            print(
                f"     {w['lag_ms']:7.1f} ms at {w['at_s']:6.2f} s  {w['turn'] or '-'} / {w['phase']}; "
                f"last event before: {w['last_event_before']}"
            )
            if w["loop_cpu_ms"] is not None:
                gil = max(0.0, w["lag_ms"] - min(w["loop_cpu_ms"], w["lag_ms"]) - min(w["loop_runq_ms"], w["lag_ms"]))
                print(
                    f"              loop thread: running {w['loop_cpu_ms']:.1f} ms, waiting for a CPU "
                    f"{w['loop_runq_ms']:.1f} ms, so ~{gil:.0f} ms asleep past its timer (GIL)"
                )
            if w["events_during"]:
                print(f"              events during it: {', '.join(w['events_during'])}")
            if w["calls_during"]:
                print(f"              engine calls during it: {'; '.join(w['calls_during'])}")
            s = w.get("stacks")
            if s:
                print(f"              loop thread ({s['samples']} samples): {'; '.join(s['loop_at'])}")
                if s["loop_innermost"]:
                    print(f"              innermost: {' <- '.join(s['loop_innermost'])}")
            stall = w.get("sampler_stall")
            if stall:
                loop = stall["loop_thread"]
                where = "idle in epoll" if loop.get("idle_in_epoll") else (loop.get("slmchat") or loop.get("innermost"))
                busy = "; ".join(f"{k}: {v}" for k, v in stall["other_threads_when_it_resumed"].items())
                print(
                    f"              the sampler thread was held up {stall['ms']:.0f} ms too (GIL held, or no CPU); "
                    f"then the loop was {where}; others: {busy or 'idle'}"
                )
            elif result["stacks_sampled"] and not s:
                print("              (no stack sample: the sampler did not run while this tick was overdue)")
    print()
    w = result["warm"]["overall"]
    print(
        f"   warm overall: p99 {w['p99_ms']:.2f} ms (goal <= {GOAL_P99_MS:g}), max {w['max_ms']:.2f} ms "
        f"(goal <= {GOAL_MAX_MS:g})   {mark[w['goal_met']]}"
        + ("   (machine busy: judge against the baseline)" if load["busy"] else "")
    )
    if result["failures"]:
        print("   ENGINE FAILURES:")
        for failure in result["failures"]:
            print(f"     {failure}")


def _others_busy(result: dict[str, Any], load_before: float, load_after: float, cpus: int) -> bool:
    others = [result[run]["cpu"].get("other_processes_cpus") for run in ("cold", "warm")]
    if all(isinstance(x, float | int) for x in others):
        return max(others) >= 0.25  # a quarter of a CPU or more taken by other processes
    return max(load_before, load_after) > 0.5 * cpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-tokens", type=int, default=48, help="answer length limit, set in the config (default 48)"
    )
    parser.add_argument("--tick-ms", type=float, default=5.0, help="the ticker's sleep (default 5 ms)")
    parser.add_argument("--baseline-s", type=float, default=2.0, help="seconds of ticker alone first (default 2)")
    parser.add_argument("--worst", type=int, default=6, help="worst ticks listed per run (default 6)")
    parser.add_argument(
        "--stacks", action="store_true", help="sample the loop thread's stack while a tick is overdue (diagnosis)"
    )
    parser.add_argument(
        "--stack-threshold-ms",
        type=float,
        default=4.0,
        help="--stacks: sample once a tick is this overdue (default 4 ms)",
    )
    parser.add_argument(
        "--no-trace", action="store_true", help="do not time the engine's blocking calls (routing, Chroma, SQLite, ...)"
    )
    parser.add_argument("--no-tools", action="store_true", help="turn the installed tools off in the config")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="gc.freeze() after the cold run (the chat does it after its first answer)",
    )
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cpus = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="slmchat-bench-lag-") as tmp:
        # before anything of slmchat runs: no user config, data or history is read or written
        for name in [k for k in os.environ if k.startswith("SLMCHAT_")]:
            del os.environ[name]
        os.environ["SLMCHAT_DATA_DIR"] = str(Path(tmp, "data"))
        os.environ["SLMCHAT_CONFIG_DIR"] = str(Path(tmp, "config"))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        write_config(Path(tmp, "config"), args.max_tokens, not args.no_tools)
        try:
            result = asyncio.run(bench(args, say))
        except Exception as exc:
            traceback.print_exc()
            print(f"the engine failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    load_after = [round(x, 2) for x in os.getloadavg()]
    result["code"] = code_version()
    result["load"] = {
        "before": load_before,
        "after": load_after,
        "cpus": cpus,
        "cpus_usable": usable,
        # other processes on the CPUs while the turns ran (from /proc/stat), else the 1-minute load average
        "busy": _others_busy(result, load_before[0], load_after[0], usable),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
