"""Optional parameters the question names are filled: the grammar makes them required for that reply."""

from __future__ import annotations

import asyncio
import json

from slmchat.eval.bfcl import BfclItem
from slmchat.eval.tools_eval import run_item
from slmchat.tools.base import ToolSpec
from slmchat.tools.calls import reply_schema
from slmchat.tools.mentioned import named_parameters
from tests.helpers import cold

#: BFCL simple_python_78 (tuning split)
TEMPERATURE = {
    "name": "average_temperature",
    "description": "Retrieves the average temperature for a specific location over the defined timeframe.",
    "parameters": {
        "type": "dict",
        "properties": {
            "location": {"type": "string", "description": "The city to get the average temperature for."},
            "days": {"type": "integer", "description": "The number of days to get the average temperature for."},
            "temp_unit": {
                "type": "string",
                "description": "The temperature unit ('Celsius' or 'Fahrenheit'). Default is 'Fahrenheit'.",
            },
        },
        "required": ["location", "days"],
    },
}


def spec(properties: dict, required: list[str]) -> ToolSpec:
    return ToolSpec("tool", "A tool.", {"type": "object", "properties": properties, "required": required})


def test_a_parameter_is_named_by_a_word_of_its_name_or_by_one_of_its_values() -> None:
    route = spec(
        {
            "start": {"type": "string"},
            "avoid_tolls": {"type": "boolean", "description": "Avoid toll roads."},
            "mode": {"type": "string", "enum": ["driving", "walking"]},
            "size": {"type": "string", "description": "Size of the bird. Default is 'small'."},
            "scope": {"type": "string", "description": "'all' or 'some'."},
        },
        ["start"],
    )
    assert named_parameters(route, "From Paris, toll roads avoided, walking") == {
        "avoid_tolls": {"type": "boolean", "const": True},  # a boolean named by its name is true
        "mode": {"type": "string", "enum": ["walking"]},  # a string named by its values takes one of them
    }
    assert named_parameters(route, "A small green bird") == {"size": {"type": "string", "enum": ["small"]}}
    assert named_parameters(route, "Any size will do") == {"size": None}  # named by its name: its own schema
    assert named_parameters(route, "From Paris") == {}  # required parameters are never listed
    assert named_parameters(spec({"get_data": {"type": "string"}}, []), "get me the data") == {}  # generic words


def test_the_grammar_requires_the_named_parameters_of_that_tool_only() -> None:
    tool = ToolSpec("average_temperature", "", {**TEMPERATURE["parameters"], "type": "object"})
    celsius = {"type": "string", "enum": ["Celsius"]}
    schema = reply_schema([tool], require={"average_temperature": {"temp_unit": celsius}, "other": {"x": None}}).schema
    arguments = schema["anyOf"][0]["properties"]["arguments"]
    assert arguments["required"] == ["location", "days", "temp_unit"]
    assert arguments["properties"]["temp_unit"] == celsius and "x" not in arguments["properties"]
    assert tool.required == ["location", "days"] and "enum" not in tool.properties["temp_unit"]  # the spec is unchanged


def test_the_real_model_fills_the_unit_the_user_asked_for(small_backend) -> None:  # type: ignore[no-untyped-def]
    """Free, SmolLM2 writes average_temperature(location="Austin", days=3): Fahrenheit, not what was asked."""
    question = "Get the average temperature in Austin for the next 3 days in Celsius."
    item = BfclItem("simple_python_78", [{"role": "user", "content": question}], [TEMPERATURE])

    def arguments(fill_named: bool) -> dict:
        result = asyncio.run(
            run_item(cold(small_backend), item, style="compact", constrain=True, fill_named=fill_named)
        )
        return json.loads(result.outputs[-1])["arguments"]

    assert "temp_unit" not in arguments(fill_named=False)
    assert arguments(fill_named=True)["temp_unit"] == "Celsius"
