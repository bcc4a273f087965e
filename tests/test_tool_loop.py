"""The agent loop: circuit breaker, escalation of a step, how runs end, and real models calling a tool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, get_args

from slmchat.engine.events import Escalated, ToolCall, ToolResult
from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamEnd, Usage
from slmchat.infra.backends.openai_compat import OpenAICompatBackend
from slmchat.tools.agent import AgentSettings, CircuitBreaker, Termination, ToolLoop
from slmchat.tools.calls import ReplySchema
from slmchat.tools.recovery import BAD_ARGUMENTS, CIRCUIT_OPEN, MALFORMED_JSON, TOOL_BAD_INPUT, UNKNOWN_TOOL
from slmchat.tools.registry import Toolbox
from tests.helpers import (
    Script,
    answer,
    assert_recovery,
    calculate,
    call,
    cold,
    kinds,
    recoveries,
    run,
    text,
    weather,
)

#: three real SmolLM2 replies that each cost a recovery (with the calculate and weather tools)
FAILING = [text("malformed_fenced_no_tool"), text("unknown_tool_python"), text("bad_arguments_in_python_code")]
FAILED_WITH = [MALFORMED_JSON.name, UNKNOWN_TOOL.name, BAD_ARGUMENTS.name]
QUESTION = "What is the weather in Rome?"


def tools() -> Toolbox:
    return Toolbox().add(calculate, weather)


def escalation(reason: str, to_tier: str = "large") -> Escalated:
    model = "openai:smollm2-server" if to_tier == "large" else "llamacpp:smollm2"
    return Escalated(reason, "small", to_tier, model, Usage(10, 10), "step")


# -- circuit breaker -------------------------------------------------------------------------


def forecast(city: str) -> str:
    """Tomorrow's weather in a city."""
    raise ValueError(f"unknown city {city}")


def test_three_failures_open_the_circuit_and_the_tool_is_no_longer_offered() -> None:
    box = Toolbox().add(calculate, forecast)
    breaker = CircuitBreaker(threshold=3, cooldown_s=60)
    script = Script(
        call("forecast", city="Atlantis"), call("forecast", city="Lemuria"), call("forecast", city="Mu"),
        call("forecast", city="Paris"), "I cannot tell.",
    )  # fmt: skip
    loop = ToolLoop(box, script, settings=AgentSettings(recovery_budget=9), breaker=breaker)
    assert "forecast(city: str)" in loop.system_prompt()
    events = run(loop)

    assert [r.template for r in recoveries(events)] == [TOOL_BAD_INPUT.name] * 3 + [CIRCUIT_OPEN.name]
    assert_recovery(recoveries(events)[-1], CIRCUIT_OPEN, name="forecast")
    assert [e.arguments["city"] for e in events if isinstance(e, ToolCall)] == ["Atlantis", "Lemuria", "Mu"]
    schemas = [schema for _, _, schema in script.seen]
    assert [set(s.tools) for s in schemas[:3]] == [{"calculate", "forecast"}] * 3
    assert schemas[3].tools == ("calculate",) and "forecast" not in str(schemas[3].schema)  # no longer offered
    assert schemas[4] is None  # the open circuit ends the tool calls: the model answers in plain words
    assert (loop.result.termination, loop.result.answer) == ("error", "I cannot tell.")

    # the session keeps one breaker: the next turn's system prompt leaves the tool out
    later = ToolLoop(box, Script(answer("ok")), breaker=breaker)
    assert "forecast" not in later.system_prompt() and "calculate(expression: str)" in later.system_prompt()


def test_after_the_cooldown_one_try_is_allowed_and_a_success_closes_the_circuit() -> None:
    broken = {"now": True}

    def forecast(city: str) -> str:
        """Tomorrow's weather in a city."""
        if broken["now"]:
            raise RuntimeError("service down")
        return "sunny"

    box = Toolbox().add(forecast)
    breaker = CircuitBreaker(threshold=3, cooldown_s=0.2)

    def turn(city: str, reply: str = "Sorry.", ends: str = "error") -> list[Any]:
        loop = ToolLoop(box, Script(call("forecast", city=city), reply), breaker=breaker)
        events = run(loop)
        assert (loop.result.termination, loop.result.answer) == (ends, reply), city
        return events

    for city in ["Rome", "Oslo", "Lima"]:  # one failure per turn: TOOL_FAILED makes the model answer
        turn(city)
    assert breaker.is_open("forecast")
    blocked = turn("Rome")
    assert [r.template for r in recoveries(blocked)] == [CIRCUIT_OPEN.name]
    assert not any(isinstance(e, ToolCall) for e in blocked)  # it did not run

    time.sleep(0.25)  # half-open: offered again, and one more failure opens it at once
    assert "forecast(city: str)" in ToolLoop(box, Script(), breaker=breaker).system_prompt()
    turn("Bern")
    assert breaker.is_open("forecast")

    time.sleep(0.25)
    broken["now"] = False
    events = turn("Bern", "Sunny.", ends="answered")
    assert [(e.name, e.ok, e.result) for e in events if isinstance(e, ToolResult)] == [("forecast", True, "sunny")]
    assert not breaker.is_open("forecast")
    broken["now"] = True  # closed: it takes three new failures in a row to open it again
    turn("Rome")
    turn("Oslo")
    assert not breaker.is_open("forecast")
    turn("Lima")
    assert breaker.is_open("forecast")


# -- escalation ------------------------------------------------------------------------------


def test_when_recovery_runs_out_one_step_goes_to_the_large_tier() -> None:
    asked: list[str] = []

    def escalate(reason: str) -> Escalated:
        asked.append(reason)
        return escalation(reason)

    script = Script(*FAILING, text("valid_call_weather"), text("answer_after_weather_result"))
    loop = ToolLoop(tools(), script, settings=AgentSettings(recovery_budget=2), escalate=escalate)
    events = run(loop, QUESTION)

    assert asked == ["3 recoveries this turn"]  # the budget allows two; the third recovery escalates
    assert [r.template for r in recoveries(events)] == FAILED_WITH
    escalated = next(e for e in events if isinstance(e, Escalated))
    assert (escalated.to_tier, escalated.scope) == ("large", "step")
    assert kinds(events) == ["recovery"] * 3 + ["escalated", "tool_call", "tool_result"]
    assert script.tiers == ["small", "small", "small", "large", "small"]  # only that one step ran on large
    assert next(e for e in events if isinstance(e, ToolCall)).tier == "large"
    assert loop.result.answer == "The weather in Rome is sunny, 21 degrees Celsius."
    assert (loop.result.termination, loop.result.escalations) == ("answered", 1)


def test_with_nowhere_to_escalate_the_model_answers_without_tools() -> None:
    def nowhere(reason: str) -> None:
        return None

    outcomes = []
    for escalate in [None, nowhere, lambda reason: escalation(reason, "small")]:
        script = Script(*FAILING, "I am not sure.")
        loop = ToolLoop(tools(), script, settings=AgentSettings(recovery_budget=2), escalate=escalate)
        events = run(loop, QUESTION)
        assert script.tiers == ["small"] * 4 and script.seen[3][2] is None  # no tools offered at the end
        assert not any(isinstance(e, ToolCall) for e in events)
        escalated = [e.to_tier for e in events if isinstance(e, Escalated)]
        outcomes.append((loop.result.termination, loop.result.answer, escalated))
    assert outcomes == [
        ("gave_up", "I am not sure.", []),
        ("gave_up", "I am not sure.", []),
        ("gave_up", "I am not sure.", ["small"]),  # reported (no large tier), nothing redone
    ]


def test_every_run_ends_with_a_known_termination() -> None:
    def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError("no")

    box = Toolbox().add(calculate, weather, broken)
    unknown = text("unknown_tool_python")
    cases = {
        "answered": (Script(call("calculate", expression="1+1"), "2"), AgentSettings()),
        "gave_up": (Script(*FAILING, "?"), AgentSettings(recovery_budget=2)),
        "budget": (Script(unknown, unknown, "?"), AgentSettings(max_model_calls=2)),
        "error": (Script(call("broken", x=1), "It failed."), AgentSettings()),
    }
    assert set(cases) == set(get_args(Termination))  # one case for each way a run can end
    for expected, (script, settings) in cases.items():
        loop = ToolLoop(box, script, settings=settings)
        run(loop)
        assert loop.result.termination == expected
        assert loop.result.summary()["termination"] == expected  # what faces and the store are given
        assert not script.replies  # each script was used to its end


# -- real models -----------------------------------------------------------------------------


def model_step(backends: dict[str, ChatBackend], served: list[str], max_tokens: int = 48) -> Any:
    """A step that streams from the tier's backend, constrained to the loop's reply schema."""

    async def step(tier: str, messages: list[Message], schema: ReplySchema | None) -> AsyncIterator[str]:
        served.append(tier)
        params = GenParams(max_tokens=max_tokens, temperature=0, seed=0, json_schema=schema.schema if schema else None)
        async for piece in backends[tier].stream(messages, params, CancelToken()):
            if not isinstance(piece, StreamEnd):
                yield piece

    return step


def test_the_real_small_model_calls_the_calculator_under_constraint(small_backend) -> None:  # type: ignore[no-untyped-def]
    served: list[str] = []
    loop = ToolLoop(Toolbox().add(calculate), model_step({"small": cold(small_backend)}, served))
    events = run(loop, "What is 37 * 91? Use the calculator.")

    # cold, at temperature 0, SmolLM2 makes one valid call (it writes ".37 * 91"), then answers from the result
    tool_events = [e for e in events if isinstance(e, ToolCall | ToolResult)]
    assert len(tool_events) == 2
    first, result = tool_events
    assert isinstance(first, ToolCall) and first.name == "calculate" and first.tier == "small"
    assert isinstance(first.arguments["expression"], str)
    assert isinstance(result, ToolResult) and (result.name, result.ok) == ("calculate", True)
    assert result.result == str(calculate(first.arguments["expression"]))  # the tool ran on what the model wrote
    assert served == ["small", "small"] and (loop.result.calls, loop.result.termination) == (1, "answered")
    assert result.result in loop.result.answer


def test_a_step_escalated_to_a_real_large_tier(llama_server: str) -> None:
    large = OpenAICompatBackend("smollm2-server", {"base_url": llama_server, "tool_mode": "llama.cpp"})
    small = Script(*FAILING, text("answer_after_weather_result"))
    served: list[str] = []
    on_large = model_step({"large": large}, served)

    def step(tier: str, messages: list[Message], schema: ReplySchema | None) -> AsyncIterator[str]:
        if tier == "large":
            return on_large(tier, messages, schema)
        served.append(tier)
        return small(tier, messages, schema)

    loop = ToolLoop(tools(), step, settings=AgentSettings(recovery_budget=2), escalate=escalation)
    events = run(loop, QUESTION)

    escalated = next(e for e in events if isinstance(e, Escalated))
    assert (escalated.reason, escalated.to_tier) == ("3 recoveries this turn", "large")
    assert [r.template for r in recoveries(events)][:3] == FAILED_WITH
    assert served[:4] == ["small", "small", "small", "large"]  # the escalated step ran on the server
    assert served.count("large") == 1 and set(served[4:]) <= {"small"}  # then the small tier resumed
    assert not [r for r in recoveries(events)[3:] if r.template in FAILED_WITH]  # constrained: a readable reply
    # constrained, the server's SmolLM2 calls the weather tool; the small tier answers from the result
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(e.name, e.tier) for e in calls] == [("weather", "large")]  # a call it made is its own
    assert served == ["small", "small", "small", "large", "small"]
    assert (loop.result.termination, loop.result.calls, loop.result.escalations) == ("answered", 1, 1)
    assert loop.result.answer == "The weather in Rome is sunny, 21 degrees Celsius."
