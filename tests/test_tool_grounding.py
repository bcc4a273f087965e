"""Grounding: a call stands only when its values come from the user's words (or a tool's result)."""

from __future__ import annotations

import asyncio
import json

import pytest

from slmchat.eval.bfcl import BfclItem
from slmchat.eval.tools_eval import run_item
from slmchat.infra.embedding import default_embedder
from slmchat.tools.agent import AgentSettings, ToolLoop
from slmchat.tools.base import ToolSpec
from slmchat.tools.calls import copied_strings
from slmchat.tools.events import ToolCall
from slmchat.tools.grounding import Sources, is_grounded, ungrounded, value_grounded, value_spans
from slmchat.tools.recovery import TOOL_BAD_INPUT, UNGROUNDED
from slmchat.tools.registry import Toolbox
from slmchat.tools.relevance import relevant_toolbox
from tests.helpers import Script, calculate, call, cold, recoveries, run, weather
from tests.test_tool_loop import model_step

AREA = ToolSpec(
    "triangle_area",
    "Area of a triangle.",
    {
        "type": "object",
        "properties": {"base": {"type": "number"}, "height": {"type": "number"}, "unit": {"enum": ["m", "cm"]}},
        "required": ["base", "height", "unit"],
    },
)


def test_values_from_the_question_are_grounded_in_any_form() -> None:
    sources = Sources(["What's the weather in São Paulo, Brazil on the fifth? Budget: 1,200 USD, 15% off"])
    assert value_grounded("Sao Paulo", sources)  # accents and case do not matter
    assert value_grounded("São Paulo, BR", sources)  # half of the words is enough
    assert value_grounded(1200, sources) and value_grounded(1200.0, sources)
    assert value_grounded(0.15, sources)  # a percentage as a fraction
    assert value_grounded(5, Sources(["in five days"]))  # numbers as words
    assert value_grounded("2 * (3 + 4)", Sources(["two times three plus four"]))
    assert not value_grounded("Tokyo", sources)
    assert value_grounded("", sources) is False and value_grounded("  ", sources) is False  # never the user's
    assert not value_grounded(42, sources)
    assert value_grounded(True, sources) is None  # nothing to check


def test_a_call_with_no_value_from_the_question_is_not_grounded() -> None:
    asked = Sources(["Find the area of a triangle with base 10 and height 5."])
    assert is_grounded(AREA, {"base": 10, "height": 5, "unit": "m"}, asked)
    assert is_grounded(AREA, {"base": 10, "height": 7, "unit": "m"}, asked)  # one value is enough
    unrelated = Sources(["Who wrote Hamlet?"])
    assert ungrounded(AREA, {"base": 10, "height": 5, "unit": "m"}, unrelated) == (["base", "height"], 2)
    assert not is_grounded(AREA, {"base": 10, "height": 5, "unit": "m"}, unrelated)  # the enum is not evidence


def test_the_loop_drops_an_ungrounded_call_and_answers_in_plain_words() -> None:
    box = Toolbox().add(calculate, weather)
    script = Script(call("weather", city="Atlantis"), "I cannot tell.")
    loop = ToolLoop(box, script, settings=AgentSettings(ground=True))
    events = run(loop, question="What is the weather like?")
    assert [r.template for r in recoveries(events)] == [UNGROUNDED.name]
    assert not any(isinstance(e, ToolCall) for e in events)  # it did not run
    assert script.seen[1][2] is None  # the next step offers no tools
    assert (loop.result.termination, loop.result.answer, loop.result.dropped) == ("answered", "I cannot tell.", 1)


def test_a_value_copied_from_a_recovery_message_is_not_grounded() -> None:
    """Issue 16: the calculator's error text showed "e.g. '2 * (3 + 4)'", and the model called exactly that."""
    box = Toolbox().add(calculate)
    script = Script(call("calculate", expression="what"), call("calculate", expression="2 * (3 + 4)"), "No idea.")
    loop = ToolLoop(box, script, settings=AgentSettings(ground=True))
    events = run(loop, question="Calculate what you can")
    assert [r.template for r in recoveries(events)] == [TOOL_BAD_INPUT.name, UNGROUNDED.name]
    assert [e.arguments for e in events if isinstance(e, ToolCall)] == [{"expression": "what"}]


@pytest.mark.parametrize("text", ["Hi!", "How are you?", "Write a poem about the sea"])
def test_small_talk_with_the_real_model_stays_a_plain_answer(small_backend, text: str) -> None:  # type: ignore[no-untyped-def]
    """The gate may offer the weather tool ("How are you?" is 0.28 like it); grounding drops a call."""
    box = relevant_toolbox(Toolbox().add(calculate, weather), text, None, default_embedder())
    served: list[str] = []
    loop = ToolLoop(box, model_step({"small": cold(small_backend)}, served), settings=AgentSettings(ground=True))
    events = run(loop, text) if box else []
    assert not any(isinstance(e, ToolCall) for e in events)
    assert loop.result.termination in (None, "answered")  # None: nothing offered, the chat answers without tools


def test_the_tools_own_name_as_a_value_is_not_the_users_words() -> None:
    """SmolLM2 called search_files(query="search_files") for "Search my notes for dentist"."""
    search = ToolSpec("search_files", "Search files.", {"type": "object", "properties": {"query": {"type": "string"}},
                                                        "required": ["query"]})  # fmt: skip
    sources = Sources(["Search my notes for dentist"])
    assert value_grounded("search_files", sources)  # half of its words are in the question...
    assert ungrounded(search, {"query": "search_files"}, sources) == (["query"], 1)  # ...but it is the tool's name
    assert not is_grounded(search, {"query": "search_files"}, sources)
    assert is_grounded(search, {"query": "dentist"}, sources)


# -- spans: a free string argument copied from the question (an experiment, off by default) --------


def test_spans_are_runs_of_the_questions_words_without_end_punctuation() -> None:
    spans = value_spans("Find 'my_data' in San Francisco, CA.", max_words=3)
    assert "my_data" in spans and "San Francisco" in spans and "San Francisco, CA" in spans
    assert "Find 'my_data' in" in spans and "Find 'my_data' in San" not in spans  # at most 3 words
    assert all(s == s.strip(" .,'") for s in spans) and len(spans) == len(set(spans))


def test_only_free_strings_and_lists_of_them_must_be_spans() -> None:
    arguments = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "day": {"type": "string", "description": "The date in the format YYYY-MM-DD."},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "days": {"type": "integer"},
        },
    }
    copied = copied_strings(arguments, ["Rome", "Paris"])["properties"]
    assert copied["city"] == {"type": "string", "enum": ["Rome", "Paris"]}
    assert copied["tags"]["items"]["enum"] == ["Rome", "Paris"]
    for kept in ("day", "unit", "days"):  # a format to follow, a fixed choice, not a string
        assert copied[kept] == arguments["properties"][kept]


def test_under_spans_the_real_model_can_only_write_a_run_of_the_questions_words(small_backend) -> None:  # type: ignore[no-untyped-def]
    """BFCL simple_python_110 (tuning split): in the tuning run SmolLM2, free, wrote
    location="San Francisco } } to call a tool, or { " (a warm cache; cold, it writes "San Francisco")."""
    house = {
        "name": "predict_house_price",
        "description": "Predict house price based on area, number of rooms and year of construction.",
        "parameters": {
            "type": "dict",
            "properties": {
                "bedrooms": {"type": "integer", "description": "Number of bedrooms in the house."},
                "bathrooms": {"type": "integer", "description": "Number of bathrooms in the house."},
                "area": {"type": "integer", "description": "Area of the house in square feet."},
                "location": {"type": "string", "description": "Location of the house in the format of city name."},
            },
            "required": ["bedrooms", "bathrooms", "area", "location"],
        },
    }
    question = (
        "Predict the price of the house in San Francisco with 3 bedrooms, 2 bathrooms and area of 1800 square feet."
    )
    truth = [
        {"predict_house_price": {"bedrooms": [3], "bathrooms": [2], "area": [1800], "location": ["San Francisco"]}}
    ]
    item = BfclItem("simple_python_110", [{"role": "user", "content": question}], [house], truth)

    def location(spans: bool) -> str:  # the argument the model wrote
        result = asyncio.run(run_item(cold(small_backend), item, style="compact", constrain=True, spans=spans))
        return json.loads(result.outputs[-1])["arguments"]["location"]

    copied = location(spans=True)
    assert copied in value_spans(question) and copied == "San Francisco"
