"""Engine overhead against raw llama-cpp-python in two configurations, multi-turn first-token time, CLI cold start.

Run from the repository root (10 to 15 minutes on a 2-core machine; ``--help`` lists every option)::

    python tests/bench/bench_overhead.py [--runs N] [--max-tokens M] [--conversations C] [--pause S]
        [--reset-kv-cache] [--raw-on-main-thread] [--cold-runs K]
        [--skip-engine] [--skip-multi-turn] [--skip-cold] [--json]

Two configurations are measured, and the output says what was on in each (memory: enabled,
extract, store_exchanges, and idle_s where the engine has it; the tools offered; route; model;
max_tokens), and the commit it ran on (noting uncommitted changes under slmchat/):

* "memory off": tools off (``ToolsConfig(enabled=[])``) and memory off: the plain answer path;
* "shipped defaults": ``Config()`` as a user gets it (memory on with fact extraction and stored
  exchanges, every installed tool, route auto), its memory in a fresh temporary folder.

Both run SmolLM2 (``llamacpp:smollm2``) with this script's max_tokens, temperature and seed. The
model loads once, and every ``Session`` gets that same backend object
(``Session(backends={"small": backend})``), so all share weights, threads, context and KV cache.
Each session has its own history database and memory folder in a temporary directory; no user
config, data or history is read or written. The script wraps the ``stream`` method of that one
backend instance to record the messages and sampling settings of every model call and, once the
call has ended, the prompt token ids it evaluated: a fraction of a millisecond on the session side,
after its last token (in the "tail", not in TTFT or decode).

Section 1 ("engine overhead") runs once per configuration. It alternates raw llama-cpp-python
(``Llama.create_chat_completion(stream=True)``, chunks read directly) with ``Session.turn()``
(routing, recall, window building, the worker-thread hand-off to the event loop, the
token-counting logits processor, the store), one prompt in an empty conversation, after one
warm-up of each. The raw side sends exactly the messages (and max_tokens, temperature, seed and
grammar) of the session's last answer call, so with memory on, where recall changes the prompt,
both sides still answer the same prompt; the script reports whether the engine sent the plain
[system, question] prompt, whether its prompt stayed the same from run to run, and whether the raw
side evaluated exactly the engine's prompt tokens. After each session run ``await session.settle()``
finishes its background memory work outside the timed part (its duration is reported), so none of
it runs while the raw side is timed; that work uses the same llama.cpp context, so with memory on
the KV cache no longer holds the previous prompt (see "prompt tokens reused" in the output).

The raw call runs in a freshly started thread, as the engine's generation does (it starts one per
turn), and is timed inside that thread, so no hand-off is involved: like for like. On a busy
2-core machine prompt evaluation (two OpenMP threads that spin-wait on each other) was seen to
take several times longer from the long-lived main thread than from a fresh thread in some
processes, which would credit the engine with a gain that is not its own.
``--raw-on-main-thread`` runs the raw call in the main thread anyway.

* TTFT: from just before the call (``create_chat_completion`` / ``turn``) to the first non-empty
  content delta (raw) or the first ``Token`` event (session).
* decode tok/s: completion tokens / (arrival of the last content delta − arrival of the first).
  The same definition as the engine's own ``Latency.tokens_per_s``, but timed by this script on
  both sides. The time from the last token to the end of the call (the engine saves the turn to
  SQLite there) is reported separately as "tail".
* completion tokens: see ``completion_tokens_from_state``; one exact definition for both sides.
* decode CPU ms/token: CPU time of the whole process (all threads: the generating thread and, for
  the session, the event loop) between the first and the last token, over the completion tokens.
  Unlike wall time it hardly moves when other processes load the machine, so it shows per-token
  engine cost even on a busy box (the load average is printed with the results).
* KV cache: llama-cpp-python keeps the previous call's tokens and re-evaluates only what differs.
  With memory off every run sends the identical prompt, so by default both sides reuse all but the
  last prompt token and TTFT is dominated by the engine's own work plus one token of evaluation.
  ``--reset-kv-cache`` calls ``llama.reset()`` before every run instead, so both sides evaluate the
  full prompt and TTFT includes prompt processing. Either way the script reports how many prompt
  tokens each side took from the KV cache instead of evaluating them.

Goals: decode tok/s session/raw >= 0.97 (both configurations); TTFT session − raw <= 15 ms (memory
off; with the shipped defaults the difference is reported without a goal, since the two sides
start from different KV-cache states there).

Section 2 ("multi-turn") sends the same 8-turn conversation (a fact, then questions, some about the
fact: ``CONVERSATION``) back to back, the two configurations alternately, ``--conversations`` times
(default 3), in the same process, each time in a new ``Session`` with empty memory, so every
repetition measures the same conversation. Per turn it records TTFT (from calling ``session.turn()``
to the first ``Token`` event), the prompt tokens, whether memory was recalled (``MemoryRecalled``),
tool calls, and background memory writes that finished during the turn (``MemorySaved`` /
``MemoryFailed`` in the turn's stream). The figure is the median of turns 2-8 per conversation, then
the median over the conversations; goal: shipped defaults minus memory off <= 30 ms. After each
conversation ``await session.settle()`` is timed: the background work still left when the
conversation ends. A "returning user" (shipped defaults, no goal; ``--no-returning`` skips it) sends
the conversation once, then again in a new conversation of the same session, whose memory now holds
the first: recall adds earlier facts and exchanges to the prompt, and those tokens are evaluated. A
variant "with pauses" (shipped defaults only, one conversation) waits ``--pause`` seconds (default
3; 0 skips it) between turns, as a user who reads the answer would, so background memory work may
run in the pauses; it is reported without a goal.

Section 3 ("cold start") launches ``slmchat ask "What is the capital of France?"`` three times
with fresh, empty SLMCHAT_DATA_DIR / SLMCHAT_CONFIG_DIR (so: the shipped defaults) and measures the
time to the first byte of the answer on its stdout and the total process time.

This is a benchmark, not a test: it prints PASS/MISS against the goals and always exits 0
(unless the engine itself fails). It is not named test_*.py, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL = "llamacpp:smollm2"
PROMPT = (
    "Write a detailed, long story about a lighthouse keeper who finds a mysterious map in an old "
    "chest. Describe the island, the storm, the keeper's memories and the journey, in many paragraphs."
)
#: the multi-turn conversation: facts, then questions, some about the facts
CONVERSATION = (
    "My name is Priya and I keep two cats called Miso and Tofu.",
    "What is a good name for a third cat?",
    "What are my cats called?",
    "How long do cats usually live?",
    "I work as a nurse in Leeds.",
    "Where do I work?",
    "Give me one tip for sleeping after a night shift.",
    "What is my name?",
)
MEASURED_TURNS = slice(1, None)  # turns 2 to 8: the first turn of a conversation is not measured
COLD_QUESTION = "What is the capital of France?"
TEMPERATURE = 0.7
SEED = 1234
MEMORY_OFF = "memory off"
DEFAULTS = "shipped defaults"
CONFIGS = (MEMORY_OFF, DEFAULTS)
GOAL_DECODE_RATIO = 0.97  # session decode tok/s over raw decode tok/s, at least (both configurations)
GOAL_TTFT_DIFF_MS = 15.0  # session TTFT minus raw TTFT, at most (memory off)
GOAL_MULTI_TURN_DIFF_MS = 30.0  # multi-turn TTFT, shipped defaults minus memory off, at most


@dataclass
class Run:
    side: str  # "raw" or "session"
    ttft_ms: float
    decode_tps: float
    completion_tokens: int
    finish: str
    tail_ms: float  # last token -> end of the call (stream exhausted / TurnDone received)
    cpu_ms_per_token: float  # process CPU time between first and last token, per completion token
    cached_prompt_tokens: int  # prompt tokens taken from the KV cache instead of evaluated
    prompt_tokens: int
    # raw: it evaluated exactly the prompt tokens of the session call it replayed;
    # session: its prompt tokens are those of the warm-up session run (the prompt did not change)
    prompt_matches: bool
    answer: str
    engine: dict[str, Any] = field(default_factory=dict)  # session only: what TurnDone reported


# -- helpers --------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (10, 50, 90) with linear interpolation between the runs."""
    if len(values) == 1:
        return values[0]
    if q == 50:
        return statistics.median(values)
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[q // 10 - 1]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def reused_prompt_tokens(state: list[int], prompt: list[int]) -> int:
    """How many prompt tokens a call takes from the KV cache (holding ``state``) instead of evaluating them.

    ``Llama.generate`` keeps the longest common prefix of its state and the new prompt, but
    replays the last prompt token when the whole prompt is cached (to get fresh logits), unless
    the state is exactly the prompt.
    """
    shared = common_prefix(state, prompt)
    if shared == len(prompt) and len(state) > len(prompt):
        return shared - 1
    return shared


def state_tokens(llama: Any) -> list[int]:
    """The token ids currently evaluated into the context (a numpy array: ``tolist`` is ~0.1 ms for 1000)."""
    return [int(t) for t in llama.input_ids[: llama.n_tokens].tolist()]


def completion_tokens_from_state(n_tokens: int, prompt_len: int, finish: str) -> int:
    """Exact completion-token count of a call, from the context's token count right after it.

    Counting content chunks is not exact (llama-cpp-python holds back partial UTF-8 and
    possible stop strings, so one chunk can carry several tokens), and re-tokenizing the
    answer text need not give back the sampled ids. Instead: ``Llama.generate`` evaluates every
    sampled token into the context when it samples the next one, so after the call

    * stopped by length: ``n_tokens == prompt + completion - 1`` (the last sampled token is
      never evaluated);
    * stopped by the end-of-turn token: ``n_tokens == prompt + completion`` (every text token
      was evaluated; the end-of-turn token was sampled but is not output nor evaluated).

    This is the same definition as the engine's (llama.cpp samples, minus the end-of-turn
    token on a natural stop) and as llama-cpp-python's own non-streamed ``usage``; the script
    applies it to both sides and checks it against ``TurnDone.stats.usage`` on every session run.
    It costs nothing during generation, so the raw baseline carries no counting overhead.
    """
    return n_tokens - prompt_len + (1 if finish == "length" else 0)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class CallLog:
    """Records every call to the shared backend: messages, sampling settings, prompt ids, context size.

    It replaces ``stream`` on the one backend instance (not the class). ``in_turn`` marks the
    calls made while the script runs a turn (the answer), as against background memory work.
    """

    def __init__(self, backend: Any, llama: Any) -> None:
        self.llama = llama
        self.inner = backend.stream
        self.calls: list[dict[str, Any]] = []
        self.in_turn = False
        backend.stream = self.stream

    async def stream(self, messages: list[Any], params: Any, cancel: Any) -> Any:
        call: dict[str, Any] = {
            "in_turn": self.in_turn,
            "messages": [m.as_dict() for m in messages],
            "params": params,
            "prompt_ids": None,
            "n_tokens": None,
            "finish": None,
        }
        self.calls.append(call)
        async with aclosing(self.inner(messages, params, cancel)) as items:
            async for item in items:
                if not isinstance(item, str):  # the StreamEnd: the generation has finished
                    prompt_tokens = item.usage.prompt_tokens
                    if prompt_tokens:
                        call["prompt_ids"] = state_tokens(self.llama)[:prompt_tokens]
                    call["n_tokens"] = self.llama.n_tokens
                    call["finish"] = item.finish_reason
                yield item


# -- the configurations ---------------------------------------------------------------------


def make_config(name: str, max_tokens: int, folder: Path) -> Any:
    from slmchat.infra.config import Config, MemoryConfig, TierConfig, ToolsConfig

    small = TierConfig(model=MODEL, max_tokens=max_tokens, temperature=TEMPERATURE, seed=SEED)
    if name == MEMORY_OFF:
        # the plain answer path: no tools (installed plugins would make it a tool turn with another
        # prompt) and no memory (recall would change the prompt, the background write shares the CPUs)
        return Config(small=small, tools=ToolsConfig(enabled=[]), memory=MemoryConfig(enabled=False))
    # what a user gets: every other setting as Config() has it; memory in this run's own folder
    return Config(small=small, memory=MemoryConfig(path=folder / "memory"))


def open_session(name: str, backend: Any, max_tokens: int, folder: Path) -> Any:
    """A session of configuration ``name`` on the shared backend, with its own history and memory folder."""
    from slmchat.engine.session import Session
    from slmchat.infra.store import Store

    folder.mkdir(parents=True, exist_ok=True)
    config = make_config(name, max_tokens, folder)
    return Session(config, store=Store(folder / "history.db"), backends={"small": backend})


def describe(name: str, session: Any) -> dict[str, Any]:
    """What was on in a configuration, as the session sees it."""
    config = session.config
    memory = config.memory
    tools = sorted(getattr(session.toolbox, "tools", None) or {})
    small = session.tier_config("small")
    return {
        "name": name,
        "model": session.model_name("small"),
        "large_tier": session.model_name("large"),
        "max_tokens": small.max_tokens,
        "temperature": small.temperature,
        "seed": small.seed,
        "route": config.route,
        "memory": {
            "enabled": session.memory is not None,
            "extract": memory.extract,
            "store_exchanges": memory.store_exchanges,
            "recall_k": memory.recall_k,
            "recall_tokens": memory.recall_tokens,
            "settings": memory.model_dump(mode="json"),  # every memory setting, as this engine version has them
        },
        "tools": {"enabled": config.tools.enabled, "offered": tools},
        "system_prompt": config.system_prompt,
    }


def config_line(d: dict[str, Any]) -> str:
    m = d["memory"]
    idle = (m.get("settings") or {}).get("idle_s")  # engines that defer memory work until idle
    memory = (
        f"memory on (extract={m['extract']}, store_exchanges={m['store_exchanges']}, recall_k={m['recall_k']}"
        f"{'' if idle is None else f', idle_s={idle:g}'})"
        if m["enabled"]
        else "memory off"
    )
    offered = d["tools"]["offered"]
    tools = f"tools on ({', '.join(offered)}; a turn offers the relevant ones)" if offered else "tools off"
    return (
        f"{d['name']:17}{memory}; {tools}; route {d['route']}; model {d['model']}"
        f"{'' if d['large_tier'] is None else ' + large ' + d['large_tier']}; max_tokens {d['max_tokens']}"
    )


async def timed_settle(session: Any, left: list[bool] | None = None) -> float:
    """Finish the session's background memory work; returns how long that took, in ms.

    ``left`` gets True appended when ``settle`` says work is still left (engines whose ``settle``
    returns a bool; older ones return None: nothing is left by then).
    """
    started = time.perf_counter()
    done = await session.settle()
    if left is not None:
        left.append(done is False)
    return (time.perf_counter() - started) * 1000


# -- section 1: the two paths ---------------------------------------------------------------


def raw_run(llama: Any, call: dict[str, Any]) -> Run:
    """Raw llama-cpp-python on exactly the messages and sampling settings of a recorded session call."""
    params, ref_prompt = call["params"], call["prompt_ids"]
    cached = reused_prompt_tokens(state_tokens(llama), ref_prompt)
    grammar = None
    if params.json_schema:  # a constrained (tool) turn: the same grammar, built before the clock starts
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_json_schema(json.dumps(params.json_schema), verbose=False)
    parts: list[str] = []
    first = last = None
    cpu_first = cpu_last = 0.0
    finish = "?"
    started = time.perf_counter()
    chunks = llama.create_chat_completion(
        messages=call["messages"],
        stream=True,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        seed=params.seed,
        grammar=grammar,
    )
    for chunk in chunks:
        choice = chunk["choices"][0]
        text = choice["delta"].get("content")
        if text:
            last, cpu_last = time.perf_counter(), time.process_time()
            if first is None:
                first, cpu_first = last, cpu_last
            parts.append(text)
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
    ended = time.perf_counter()
    assert first is not None and last is not None, "the raw call produced no text"
    tokens = completion_tokens_from_state(llama.n_tokens, len(ref_prompt), finish)
    return Run(
        side="raw",
        ttft_ms=(first - started) * 1000,
        decode_tps=tokens / (last - first),
        cpu_ms_per_token=(cpu_last - cpu_first) * 1000 / tokens,
        completion_tokens=tokens,
        finish=finish,
        tail_ms=(ended - last) * 1000,
        cached_prompt_tokens=cached,
        prompt_tokens=len(ref_prompt),
        prompt_matches=state_tokens(llama)[: len(ref_prompt)] == ref_prompt,
        answer="".join(parts),
    )


def in_fresh_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a newly started thread, the way the engine runs each generation."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="bench-raw")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


async def session_run(session: Any, log: CallLog, ref_prompt: list[int] | None) -> tuple[Run, dict[str, Any]]:
    """One turn through the engine; also returns its answer call as recorded (what the raw side replays)."""
    from slmchat.engine.events import Token, ToolCall, TurnDone, TurnFailed

    session.new_conversation()  # empty history: the same question every time
    state = state_tokens(log.llama)  # the KV cache the turn starts from (nothing else runs: settled)
    before = len(log.calls)
    first = last = ended = None
    cpu_first = cpu_last = 0.0
    stats = None
    tool_calls = 0
    log.in_turn = True
    try:
        started = time.perf_counter()
        async for event in session.turn(PROMPT):
            now = time.perf_counter()
            if isinstance(event, Token) and event.text:
                last, cpu_last = now, time.process_time()
                if first is None:
                    first, cpu_first = now, cpu_last
            elif isinstance(event, TurnDone):
                stats, ended = event.stats, now
            elif isinstance(event, ToolCall):
                tool_calls += 1
            elif isinstance(event, TurnFailed):
                raise RuntimeError(f"the session turn failed: {event.error} ({event.hint})")
    finally:
        log.in_turn = False
    assert stats is not None and first is not None and last is not None and ended is not None
    calls = [c for c in log.calls[before:] if c["in_turn"]]
    assert calls and calls[-1]["prompt_ids"] is not None, "no model call of the turn was recorded"
    call = calls[-1]
    prompt = call["prompt_ids"]
    tokens = completion_tokens_from_state(call["n_tokens"], len(prompt), call["finish"] or stats.finish_reason)
    plain = [{"role": "system", "content": session.config.system_prompt}, {"role": "user", "content": PROMPT}]
    run = Run(
        side="session",
        ttft_ms=(first - started) * 1000,
        decode_tps=tokens / (last - first),
        cpu_ms_per_token=(cpu_last - cpu_first) * 1000 / tokens,
        completion_tokens=tokens,
        finish=stats.finish_reason,
        tail_ms=(ended - last) * 1000,
        cached_prompt_tokens=reused_prompt_tokens(state, calls[0]["prompt_ids"] or prompt),
        prompt_tokens=len(prompt),
        prompt_matches=prompt == (ref_prompt if ref_prompt is not None else prompt),
        answer=stats.answer,
        engine={
            "completion_tokens": stats.usage.completion_tokens,
            "prompt_tokens": stats.usage.prompt_tokens,
            "ttft_ms": stats.latency.ttft_ms,
            "tokens_per_s": stats.latency.tokens_per_s,
            "engine_ms": stats.latency.engine_ms,  # routing, recall, prompt building (not the model)
            "model_ms": stats.latency.model_ms,
            "model_calls": len(calls),
            "tool_calls": tool_calls,
            "constrained": bool(call["params"].json_schema),
            "plain_prompt": call["messages"] == plain,
            "memory_recalled": len((stats.memory or {}).get("recalled") or []),
        },
    )
    return run, call


async def engine_overhead(
    name: str, backend: Any, log: CallLog, args: argparse.Namespace, folder: Path, say: Any
) -> dict[str, Any]:
    """Section 1 for one configuration: raw and session runs alternating on the shared model."""
    llama = log.llama
    session = open_session(name, backend, args.max_tokens, folder)
    load_before = os.getloadavg()[0]
    settles: list[float] = []
    left: list[bool] = []
    try:
        described = describe(name, session)

        def raw(call: dict[str, Any]) -> Run:
            if args.raw_on_main_thread:
                return raw_run(llama, call)
            return in_fresh_thread(raw_run, llama, call)

        def prepare() -> None:
            if args.reset_kv_cache:
                llama.reset()  # both sides evaluate the whole prompt

        prepare()
        warm_session, call = await session_run(session, log, None)
        warm_settle = await timed_settle(session, left)
        ref_prompt = call["prompt_ids"]
        plain_prompts = [warm_session.engine["plain_prompt"]]
        prepare()
        warm_raw = raw(call)
        say(
            f"[{name}] warm-up: prompt {len(ref_prompt)} tokens; raw {warm_raw.completion_tokens} tokens "
            f"({warm_raw.finish}), session {warm_session.completion_tokens} tokens ({warm_session.finish}); "
            f"settle {warm_settle:.0f} ms"
        )

        measured: list[Run] = []
        for i in range(args.runs):
            prepare()
            measured.append(raw(call))  # the messages of the session's last answer call
            prepare()
            run, call = await session_run(session, log, ref_prompt)
            measured.append(run)
            plain_prompts.append(run.engine["plain_prompt"])
            settles.append(await timed_settle(session, left))  # outside the timed part: nothing runs during raw
            r, s = measured[-2:]
            say(
                f"[{name}] run {i + 1}/{args.runs}: raw {r.decode_tps:6.1f} tok/s ttft {r.ttft_ms:6.1f} ms | "
                f"session {s.decode_tps:6.1f} tok/s ttft {s.ttft_ms:6.1f} ms | settle {settles[-1]:.0f} ms"
            )
    finally:
        await session.aclose()

    raw_runs = [r for r in measured if r.side == "raw"]
    ses = [r for r in measured if r.side == "session"]

    def side(rs: list[Run]) -> dict[str, Any]:
        tps = [r.decode_tps for r in rs]
        ttft = [r.ttft_ms for r in rs]
        return {
            "decode_tps_median": pct(tps, 50),
            "decode_tps_p10": pct(tps, 10),
            "decode_tps_p90": pct(tps, 90),
            "ttft_ms_median": pct(ttft, 50),
            "ttft_ms_p10": pct(ttft, 10),
            "ttft_ms_p90": pct(ttft, 90),
            "tail_ms_median": pct([r.tail_ms for r in rs], 50),
            "cpu_ms_per_token_median": pct([r.cpu_ms_per_token for r in rs], 50),
            "completion_tokens": sorted({r.completion_tokens for r in rs}),
            "finish_reasons": sorted({r.finish for r in rs}),
            "prompt_tokens": sorted({r.prompt_tokens for r in rs}),
            "cached_prompt_tokens": sorted({r.cached_prompt_tokens for r in rs}),
            "prompt_matches": all(r.prompt_matches for r in rs),
        }

    ratio = pct([r.decode_tps for r in ses], 50) / pct([r.decode_tps for r in raw_runs], 50)
    ttft_diff = pct([r.ttft_ms for r in ses], 50) - pct([r.ttft_ms for r in raw_runs], 50)
    raw_cpu = pct([r.cpu_ms_per_token for r in raw_runs], 50)
    ses_cpu = pct([r.cpu_ms_per_token for r in ses], 50)
    counts_agree = all(r.engine["completion_tokens"] == r.completion_tokens for r in [*ses, warm_session])
    return {
        "config": described,
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "temperature": TEMPERATURE,
        "seed": SEED,
        "kv_cache": "reset before every run" if args.reset_kv_cache else "kept (prompt prefix reused)",
        "raw_thread": "main thread" if args.raw_on_main_thread else "a fresh thread per run",
        "prompt_tokens": len(ref_prompt),
        "n_threads": llama.n_threads,
        "raw": side(raw_runs),
        "session": side(ses),
        "engine_reported": {
            "ttft_ms_median": pct([r.engine["ttft_ms"] for r in ses], 50),
            "tokens_per_s_median": pct([r.engine["tokens_per_s"] for r in ses], 50),
            "engine_ms_median": pct([r.engine["engine_ms"] for r in ses], 50),
        },
        "settle_ms_median": pct(settles, 50),
        "settle_ms_max": max(settles),
        "settle_left_work": any(left),  # settle() said background work was still left
        "decode_ratio": ratio,
        "cpu_per_token_ratio": ses_cpu / raw_cpu,
        "ttft_diff_ms": ttft_diff,
        "decode_goal_met": ratio >= GOAL_DECODE_RATIO,
        "ttft_goal": GOAL_TTFT_DIFF_MS if name == MEMORY_OFF else None,
        "ttft_goal_met": ttft_diff <= GOAL_TTFT_DIFF_MS if name == MEMORY_OFF else None,
        # the engine's prompt, and what the raw side made of it
        "prompt_plain": all(plain_prompts),  # [system prompt, question], nothing recalled or added
        "prompt_stable": all(r.prompt_matches for r in ses),  # the same prompt tokens on every run
        "raw_replayed_exactly": all(r.prompt_matches for r in [warm_raw, *raw_runs]),
        "constrained_turns": sum(r.engine["constrained"] for r in ses),
        "tool_calls": sum(r.engine["tool_calls"] for r in ses),
        "model_calls_per_turn": sorted({r.engine["model_calls"] for r in ses}),
        "memory_recalled_items": sorted({r.engine["memory_recalled"] for r in ses}),
        # same prompt, seed and KV-cache state: both sides must sample the very same tokens (the
        # warm-ups may differ: a fresh context evaluates the prompt in one batch, numerically not
        # quite the same as replaying one token after the cached prefix)
        "identical_answers": len({r.answer for r in measured}) == 1,
        "token_count_matches_engine": counts_agree,
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs_detail": [asdict(r) for r in [warm_raw, warm_session, *measured]],
    }


# -- section 2: multi-turn ------------------------------------------------------------------


async def conversation(session: Any, log: CallLog, pause_s: float) -> dict[str, Any]:
    """The 8 turns of ``CONVERSATION`` in a new conversation of ``session``; then its background work settles."""
    from slmchat.engine.events import MemoryFailed, MemoryRecalled, MemorySaved, Token, ToolCall, TurnDone, TurnFailed

    session.new_conversation()
    turns: list[dict[str, Any]] = []
    for number, text in enumerate(CONVERSATION, 1):
        if pause_s and number > 1:
            await asyncio.sleep(pause_s)  # the loop runs: background work may go on meanwhile
        first = None
        recalled: int | None = None
        background = tool_calls = 0
        stats = None
        state = state_tokens(log.llama)  # what the KV cache holds as the turn starts (not timed)
        before = len(log.calls)
        log.in_turn = True
        try:
            started = time.perf_counter()
            async for event in session.turn(text):
                if isinstance(event, Token) and event.text and first is None:
                    first = time.perf_counter()
                elif isinstance(event, MemoryRecalled):
                    recalled = len(event.recalled)
                elif isinstance(event, (MemorySaved, MemoryFailed)):
                    background += 1
                elif isinstance(event, ToolCall):
                    tool_calls += 1
                elif isinstance(event, TurnDone):
                    stats = event.stats
                elif isinstance(event, TurnFailed):
                    raise RuntimeError(f"turn {number} failed: {event.error} ({event.hint})")
            ended = time.perf_counter()
        finally:
            log.in_turn = False
        assert stats is not None
        # the turn's first model call: how much of its prompt the KV cache held (background work
        # running at the same time, as older engines allowed, can make this approximate)
        calls = [c for c in log.calls[before:] if c["in_turn"] and c["prompt_ids"] is not None]
        reused = reused_prompt_tokens(state, calls[0]["prompt_ids"]) if calls else None
        turns.append(
            {
                "turn": number,
                "question": text,
                "ttft_ms": (first - started) * 1000 if first is not None else None,
                "total_ms": (ended - started) * 1000,
                "engine_ttft_ms": stats.latency.ttft_ms,
                "engine_ms": stats.latency.engine_ms,  # routing, recall, prompt building (not the model)
                "model_ms": stats.latency.model_ms,
                "prompt_tokens": stats.usage.prompt_tokens,
                "completion_tokens": stats.usage.completion_tokens,
                "kv_reused_prompt_tokens": reused,
                "model_calls_started_during_turn": len(log.calls) - before,  # the turn's and any background ones
                "memory_recalled": recalled,  # None: no MemoryRecalled event (nothing recalled, or memory off)
                "background_done_during_turn": background,
                "tool_calls": tool_calls,
                "answer": stats.answer,
            }
        )
    left: list[bool] = []
    settle_ms = await timed_settle(session, left)
    measured = [t["ttft_ms"] for t in turns[MEASURED_TURNS] if t["ttft_ms"] is not None]
    return {
        "pause_s": pause_s,
        "turns": turns,
        "ttft_ms_median_turns_2_8": median_or_none(measured),
        "settle_ms": settle_ms,
        "settle_left_work": any(left),
    }


def ms(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


def turn_ttfts(result: dict[str, Any]) -> str:
    return " ".join(ms(t["ttft_ms"]) for t in result["turns"])


async def multi_turn(backend: Any, log: CallLog, args: argparse.Namespace, folder: Path, say: Any) -> dict[str, Any]:
    """Section 2: both configurations alternately, ``args.conversations`` times, each in a new session
    with empty memory (so every repetition is the same conversation); then a returning user (the
    conversation again, in a new conversation of a session whose memory holds the first one: recall
    adds tokens to the prompt) and the pauses variant, both with the shipped defaults."""
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    paused = returning = None
    described: dict[str, Any] = {}

    def fresh(name: str, tag: str) -> Any:
        return open_session(name, backend, args.max_tokens, folder / f"{name.replace(' ', '-')}-{tag}")

    for i in range(args.conversations):
        order = CONFIGS if i % 2 == 0 else CONFIGS[::-1]
        for name in order:
            session = fresh(name, str(i))
            try:
                result = await conversation(session, log, 0.0)
                described.setdefault(name, describe(name, session))
            finally:
                await session.aclose()
            runs[name].append(result)
            say(
                f"[multi-turn {name}] conversation {i + 1}/{args.conversations}: TTFT turns 2-8 median "
                f"{ms(result['ttft_ms_median_turns_2_8'])} ms (per turn: {turn_ttfts(result)}); "
                f"settle {result['settle_ms']:.0f} ms"
            )
    if args.returning:
        session = fresh(DEFAULTS, "returning")
        try:
            await conversation(session, log, 0.0)  # fills memory (settled at its end)
            session.new_conversation()
            returning = await conversation(session, log, 0.0)
        finally:
            await session.aclose()
        say(
            f"[multi-turn {DEFAULTS}, returning user] TTFT turns 2-8 median "
            f"{ms(returning['ttft_ms_median_turns_2_8'])} ms (per turn: {turn_ttfts(returning)}); "
            f"settle {returning['settle_ms']:.0f} ms"
        )
    if args.pause > 0:
        session = fresh(DEFAULTS, "pauses")
        try:
            paused = await conversation(session, log, args.pause)
        finally:
            await session.aclose()
        say(
            f"[multi-turn {DEFAULTS}, {args.pause:g} s pauses] TTFT turns 2-8 median "
            f"{ms(paused['ttft_ms_median_turns_2_8'])} ms (per turn: {turn_ttfts(paused)}); "
            f"settle {paused['settle_ms']:.0f} ms"
        )

    def summary(name: str) -> dict[str, Any]:
        medians = [r["ttft_ms_median_turns_2_8"] for r in runs[name] if r["ttft_ms_median_turns_2_8"] is not None]
        return {
            "ttft_ms_median": median_or_none(medians),  # median of the per-conversation medians
            "ttft_ms_per_conversation": medians,
            "settle_ms_per_conversation": [r["settle_ms"] for r in runs[name]],
            "settle_left_work": any(r["settle_left_work"] for r in runs[name]),
            "conversations": runs[name],
        }

    result: dict[str, Any] = {
        "configs": described,
        "conversations": args.conversations,
        "measured_turns": "2-8",
        **{name: summary(name) for name in CONFIGS},
        "with_pauses": paused,
        "returning_user": returning,
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    off, on = result[MEMORY_OFF]["ttft_ms_median"], result[DEFAULTS]["ttft_ms_median"]
    result["ttft_diff_ms"] = on - off if off is not None and on is not None else None
    result["goal_met"] = result["ttft_diff_ms"] is not None and result["ttft_diff_ms"] <= GOAL_MULTI_TURN_DIFF_MS
    return result


async def run_sessions(args: argparse.Namespace, folder: Path, say: Any) -> dict[str, Any]:
    """Load the model once (through a loader session), then sections 1 and 2 on that one backend."""
    from slmchat.engine.session import Session
    from slmchat.infra.backends.llamacpp import LlamaCppBackend
    from slmchat.infra.store import Store

    (folder / "loader").mkdir(parents=True)
    loader = Session(make_config(MEMORY_OFF, args.max_tokens, folder), store=Store(folder / "loader" / "history.db"))
    result: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        backend = await loader.backend("small")
        load_s = time.perf_counter() - t0
        assert isinstance(backend, LlamaCppBackend), type(backend)
        llama = backend.llama
        log = CallLog(backend, llama)
        result["model"] = {
            "name": MODEL,
            "file": backend.path.name if backend.path else None,
            "n_threads": llama.n_threads,
            "n_ctx": llama.n_ctx(),
            "load_s": load_s,
        }
        say(
            f"model loaded in {load_s:.2f} s ({result['model']['file']}, "
            f"n_threads={llama.n_threads}, n_ctx={llama.n_ctx()})"
        )
        if not args.skip_engine:
            result["engine"] = {
                name: await engine_overhead(name, backend, log, args, folder / f"engine-{name.replace(' ', '-')}", say)
                for name in CONFIGS
            }
        if not args.skip_multi_turn:
            result["multi_turn"] = await multi_turn(backend, log, args, folder / "multi-turn", say)
    finally:
        await loader.aclose()  # the only session that owns the backend: frees the model
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# -- cold start -----------------------------------------------------------------------------


def slmchat_command() -> tuple[list[str], str]:
    """The real console script next to this interpreter (not a pyenv shim), else ``-m slmchat``."""
    beside = Path(sys.executable).parent / "slmchat"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], str(beside)
    found = shutil.which("slmchat")
    if found and "shims" not in found:
        return [found], found
    return [sys.executable, "-m", "slmchat"], f"{sys.executable} -m slmchat"


def cold_run(command: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="slmchat-bench-cold-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLMCHAT_")}
        env["SLMCHAT_DATA_DIR"] = str(Path(tmp, "data"))
        env["SLMCHAT_CONFIG_DIR"] = str(Path(tmp, "config"))
        with open(Path(tmp, "stderr.txt"), "w+b") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [*command, "ask", COLD_QUESTION],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                bufsize=0,
            )
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            first = None
            out = bytearray()
            while byte := os.read(fd, 1):  # unbuffered, byte by byte
                if first is None:
                    first = time.perf_counter()
                out += byte
            code = proc.wait()
            ended = time.perf_counter()
            err.seek(0)
            stderr = err.read().decode(errors="replace").strip()
    return {
        "first_byte_ms": (first - started) * 1000 if first is not None else None,
        "total_ms": (ended - started) * 1000,
        "exit_code": code,
        "answer": out.decode(errors="replace").strip(),
        "stderr": stderr[-500:],
    }


def cold_start(repeats: int, say: Any) -> dict[str, Any]:
    command, shown = slmchat_command()
    runs = []
    for i in range(repeats):
        run = cold_run(command)
        runs.append(run)
        first = f"{run['first_byte_ms']:.0f} ms" if run["first_byte_ms"] is not None else "none"
        say(
            f"cold start {i + 1}/{repeats}: first byte {first}, total {run['total_ms']:.0f} ms, exit {run['exit_code']}"
        )
    firsts = [r["first_byte_ms"] for r in runs if r["first_byte_ms"] is not None]
    return {
        "command": f'{shown} ask "{COLD_QUESTION}"',
        "runs": repeats,
        "first_byte_ms_median": statistics.median(firsts) if firsts else None,
        "total_ms_median": statistics.median(r["total_ms"] for r in runs),
        "all_ok": all(r["exit_code"] == 0 for r in runs),
        "answer": runs[-1]["answer"][:200],
        "stderr": next((r["stderr"] for r in runs if r["exit_code"] != 0), ""),
        "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


# -- report ---------------------------------------------------------------------------------

MARK = {True: "PASS", False: "MISS"}


def yes(value: bool) -> str:
    return "yes" if value else "no"


def code_version() -> str:
    """The commit of the checkout this runs in, and whether it had uncommitted changes (best effort)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "slmchat"],
            cwd=here.parent.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{' + uncommitted changes in slmchat/' if dirty else ''}"


def print_configs(result: dict[str, Any]) -> None:
    configs = result.get("configs") or {}
    model = result.get("model")
    print()
    print("== what was on")
    for described in configs.values():
        print(f"   {config_line(described)}")
    if configs:
        any_config = next(iter(configs.values()))
        print(
            f"   both: temperature {any_config['temperature']}, seed {any_config['seed']}; one loaded model shared by "
            "every session, each session with its own history and memory folder (temporary)"
        )
    if model:
        print(
            f"   model file {model['file']}, n_threads={model['n_threads']}, n_ctx={model['n_ctx']}, "
            f"loaded in {model['load_s']:.2f} s"
        )
    print(f"   code: {result['code']}; machine: {result['cpus']} CPUs", end="")
    print(f"; peak RSS of this process {result['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in result else "")


def print_engine(engine: dict[str, Any]) -> None:
    names = [n for n in CONFIGS if n in engine]
    first = engine[names[0]]
    print()
    print(
        f"== engine overhead: {first['runs']} runs per side per configuration, max_tokens={first['max_tokens']}; "
        f"KV cache {first['kv_cache']}; raw calls in {first['raw_thread']}; the raw side sends the messages of the "
        "session's last answer call"
    )
    loads = ", ".join(f"{n}: {engine[n]['load_avg_1min'][0]} -> {engine[n]['load_avg_1min'][1]}" for n in names)
    print(f"   1-min load average {loads} (above ~0.5 other processes share the CPUs: wall times get noisy)")
    print()
    print(f"   {'':34}" + "".join(f"{n:>24}" for n in names))
    print(f"   {'':34}" + "".join(f"{'raw':>12}{'session':>12}" for _ in names))

    def both(label: str, key: str, fmt: str) -> None:
        cells = "".join(f"{engine[n]['raw'][key]:>12{fmt}}{engine[n]['session'][key]:>12{fmt}}" for n in names)
        print(f"   {label:34}{cells}")

    def span(values: list[int]) -> str:
        """One value, or the range of the values seen (the runs differed: --json lists each run)."""
        return str(values[0]) if len(values) == 1 else f"{min(values)}..{max(values)}"

    def listed(label: str, key: str) -> None:
        cells = "".join(f"{span(engine[n]['raw'][key]):>12}{span(engine[n]['session'][key]):>12}" for n in names)
        print(f"   {label:34}{cells}")

    def one(label: str, cell: Any) -> None:
        print(f"   {label:34}" + "".join(f"{cell(engine[n]):>24}" for n in names))

    for label, key, fmt in [
        ("decode tok/s median", "decode_tps_median", ".1f"),
        ("decode tok/s p10", "decode_tps_p10", ".1f"),
        ("decode tok/s p90", "decode_tps_p90", ".1f"),
        ("TTFT ms median", "ttft_ms_median", ".1f"),
        ("TTFT ms p10", "ttft_ms_p10", ".1f"),
        ("TTFT ms p90", "ttft_ms_p90", ".1f"),
        ("tail ms median", "tail_ms_median", ".1f"),
        ("decode CPU ms/token", "cpu_ms_per_token_median", ".2f"),
    ]:
        both(label, key, fmt)
    listed("prompt tokens", "prompt_tokens")
    listed("prompt tokens reused from KV cache", "cached_prompt_tokens")
    listed("completion tokens", "completion_tokens")
    print()
    one("decode ratio session/raw", lambda e: f"{e['decode_ratio']:.3f} {MARK[e['decode_goal_met']]}")
    print(f"   {'':34}(goal >= {GOAL_DECODE_RATIO} in both)")

    def ttft_cell(e: dict[str, Any]) -> str:
        goal = MARK[e["ttft_goal_met"]] if e["ttft_goal"] is not None else "(no goal)"
        return f"{e['ttft_diff_ms']:+.1f} ms {goal}"

    one("TTFT session - raw", ttft_cell)
    print(f"   {'':34}(goal <= {GOAL_TTFT_DIFF_MS:.0f} ms with memory off)")
    one("decode CPU/token session/raw", lambda e: f"{e['cpu_per_token_ratio']:.3f}")
    one(
        "settle after a run, median/max",
        lambda e: (
            f"{e['settle_ms_median']:.0f}/{e['settle_ms_max']:.0f} ms{' LEFT WORK' if e['settle_left_work'] else ''}"
        ),
    )
    one("engine-reported TTFT median", lambda e: f"{e['engine_reported']['ttft_ms_median']:.1f} ms")
    one("engine-reported engine_ms median", lambda e: f"{e['engine_reported']['engine_ms_median']:.1f} ms")
    one("engine-reported decode median", lambda e: f"{e['engine_reported']['tokens_per_s_median']:.1f} tok/s")
    one("engine sent [system, question]", lambda e: yes(e["prompt_plain"]))
    one("engine prompt same every run", lambda e: yes(e["prompt_stable"]))
    one("raw evaluated the engine's prompt", lambda e: yes(e["raw_replayed_exactly"]))
    one("memory items recalled per run", lambda e: span(e["memory_recalled_items"]))
    one("constrained turns / tool calls", lambda e: f"{e['constrained_turns']} / {e['tool_calls']}")
    one("identical answers, all runs", lambda e: yes(e["identical_answers"]))
    one("token count == TurnDone usage", lambda e: yes(e["token_count_matches_engine"]))


def print_multi_turn(m: dict[str, Any]) -> None:
    print()
    print(
        f"== multi-turn: the same {len(CONVERSATION)}-turn conversation sent back to back, {m['conversations']} "
        "conversations per configuration (alternating), each in a new session with empty memory, same process and model"
    )
    print(f"   1-min load average {m['load_avg_1min'][0]} at start, {m['load_avg_1min'][1]} at end")
    print(
        "   per turn: TTFT ms in each conversation; from the last one: prompt tokens, how many of them the KV "
        "cache held (kv), memory items recalled (- = none), background memory writes finished during the turn (bg)"
    )
    print(
        f"   {'turn':<6}{'question':<42}"
        + "".join(f"{n + ': TTFT ms':>26}{'prompt':>8}{'kv':>6}" for n in CONFIGS)
        + "  recalled bg"
    )
    for i, question in enumerate(CONVERSATION):
        cells = ""
        for name in CONFIGS:
            convs = m[name]["conversations"]
            last = convs[-1]["turns"][i]
            cells += (
                f"{' '.join(ms(c['turns'][i]['ttft_ms']) for c in convs):>26}{last['prompt_tokens']!s:>8}"
                f"{last['kv_reused_prompt_tokens']!s:>6}"
            )
        last = m[DEFAULTS]["conversations"][-1]["turns"][i]
        recalled = "-" if last["memory_recalled"] is None else str(last["memory_recalled"])
        short = question if len(question) <= 40 else question[:39] + "…"
        print(f"   {i + 1:<6}{short:<42}{cells}  {recalled:>8} {last['background_done_during_turn']}")
    off, on = m[MEMORY_OFF], m[DEFAULTS]
    print()
    print(
        f"   TTFT, median of turns 2-8 (median over conversations): "
        f"{MEMORY_OFF} {ms(off['ttft_ms_median'], '.1f')} ms, "
        f"{DEFAULTS} {ms(on['ttft_ms_median'], '.1f')} ms"
    )
    print(
        "   per conversation: "
        + "; ".join(f"{n} {' '.join(ms(v) for v in m[n]['ttft_ms_per_conversation'])} ms" for n in CONFIGS)
    )
    diff = m["ttft_diff_ms"]
    print(
        f"   {DEFAULTS} - {MEMORY_OFF}   {ms(diff, '+.1f')} ms   goal <= {GOAL_MULTI_TURN_DIFF_MS:.0f} ms   "
        f"{MARK[m['goal_met']]}"
    )
    print(
        "   background work left when a conversation ended (settle): "
        + "; ".join(f"{n} {' '.join(ms(v) for v in m[n]['settle_ms_per_conversation'])} ms" for n in CONFIGS)
        + ("   (settle said work was still left)" if any(m[n]["settle_left_work"] for n in CONFIGS) else "")
    )
    returning = m.get("returning_user")
    if returning:
        recalled = [t["memory_recalled"] or 0 for t in returning["turns"]]
        prompts = [t["prompt_tokens"] for t in returning["turns"]]
        print(
            f"   returning user ({DEFAULTS}: the conversation again, the first one in memory; no goal): TTFT per turn "
            f"{turn_ttfts(returning)} ms, median of turns 2-8 {ms(returning['ttft_ms_median_turns_2_8'], '.1f')} ms; "
            f"items recalled per turn {' '.join(map(str, recalled))}; prompt tokens {' '.join(map(str, prompts))}"
        )
    paused = m.get("with_pauses")
    if paused:
        print(
            f"   with {paused['pause_s']:g} s pauses between turns ({DEFAULTS}, one conversation, no goal): "
            "TTFT per turn "
            f"{turn_ttfts(paused)} ms, median of turns 2-8 {ms(paused['ttft_ms_median_turns_2_8'], '.1f')} ms; "
            f"settle at the end {paused['settle_ms']:.0f} ms"
        )


def print_cold(c: dict[str, Any]) -> None:
    print()
    first = c["first_byte_ms"] if "first_byte_ms" in c else c["first_byte_ms_median"]
    print(f"== cold start: {c['command']} (fresh data/config dirs: the shipped defaults), {c['runs']} runs")
    print(f"   first byte of answer median  {first:.0f} ms" if first is not None else "   first byte: none")
    print(f"   total process time median    {c['total_ms_median']:.0f} ms")
    print(f"   peak RSS of a child          {c['peak_child_rss_mb']:.0f} MB")
    print(f"   answer: {c['answer']!r}" + ("" if c["all_ok"] else f"   FAILED: {c['stderr']}"))


def print_goals(result: dict[str, Any]) -> None:
    print()
    print("== goals")
    if "multi_turn" in result:
        m = result["multi_turn"]
        print(
            f"   (a) multi-turn TTFT, {DEFAULTS} - {MEMORY_OFF}, turns 2-8: {ms(m['ttft_diff_ms'], '+.1f')} ms "
            f"(<= {GOAL_MULTI_TURN_DIFF_MS:.0f} ms)   {MARK[m['goal_met']]}"
        )
    if "engine" in result:
        for name in CONFIGS:
            e = result["engine"][name]
            print(
                f"   (b) decode ratio session/raw, {name}: {e['decode_ratio']:.3f} (>= {GOAL_DECODE_RATIO})   "
                f"{MARK[e['decode_goal_met']]}"
            )
        e = result["engine"][MEMORY_OFF]
        print(
            f"       TTFT session - raw, {MEMORY_OFF}: {e['ttft_diff_ms']:+.1f} ms (<= {GOAL_TTFT_DIFF_MS:.0f} ms)   "
            f"{MARK[e['ttft_goal_met']]}"
        )
    if "cold_start" in result:
        c = result["cold_start"]
        first = c["first_byte_ms_median"]
        print(f"   (c) cold start, first byte median: {ms(first)} ms (reported, no goal here)")


def print_table(result: dict[str, Any]) -> None:
    print_configs(result)
    if "engine" in result:
        print_engine(result["engine"])
    if "multi_turn" in result:
        print_multi_turn(result["multi_turn"])
    if "cold_start" in result:
        print_cold(result["cold_start"])
    print_goals(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Configurations: 'memory off' (tools and memory off) and 'shipped defaults' (Config() defaults). "
        "Prints PASS/MISS against the goals and exits 0 unless the engine fails.",
    )
    parser.add_argument("--runs", type=int, default=7, help="engine overhead: measured runs per side (default 7)")
    parser.add_argument("--max-tokens", type=int, default=128, help="answer length limit (default 128)")
    parser.add_argument("--json", action="store_true", help="print every figure (per run, per turn) as one JSON object")
    parser.add_argument(
        "--reset-kv-cache",
        action="store_true",
        help="engine overhead: llama.reset() before every run, so both sides evaluate the whole prompt",
    )
    parser.add_argument(
        "--raw-on-main-thread",
        action="store_true",
        help="engine overhead: run the raw baseline in the main thread instead of a fresh thread per run",
    )
    parser.add_argument(
        "--conversations",
        type=int,
        default=3,
        help="multi-turn: conversations per configuration, run alternately (default 3)",
    )
    parser.add_argument(
        "--no-returning",
        dest="returning",
        action="store_false",
        help="multi-turn: skip the returning user (the conversation again, with the first one in memory)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=3.0,
        help="multi-turn: seconds between turns in the extra 'with pauses' conversation "
        "(shipped defaults only; default 3, 0 skips it)",
    )
    parser.add_argument("--cold-runs", type=int, default=3, help="cold-start launches (default 3)")
    parser.add_argument("--skip-engine", action="store_true", help="skip section 1 (engine overhead)")
    parser.add_argument("--skip-multi-turn", action="store_true", help="skip section 2 (multi-turn)")
    parser.add_argument("--skip-cold", action="store_true", help="skip section 3 (cold start)")
    args = parser.parse_args(argv)
    args.runs = max(1, args.runs)
    args.conversations = max(1, args.conversations)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "options": vars(args),
        "code": code_version(),
        "cpus": os.cpu_count(),
        "temperature": TEMPERATURE,
        "seed": SEED,
    }
    if not (args.skip_engine and args.skip_multi_turn):
        with tempfile.TemporaryDirectory(prefix="slmchat-bench-") as tmp:
            # before anything of slmchat runs: no user config, data or history is read or written
            for name in [k for k in os.environ if k.startswith("SLMCHAT_")]:
                del os.environ[name]
            os.environ["SLMCHAT_DATA_DIR"] = str(Path(tmp, "data"))
            os.environ["SLMCHAT_CONFIG_DIR"] = str(Path(tmp, "config"))
            result.update(asyncio.run(run_sessions(args, Path(tmp), say)))
        configs = {}  # what was on: as section 1 saw it, else as section 2 did
        for name in CONFIGS:
            if name in result.get("engine", {}):
                configs[name] = result["engine"][name]["config"]
            elif "multi_turn" in result:
                configs[name] = result["multi_turn"]["configs"][name]
        result["configs"] = configs
    if not args.skip_cold:
        result["cold_start"] = cold_start(max(1, args.cold_runs), say)
    if args.json:
        print(json.dumps(result, indent=None, default=str))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
