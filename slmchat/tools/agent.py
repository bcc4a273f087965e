"""The agent loop of a tool-using turn: ask, parse, validate, recover, run, repeat, answer.

The loop knows nothing about backends: the engine hands it ``step``, which streams one model
call on a tier, and ``escalate``, which says where a step goes when recovery is exhausted.
Every run ends with a typed ``termination``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from slmchat.infra.backends.base import Message
from slmchat.infra.config import ToolsConfig
from slmchat.infra.wire import Event, Token
from slmchat.routing.escalation import Escalated
from slmchat.tools.approval import ApprovalDesk
from slmchat.tools.base import ArgumentError
from slmchat.tools.calls import Answer, AnswerStream, Call, Malformed, ReplySchema, parse_reply, reply_schema
from slmchat.tools.events import ApprovalRequested, Recovery, ToolCall, ToolResult
from slmchat.tools.grounding import Sources, is_grounded, value_spans
from slmchat.tools.mentioned import named_parameters
from slmchat.tools.prompt import PromptStyle, call_text, tool_prompt
from slmchat.tools.recovery import (
    BAD_ARGUMENTS,
    CIRCUIT_OPEN,
    DENIED,
    MALFORMED_JSON,
    NO_PROGRESS,
    REPEATED_CALL,
    TOOL_BAD_INPUT,
    TOOL_FAILED,
    TOOL_RETRY,
    UNGROUNDED,
    UNKNOWN_TOOL,
    Template,
    closest_tools,
    is_bad_input,
    is_transient,
)
from slmchat.tools.registry import Toolbox

Termination = Literal["answered", "gave_up", "budget", "error"]
Tier = str
#: streams the raw text of one model call: (tier, messages, reply schema or None)
StepFn = Callable[[Tier, list[Message], ReplySchema | None], AsyncIterator[str]]
#: where a step goes when recovery is exhausted (None: nowhere)
EscalateFn = Callable[[str], Escalated | None]

#: why a run ends when a template stops the tool calls (others end as "answered")
_ENDS: dict[str, Termination] = {NO_PROGRESS.name: "budget", TOOL_FAILED.name: "error", CIRCUIT_OPEN.name: "error"}
RESULT_CHARS = 1500  # a tool result longer than this is cut before the model sees it
TOOL_RESULT = "{name} returned: {result}"
ANSWER_FROM_RESULTS = "Answer my question in plain words using this result."
#: how a recovery note ("The user did not allow search_files. Answer without it.") is put before the answer
NOTE_PREFIX = "Tool note: "
#: a note's sentence this long, found in the answer, means the model repeated the note instead of answering
ECHO_CHARS = 16


def echoes_a_note(answer: str, facts: list[str]) -> bool:
    """Whether ``answer`` repeats a sentence of a tool note: the model took the instruction for the answer.

    SmolLM2 answered "Search my notes for dentist", after the user declined the tool, with "The user
    did not allow search_files. Answer without it." (issue 16).
    """
    said = " ".join(answer.casefold().split())
    for fact in facts:
        if not fact.startswith(NOTE_PREFIX):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", fact[len(NOTE_PREFIX) :]):
            words = " ".join(sentence.casefold().split()).rstrip(".!?")
            if len(words) >= ECHO_CHARS and words in said:
                return True
    return False


@dataclass(frozen=True)
class AgentSettings:
    """How hard the loop tries before it gives up or escalates."""

    style: PromptStyle = "compact"
    constrain: bool = True
    max_steps: int = 1  # successful tool calls per turn before the model must answer (small models rarely chain)
    max_model_calls: int = 8  # model calls per turn (calls, recoveries) before the loop says "answer now"
    recovery_budget: int = 2  # recoveries per turn before a step is escalated
    tool_retries: int = 2  # reruns of a tool after a timeout or connection error
    backoff_s: float = 0.5  # first pause before a rerun; doubles each time
    breaker_failures: int = 3  # consecutive failures that open a tool's circuit
    breaker_cooldown_s: float = 60.0
    #: drop a call none of whose required values comes from the user's words or a tool's result
    #: (``tools.grounding``): a small model calls an offered tool for unrelated questions too
    ground: bool = False
    #: a free string argument must be a run of the question's words (``grounding.value_spans``)
    spans: bool = False
    #: optional parameters the question names must be filled (``mentioned.named_parameters``)
    fill_named: bool = False

    @classmethod
    def from_config(cls, tools: ToolsConfig) -> AgentSettings:
        return cls(
            style=tools.prompt, constrain=tools.constrain, max_steps=tools.max_steps,  # type: ignore[arg-type]
            recovery_budget=tools.recovery_budget, ground=tools.ground, fill_named=tools.fill_named,
        )  # fmt: skip


@dataclass
class CircuitBreaker:
    """Per tool: after ``threshold`` failures in a row, stop offering it for ``cooldown_s``."""

    threshold: int = 3
    cooldown_s: float = 60.0
    failures: dict[str, int] = field(default_factory=dict)
    opened_at: dict[str, float] = field(default_factory=dict)

    def is_open(self, name: str) -> bool:
        opened = self.opened_at.get(name)
        if opened is None:
            return False
        if time.monotonic() - opened >= self.cooldown_s:  # half-open: one more try
            del self.opened_at[name]
            self.failures[name] = self.threshold - 1
            return False
        return True

    def record(self, name: str, ok: bool) -> None:
        if ok:
            self.failures.pop(name, None)
            return
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] >= self.threshold:
            self.opened_at[name] = time.monotonic()


@dataclass
class AgentRun:
    """What one run of the loop did: its answer, why it ended, and its counts."""

    answer: str = ""
    termination: Termination | None = None
    steps: int = 0
    calls: int = 0
    recoveries: int = 0
    escalations: int = 0
    dropped: int = 0  # calls dropped because their values were not in the user's words
    tool_s: float = 0.0
    first_call: Call | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "recoveries": self.recoveries, "escalations": self.escalations,
            "model_calls": self.steps, "termination": self.termination,
        }  # fmt: skip


class ToolLoop:
    """Runs one turn with tools. ``run`` yields events; ``self.result`` holds the outcome."""

    def __init__(
        self,
        toolbox: Toolbox,
        step: StepFn,
        *,
        settings: AgentSettings | None = None,
        breaker: CircuitBreaker | None = None,
        approvals: ApprovalDesk | None = None,
        escalate: EscalateFn | None = None,
        tier: Tier = "small",
        stop_at_first_call: bool = False,
    ) -> None:
        self.toolbox = toolbox
        self.settings = settings or AgentSettings()
        self.breaker = breaker or CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_cooldown_s)
        self._step, self._approvals, self._escalate = step, approvals, escalate
        self.tier = tier
        self.stop_at_first_call = stop_at_first_call  # evaluation: the first valid call is the result
        self.result = AgentRun()
        self._seen: dict[str, str] = {}  # call key -> its result, to spot a model repeating itself
        self._answer_only: Termination | None = None  # why tools are no longer offered
        self._facts: list[str] = []  # tool results and notes, for the final answer
        self._sources: list[str] = []  # where argument values may come from: user messages, tool results
        self._question = ""  # the user's last message

    def system_prompt(self, system: str = "") -> str:
        return tool_prompt(self._offered(), self.settings.style, system)

    def _offered(self) -> list:
        return [t.spec for t in self.toolbox.tools.values() if not self.breaker.is_open(t.name)]

    async def run(self, system: str, messages: list[Message]) -> AsyncIterator[Event]:
        """Loop until the model answers; ``messages`` ends with the user's question."""
        convo = [Message("system", self.system_prompt(system)), *messages]
        self._sources = [m.content for m in messages if m.role == "user"]
        self._question = self._sources[-1] if self._sources else ""
        run = self.result
        tier, escalated_step = self.tier, False
        while run.termination is None:
            offered = self._offered()
            if run.steps >= self.settings.max_model_calls and not self._answer_only:
                yield self._recover(convo, NO_PROGRESS, steps=run.steps)
            if len(self._seen) >= self.settings.max_steps and not self._answer_only:
                self._answer_only = "answered"  # enough calls: the model now answers from the results
            allow_tools = bool(offered) and not self._answer_only
            run.steps += 1
            stream = AnswerStream()
            if allow_tools:
                spans = value_spans(self._question) if self.settings.spans and self._question else None
                require = (
                    {spec.name: named_parameters(spec, self._question) for spec in offered}
                    if self.settings.fill_named
                    else None
                )
                schema = reply_schema(offered, spans=spans, require=require) if self.settings.constrain else None
                messages = list(convo)  # a snapshot: the loop appends to convo later
            else:  # the answer in plain words: no tool list, no JSON, streamed as it comes
                schema, messages = None, self._answer_messages(system, convo)
            async for piece in self._step(tier, messages, schema):
                if text := stream.feed(piece):
                    yield Token(text)
            streamed = stream.is_answer is True
            reply = parse_reply(stream.raw)
            step_tier = tier  # who wrote this reply (and so made its call)
            if escalated_step:  # the large tier did this one step; the small tier resumes
                tier, escalated_step = self.tier, False
            if isinstance(reply, Answer) or self._answer_only:
                text = reply.text if isinstance(reply, Answer) else stream.raw.strip()
                if not streamed and text:
                    yield Token(text)
                if echoes_a_note(text, self._facts):  # the note taken for the answer: answer the question alone
                    run.steps += 1
                    alone = self._answer_messages(system, convo, notes=False)
                    text = "".join([piece async for piece in self._step(tier, alone, None)]).strip()
                run.answer = text
                run.termination = self._answer_only or "answered"
                break
            convo.append(Message("assistant", stream.raw.strip()))
            if isinstance(reply, Malformed):
                event = self._recover(convo, MALFORMED_JSON, reason=reply.reason)
            elif reply.name not in self.toolbox:
                closest = ", ".join(closest_tools(reply.name, [s.name for s in offered]))
                event = self._recover(convo, UNKNOWN_TOOL, name=reply.name, closest=closest)
            else:
                event = None
                async for item in self._call_tool(convo, reply, step_tier):
                    if isinstance(item, Recovery) and item.action != "rerun":
                        event = item  # applied below, after the tool's events
                    else:
                        yield item  # a rerun is reported when it happens (there may be several)
                if self.stop_at_first_call and (run.first_call is not None or run.dropped):
                    run.termination = "answered"
            if event is not None:
                yield event
                if event.action == "retry" and run.recoveries > self.settings.recovery_budget:
                    escalation = self._escalate(f"{run.recoveries} recoveries this turn") if self._escalate else None
                    run.escalations += 1
                    if escalation is not None:
                        yield escalation
                    if escalation is not None and escalation.to_tier != tier:
                        tier, escalated_step = escalation.to_tier, True
                        run.recoveries = 0
                    else:
                        self._answer_only = "gave_up"  # nowhere to escalate: answer without tools
                        if self.stop_at_first_call:
                            run.termination = "gave_up"

    def _answer_messages(self, system: str, convo: list[Message], notes: bool = True) -> list[Message]:
        """The question, then what the tools gave, in one message: small models copy the JSON
        of earlier calls if they see it, but answer well from a plain list of results.
        ``notes=False`` leaves the tool notes out (the question alone, answered without tools)."""
        messages = [Message("system", system), convo[1]] if system else [convo[1]]
        facts = self._facts if notes else [f for f in self._facts if not f.startswith(NOTE_PREFIX)]
        if facts:
            messages.append(Message("user", "\n".join([*facts, ANSWER_FROM_RESULTS])))
        return messages

    def _recover(self, convo: list[Message], template: Template, **values: Any) -> Recovery:
        message = template.format(**values)
        if template.action == "drop":  # as if no tool had been offered: no note, no message
            self._answer_only = self._answer_only or "answered"
            return Recovery(template.name, message, self.result.steps, template.action)
        if template.action == "answer":
            self._facts.append(f"{NOTE_PREFIX}{message}")
        if template.action != "rerun":
            convo.append(Message("user", message))
        if template.action == "answer":
            self._answer_only = self._answer_only or _ENDS.get(template.name, "answered")
        if template.action == "retry":
            self.result.recoveries += 1
        return Recovery(template.name, message, self.result.steps, template.action)

    async def _call_tool(self, convo: list[Message], call: Call, tier: Tier) -> AsyncIterator[Event]:
        """Validate, ask approval, run with retries; recoveries are yielded for the caller to apply."""
        tool = self.toolbox[call.name]
        try:
            arguments = tool.validate(call.arguments)
        except ArgumentError as exc:
            yield self._recover(convo, BAD_ARGUMENTS, name=call.name, problems="; ".join(exc.problems))
            return
        run = self.result
        if self.settings.ground and not is_grounded(tool.spec, arguments, Sources(self._sources)):
            run.dropped += 1
            yield self._recover(convo, UNGROUNDED, name=call.name)
            return
        run.first_call = run.first_call or Call(call.name, arguments, call.repaired)
        if self.stop_at_first_call:
            return
        key = f"{call.name}:{json.dumps(arguments, sort_keys=True, default=str)}"
        if key in self._seen:
            yield self._recover(convo, REPEATED_CALL, name=call.name, result=self._seen[key])
            return
        if self.breaker.is_open(call.name):
            yield self._recover(convo, CIRCUIT_OPEN, name=call.name)
            return
        approved: bool | None = None
        if tool.spec.requires_approval:
            desk = self._approvals or ApprovalDesk("never")  # nobody to ask: it does not run
            approved = desk.policy == "always"
            if desk.policy == "ask":
                request_id, answer = desk.open()
                yield ApprovalRequested(request_id, call.name, arguments, run.steps, tier)
                approved = await answer
        yield ToolCall(call.name, arguments, run.steps, tier, tool.spec.requires_approval, approved)
        run.calls += 1
        if approved is False:
            yield self._recover(convo, DENIED, name=call.name)
            return
        started, attempt = time.perf_counter(), 0
        while True:
            attempt += 1
            try:
                value = await asyncio.wait_for(asyncio.to_thread(tool.function, **arguments), tool.timeout_s)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if is_transient(exc) and attempt <= self.settings.tool_retries:
                    delay = self.settings.backoff_s * 2 ** (attempt - 1)
                    yield self._recover(convo, TOOL_RETRY, name=call.name, error=error, delay=delay)
                    await asyncio.sleep(delay)
                    continue
                run.tool_s += time.perf_counter() - started
                self.breaker.record(call.name, False)
                yield ToolResult(call.name, False, error, (time.perf_counter() - started) * 1000, attempt)
                template = TOOL_BAD_INPUT if is_bad_input(exc) else TOOL_FAILED
                yield self._recover(convo, template, name=call.name, error=error)
                return
            break
        elapsed = time.perf_counter() - started
        run.tool_s += elapsed
        self.breaker.record(call.name, True)
        text = _result_text(value)
        self._seen[key] = text
        yield ToolResult(call.name, True, text, elapsed * 1000, attempt)
        self._facts.append(f"Tool result: {call_text(call.name, arguments)} = {text}")
        self._sources.append(text)
        convo.append(Message("user", TOOL_RESULT.format(name=call.name, result=text)))


def _result_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + " …(cut)"
