"""Answering one turn: a model call with its window, a plain answer, or an answer through tools.

A mixin of ``Session`` (the methods use its tiers, history, router and config), kept apart so
the session reads as the turn pipeline and this file as what happens inside one answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING

from slmchat.engine.events import AnswerReset, Compacted, Escalated, Event, Token
from slmchat.engine.turn_state import TurnState
from slmchat.engine.window import PER_MESSAGE_OVERHEAD, Window, fit_window, history_budget
from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd, Usage
from slmchat.infra.embedding import default_embedder
from slmchat.memory.manager import question_of
from slmchat.routing import Route, Tier
from slmchat.routing.fit import TEMPLATE_TOKENS, ContextOverflow, Fit
from slmchat.routing.signals import failure_signal, repetition_loop
from slmchat.tools.agent import AgentSettings, ToolLoop
from slmchat.tools.calls import ReplySchema
from slmchat.tools.prompt import openai_tools
from slmchat.tools.registry import Toolbox
from slmchat.tools.relevance import relevant_toolbox

if TYPE_CHECKING:
    from slmchat.engine.tiers import Tiers
    from slmchat.infra.backends import ChatBackend
    from slmchat.infra.config import Config, TierConfig
    from slmchat.routing import Router
    from slmchat.tools.agent import CircuitBreaker
    from slmchat.tools.approval import ApprovalDesk

#: what the check before a call measures (the history beyond the question was already fitted)
PROMPT = "the prompt (question, system prompt, recalled memory and tools)"
#: llama.cpp's words for a prompt that fills the window
_LLAMA_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class Answering:
    """How the session answers: model calls, plain answers, tool-using answers, escalation."""

    config: Config
    tiers: Tiers
    history: list[Message]
    router: Router
    toolbox: Toolbox
    use_tools: bool
    approvals: ApprovalDesk
    _breaker: CircuitBreaker
    _side: list[Event]

    async def _stream(
        self,
        tier: Tier,
        turn: TurnState,
        cancel: CancelToken,
        system: str | None = None,
        extra: Sequence[Message] = (),
        schema: ReplySchema | None = None,
    ) -> AsyncIterator[str]:
        """One model call: fit the window for ``tier``, stream raw text, stop the call if it loops.

        ``extra`` are the turn's own messages after the question (tool calls and results).
        """
        waiting = time.perf_counter()
        backend = await self.backend(tier)
        turn.load_s += time.perf_counter() - waiting  # loading the model, not routing
        cfg = self.tiers.settings(tier)
        assert cfg is not None
        count = lambda s: backend.count_tokens(s)[0]  # noqa: E731
        budget = history_budget(cfg.context_tokens, backend.context_tokens, cfg.max_tokens)
        budget -= sum(count(m.content) for m in extra)
        window = fit_window(system or turn.system, self.history, turn.question, budget, count, question_of)
        turn.dropped, turn.shortened = window.dropped, window.shortened
        if window.compacted and turn.compaction is None:
            turn.compaction = Compacted(window.shortened, window.dropped, window.tokens)
            self._side.append(turn.compaction)  # yielded before this call's first token
        max_tokens = _answer_room(tier, backend, cfg, window, [count(m.content) for m in extra])
        params = GenParams(
            max_tokens=max_tokens, temperature=cfg.temperature, seed=cfg.seed,
            json_schema=schema.schema if schema else None,
            tools=openai_tools([s for s in self.toolbox.specs if s.name in schema.tools]) if schema else None,
        )  # fmt: skip
        call = CancelToken(parent=cancel)  # stops this call alone when it loops
        turn.in_flight = (tier, time.perf_counter())
        raw: list[str] = []
        # run the stream to its end (StreamEnd is its last item) so no generator is left
        # suspended for the garbage collector to close on a loop that may be gone
        async with aclosing(backend.stream([*window.messages, *extra], params, call)) as stream:
            try:
                async for item in stream:
                    if isinstance(item, StreamEnd):
                        turn.end = item
                        continue
                    raw.append(item)
                    yield item
                    if tier == "small" and len(raw) % 8 == 0 and turn.looping is None:
                        turn.looping = repetition_loop("".join(raw))
                        if turn.looping is not None:
                            call.cancel()
            except ValueError as exc:  # the model counted more than the check did (a template's own tokens)
                if (found := _LLAMA_OVERFLOW.search(str(exc))) is None:
                    raise
                prompt, size = int(found[1]), int(found[2])
                raise ContextOverflow(Fit(tier, prompt, size, max_tokens, what=PROMPT), saved=True) from exc
        turn.finished_at = time.perf_counter()
        self._record_call(turn)

    async def _call(self, tier: Tier, turn: TurnState, cancel: CancelToken) -> AsyncIterator[Event]:
        """The plain answer of a turn without tools, token by token."""
        async for piece in self._stream(tier, turn, cancel):
            if turn.first_token_at is None:
                turn.first_token_at = time.perf_counter()
            turn.answer.append(piece)
            yield Token(piece)

    async def _plain_turn(self, turn: TurnState, cancel: CancelToken) -> AsyncIterator[Event]:
        """An answer without tools; a failure signal (or a prompt the small window cannot hold) redoes it large."""
        decision = turn.decision
        try:
            async for event in self._call(decision.tier, turn, cancel):
                yield event
        except ContextOverflow as overflow:
            moved = self._overflow_to_large(turn, overflow)
            if moved is None:
                raise
            yield moved
            yield AnswerReset("escalated")
            async for event in self._call("large", turn, cancel):
                yield event
            return
        signal = failure_signal(turn.text_so_far, turn.end.finish_reason if turn.end else "", turn.looping)
        if turn.looping is not None and turn.end is not None and not cancel.cancelled:
            turn.end = replace(turn.end, finish_reason="loop")  # stopped by the engine, not the user
        if signal and decision.tier == "small" and decision.override is not Route.SMALL and not cancel.cancelled:
            escalated = self._escalation(signal, turn)
            turn.escalation = escalated.reason
            yield escalated
            if escalated.to_tier == "large":
                turn.restart("large")
                yield AnswerReset("escalated")
                async for event in self._call("large", turn, cancel):
                    yield event

    def _overflow_to_large(self, turn: TurnState, overflow: ContextOverflow) -> Escalated | None:
        """The escalation for a small-tier prompt that did not fit (history, memory): None when it may not move."""
        decision = turn.decision
        if overflow.fit.tier != "small" or decision.override is Route.SMALL or turn.answer:
            return None
        escalated = self._escalation(f"{overflow.fit.why_not()}, so the large tier answers", turn)
        if escalated.to_tier != "large":
            return None
        turn.escalation = escalated.reason
        turn.restart("large")
        return escalated

    def _offered_tools(self, turn: TurnState, wanted: bool | None) -> Toolbox:
        """The tools this turn offers: none if switched off, all if asked for, else the relevant ones."""
        if not self.toolbox or not (self.use_tools if wanted is None else wanted):
            return Toolbox()
        if wanted:
            return self.toolbox
        embedder = self.router.scorer.embedder if self.router.uses_embedding else default_embedder()
        return relevant_toolbox(self.toolbox, turn.text, turn.embedding, embedder)

    async def _tool_turn(self, turn: TurnState, cancel: CancelToken, toolbox: Toolbox) -> AsyncIterator[Event]:
        """A turn with tools: the agent loop asks, calls, recovers; a step may go to the large tier."""
        decision = turn.decision
        may_escalate = decision.tier == "small" and decision.override is not Route.SMALL

        def step(tier: str, convo: list[Message], schema: ReplySchema | None) -> AsyncIterator[str]:
            turn.ran_on = tier  # type: ignore[assignment]
            turn.looping = None
            return self._stream(tier, turn, cancel, convo[0].content, convo[2:], schema)  # type: ignore[arg-type]

        loop = ToolLoop(
            toolbox, step, settings=AgentSettings.from_config(self.config.tools), breaker=self._breaker,
            approvals=self.approvals,
            escalate=(lambda reason: self._escalation(reason, turn, "step")) if may_escalate else None,
            tier=decision.tier,
        )  # fmt: skip
        turn.tool_run = loop.result
        async for event in loop.run(turn.system, [Message("user", turn.question)]):
            if isinstance(event, Token):
                turn.first_token_at = turn.first_token_at or time.perf_counter()
                turn.answer.append(event.text)
            if isinstance(event, Escalated):
                turn.escalation = event.reason
            yield event
        if loop.result.answer != turn.text_so_far:  # the loop settled on other text than what streamed
            yield AnswerReset("tool_answer", loop.result.answer)
        turn.answer = [loop.result.answer]

    def _record_call(self, turn: TurnState) -> None:
        """Close the model call in flight (also when the turn was abandoned halfway through it)."""
        if turn.in_flight is not None:
            turn.close_call(self.model_name(turn.in_flight[0]) or "")

    def _escalation(self, signal: str, turn: TurnState, scope: str = "answer") -> Escalated:
        """Where a failed small-tier answer (or step) goes: the large tier if there is one."""
        large = self.model_name("large")
        usage = turn.end.usage if turn.end else Usage(None, None, estimated=True)
        blocked = self._budget_block() if large is not None else None
        small = self.model_name("small") or ""
        kept = "the answer stands" if scope == "answer" else "the small tier answers without tools"
        if blocked:
            return Escalated(f"{signal}; {blocked}, so {kept}", "small", "small", small, usage, scope)
        if large is None:
            return Escalated(f"{signal}; no large tier is configured, so {kept}", "small", "small", small, usage, scope)
        return Escalated(signal, "small", "large", large, usage, scope)


def _answer_room(tier: Tier, backend: ChatBackend, cfg: TierConfig, window: Window, extra: list[int]) -> int:
    """``max_tokens`` for this call: the configured length, cut to what the model's window leaves.

    Raises ``ContextOverflow`` when not even a short answer fits (the history was already
    compacted, so what is left is the question, the system prompt with memory and tools, and the
    turn's tool calls). A window the backend does not report is not checked.
    """
    size = backend.context_tokens
    if not size:
        return cfg.max_tokens
    prompt = window.tokens + sum(n + PER_MESSAGE_OVERHEAD for n in extra) + TEMPLATE_TOKENS
    fit = Fit(tier, prompt, size, cfg.max_tokens, what=PROMPT)
    if fit.too_long:
        raise ContextOverflow(fit, saved=True)
    return min(cfg.max_tokens, size - prompt)
