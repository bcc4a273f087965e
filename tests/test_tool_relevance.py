"""The relevance gate: which installed tools a question is offered (MiniLM and the tool's own words)."""

from __future__ import annotations

import pytest

from slmchat.infra.embedding import default_embedder
from slmchat.tools.base import ToolSpec
from slmchat.tools.registry import Toolbox
from slmchat.tools.relevance import key_words, lexical_score, pick, relevant_toolbox
from tests.helpers import calculate, weather

FORECAST = ToolSpec(
    "get_weather_forecast",
    "Weather forecast.",
    {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}},
)


def test_key_words_come_from_the_tool_and_parameter_names_without_generic_words() -> None:
    assert key_words(FORECAST) == ["weather", "forecast", "location", "days"]


def test_the_lexical_score_matches_words_by_their_first_letters_in_any_language() -> None:
    assert lexical_score("forecast for Rome, 3 days", FORECAST) == 0.5
    # "localizacion" matches "location" by its first letters
    assert lexical_score("¿Pronóstico del tiempo? Localización: Madrid", FORECAST) == 0.25
    assert lexical_score("Hi!", FORECAST) == 0.0


def test_pick_keeps_the_best_within_the_margin_and_at_most_top_k() -> None:
    assert pick([0.3, 0.5, 0.45, 0.1], threshold=0.15, margin=0.1, top_k=3) == [1, 2]
    assert pick([0.3, 0.5, 0.45, 0.42], threshold=0.15, margin=0.1, top_k=2) == [1, 2]
    assert pick([0.1, 0.05], threshold=0.15) == []
    assert pick([]) == []


@pytest.mark.parametrize("text", ["Hi!", "Thanks!", "How are you?", "Who wrote Hamlet?", "Write a poem about the sea"])
def test_small_talk_is_offered_no_calculator(text: str) -> None:
    """With the weather tool too, some small talk is offered it: grounding then drops the call
    (``test_tool_grounding``)."""
    box = Toolbox().add(calculate)
    assert relevant_toolbox(box, text, None, default_embedder()).specs == []


@pytest.mark.parametrize(
    ("text", "tool"), [("What is the weather in Rome?", "weather"), ("Calculate 12 * 7 + 3", "calculate")]
)
def test_a_question_about_a_tool_is_offered_that_tool_first(text: str, tool: str) -> None:
    box = Toolbox().add(calculate, weather)
    assert relevant_toolbox(box, text, None, default_embedder()).specs[0].name == tool
