"""Tool calling measured on BFCL files: the same agent loop the chat uses, stopped at the first call.

Each item offers its functions (compact or JSON-schema prompt, constrained or not) and asks
its question; the first valid call is scored with BFCL's AST rules (``bfcl.score_call``).
Items without answers (irrelevance) score whether no tool was called.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat.eval.bfcl import BfclItem, score_call, to_json_schema
from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamEnd
from slmchat.tools.agent import AgentSettings, ToolLoop
from slmchat.tools.base import ToolSpec, tool_from_spec
from slmchat.tools.calls import ReplySchema
from slmchat.tools.prompt import PromptStyle, openai_tools, tool_section
from slmchat.tools.registry import Toolbox
from slmchat.tools.relevance import relevant_toolbox


@dataclass
class ItemResult:
    """One BFCL item: what the model did and how it scored."""

    id: str
    ok: bool
    called: str | None
    reason: str
    termination: str
    recoveries: int
    model_calls: int
    relevant: bool  # the item has an accepted call (not an irrelevance item)
    tool_tokens: int
    json_tool_tokens: int
    offered_tool_tokens: int  # after the relevance gate: what the prompt really carried
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    outputs: list[str] = field(default_factory=list)  # raw model replies, in order
    dropped: int = 0  # calls dropped because their values were not in the question


def item_toolbox(item: BfclItem) -> Toolbox:
    """The item's functions as tools that describe calls (nothing runs in an evaluation)."""
    box = Toolbox()
    for function in item.functions:
        spec = ToolSpec(function["name"], function.get("description", ""), to_json_schema(function["parameters"]))
        box.tools[spec.name] = tool_from_spec(spec)
    return box


async def run_item(
    backend: ChatBackend,
    item: BfclItem,
    *,
    style: PromptStyle,
    constrain: bool,
    max_tokens: int = 256,
    settings: AgentSettings | None = None,
    gate: bool = True,
    ground: bool = True,
    spans: bool = False,
    fill_named: bool = True,
) -> ItemResult:
    """Ask one item and score its first call.

    With ``gate``, only functions relevant to the question are offered (``tools.relevance``,
    as in the chat); with none relevant the model is not asked and no tool is called. With
    ``ground``, a call none of whose values is in the question is dropped (``tools.grounding``).
    ``spans`` and ``fill_named`` shape the grammar (``AgentSettings``), as in the chat.
    """
    full = item_toolbox(item)
    box = full
    if gate:
        from slmchat.infra.embedding import default_embedder

        box = relevant_toolbox(full, item.messages[-1]["content"], None, default_embedder())
    settings = settings or AgentSettings(
        style=style, constrain=constrain, ground=ground, spans=spans, fill_named=fill_named
    )
    outputs: list[str] = []
    prompt_tokens = completion_tokens = 0

    async def step(tier: str, messages: list[Message], schema: ReplySchema | None) -> Any:
        nonlocal prompt_tokens, completion_tokens
        params = GenParams(
            max_tokens=max_tokens,
            temperature=0.0,
            seed=0,
            json_schema=schema.schema if schema else None,
            tools=openai_tools(box.specs) if schema and schema.tools else None,
        )
        parts: list[str] = []
        async for piece in backend.stream(messages, params, CancelToken()):
            if isinstance(piece, StreamEnd):
                prompt_tokens += piece.usage.prompt_tokens or 0
                completion_tokens += piece.usage.completion_tokens or 0
                continue
            parts.append(piece)
            yield piece
        outputs.append("".join(parts))

    loop = ToolLoop(box, step, settings=settings, stop_at_first_call=True)
    started = time.perf_counter()
    messages = [Message(m["role"], m["content"]) for m in item.messages]
    if box:
        async for _event in loop.run("", messages):
            pass
    else:
        loop.result.termination = "answered"  # nothing relevant to offer: a plain answer, no call
    seconds = time.perf_counter() - started
    run = loop.result
    call = run.first_call
    if item.ground_truth is None:
        ok, reason = call is None, f"called {call.name}" if call else ""
    elif call is None:
        ok, reason = False, "no call"
    else:
        ok, reason = score_call(call.name, call.arguments, item.functions, item.ground_truth)
    count = backend.count_tokens
    return ItemResult(
        id=item.id,
        ok=ok,
        called=call.name if call else None,
        reason=reason,
        termination=run.termination or "error",
        recoveries=run.recoveries,
        model_calls=run.steps,
        relevant=item.ground_truth is not None,
        tool_tokens=count(tool_section(full.specs, style))[0],
        json_tool_tokens=count(tool_section(full.specs, "json"))[0],
        offered_tool_tokens=count(tool_section(box.specs, style))[0] if box else 0,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        seconds=seconds,
        outputs=outputs,
        dropped=run.dropped,
    )


def summarize(results: list[ItemResult], irrelevance: bool) -> dict[str, Any]:
    """The figures ``eval tools --json`` prints."""
    n = len(results)

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 3) if values else 0.0

    summary: dict[str, Any] = {"n": n}
    score = sum(r.ok for r in results) / n if n else 0.0
    summary["no_call_rate" if irrelevance else "accuracy"] = round(score, 4)
    relevant = [r for r in results if r.relevant]
    irrelevant = [r for r in results if not r.relevant]
    # the two errors of the call-or-answer decision: a relevant item with no call, an irrelevant one with a call
    summary["missed_call_rate"] = (
        round(sum(r.called is None for r in relevant) / len(relevant), 4) if relevant else None
    )
    summary["wrong_call_rate"] = (
        round(sum(r.called is not None for r in irrelevant) / len(irrelevant), 4) if irrelevant else None
    )
    summary["dropped_calls"] = sum(r.dropped for r in results)
    summary.update(
        tool_tokens_mean=mean([r.tool_tokens for r in results]),
        json_tool_tokens_mean=mean([r.json_tool_tokens for r in results]),
        offered_tool_tokens_mean=mean([r.offered_tool_tokens for r in results]),
        prompt_tokens_mean=mean([r.prompt_tokens for r in results]),
        completion_tokens_mean=mean([r.completion_tokens for r in results]),
        model_calls_mean=mean([r.model_calls for r in results]),
        seconds_per_item=mean([r.seconds for r in results]),
        recoveries=sum(r.recoveries for r in results),
        terminations=dict(Counter(r.termination for r in results)),
        failures=dict(Counter(r.reason.split(":")[0] for r in results if not r.ok).most_common(6)),
    )
    return summary


def write_record(path: Path, results: list[ItemResult]) -> None:
    """Every item's raw model replies, as JSON lines (to study what the model really writes)."""
    with path.open("w", encoding="utf-8") as out:
        for r in results:
            out.write(json.dumps({"id": r.id, "ok": r.ok, "reason": r.reason, "outputs": r.outputs}) + "\n")
