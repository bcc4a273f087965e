"""Tool specs from typed functions, the compact and JSON renderings, and the reply schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from slmchat.tools import ToolSpec, tool, tool_from_function
from slmchat.tools.calls import MAX_STRING, parse_reply, reply_schema
from slmchat.tools.prompt import CALL_INSTRUCTIONS, compact_signature, first_sentence, tool_prompt, tool_section

DATA = Path(__file__).parents[2] / "shared" / "data" / "bfcl"
needs_data = pytest.mark.skipif(not (DATA / "questions").is_dir(), reason=f"shared BFCL data not found at {DATA}")


@tool(requires_approval=True)
def convert(value: float, from_unit: str, to_unit: str, digits: int = 3, system: Literal["si", "us"] = "si") -> float:
    """Convert a measurement between units, e.g. km to mi. Knows length and mass.

    Details for people only."""
    return value


def test_a_typed_function_becomes_a_spec_and_a_compact_line() -> None:
    made = tool_from_function(convert)
    assert made.spec.requires_approval and made.spec.required == ["value", "from_unit", "to_unit"]
    assert made.spec.description == "Convert a measurement between units, e.g. km to mi. Knows length and mass."
    assert compact_signature(made.spec) == (
        'convert(value: float, from_unit: str, to_unit: str, digits: int = 3, system: "si"|"us" = "si") - '
        "Convert a measurement between units, e.g. km to"
    )
    assert first_sentence("Find x in y.z files. More.") == "Find x in y.z files"
    no_default = ToolSpec("f", "", {"type": "object", "properties": {"a": {"type": "string"}}})
    assert compact_signature(no_default) == "f(a?: str)"  # optional, and nothing to show as its default
    prompt = tool_prompt([made.spec], "compact", system="Be brief.")
    assert prompt.startswith("Be brief.\nTools:\nconvert(") and prompt.endswith(CALL_INSTRUCTIONS)
    schema = json.loads(tool_section([made.spec], "json").split("\n", 1)[1])
    assert schema[0]["function"]["parameters"]["properties"]["system"]["enum"] == ["si", "us"]


def test_arguments_are_checked_and_coerced_by_the_signature() -> None:
    made = tool_from_function(convert)
    assert made.validate({"value": "2.5", "from_unit": "km", "to_unit": "mi"}) == {
        "value": 2.5, "from_unit": "km", "to_unit": "mi",
    }  # fmt: skip
    with pytest.raises(ValueError) as caught:
        made.validate({"value": "lots", "from_unit": "km", "system": "imperial", "colour": 1})
    problems = caught.value.problems  # type: ignore[attr-defined]
    assert "'to_unit' is missing" in problems and "'colour' is not a parameter" in problems
    assert any(p.startswith("'value':") for p in problems) and any(p.startswith("'system':") for p in problems)


def test_functions_a_model_cannot_be_told_about_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        """No annotations."""

    def star(*args: int) -> None:
        """Varargs."""

    with pytest.raises(TypeError, match="needs a type annotation"):
        tool_from_function(untyped)
    with pytest.raises(TypeError, match="cannot be described"):
        tool_from_function(star)


def test_the_reply_schema_allows_only_offered_tools_and_an_answer() -> None:
    spec = tool_from_function(convert).spec
    schema = reply_schema([spec]).schema
    call, answer = schema["anyOf"]
    assert call["properties"]["tool"] == {"const": "convert"}
    assert call["properties"]["arguments"]["additionalProperties"] is False
    assert call["properties"]["arguments"]["properties"]["from_unit"]["maxLength"] == MAX_STRING
    assert "maxLength" not in call["properties"]["arguments"]["properties"]["system"]  # an enum bounds itself
    assert answer["required"] == ["answer"]
    only_answer = reply_schema([spec], allow_tools=False)
    assert only_answer.tools == () and only_answer.schema["required"] == ["answer"]


def test_llama_cpp_turns_the_reply_schema_into_a_grammar_with_the_tool_name_fixed() -> None:
    from llama_cpp import LlamaGrammar

    spec = ToolSpec("zebra_tool", "d", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    rules = LlamaGrammar.from_json_schema(json.dumps(reply_schema([spec]).schema), verbose=False)._grammar
    assert 'alternative-0-tool ::= "\\"zebra_tool\\""' in rules  # no other name can be written
    assert '"\\"a\\"" space ":" space integer' in rules  # the one parameter, typed
    assert '"\\"answer\\"" space ":" space string' in rules  # or a plain answer
    assert parse_reply('{"tool": "zebra_tool", "arguments": {"a": 1}}').name == "zebra_tool"  # type: ignore[union-attr]


@needs_data
def test_compact_prompts_are_at_least_75_percent_smaller_on_bfcl_multiple() -> None:
    from llama_cpp import Llama

    from slmchat.eval.bfcl import load_bfcl
    from slmchat.eval.tools_eval import item_toolbox
    from slmchat.infra.backends.llamacpp import resolve_model_path

    vocab = Llama(str(resolve_model_path("smollm2")), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True))

    compact = json_ = 0
    for item in load_bfcl(DATA / "questions" / "BFCL_v4_multiple.json"):
        specs = item_toolbox(item).specs
        compact += count(tool_section(specs, "compact"))
        json_ += count(tool_section(specs, "json"))
        reply_schema(specs)  # every BFCL function makes a valid reply schema
    assert 1 - compact / json_ >= 0.75, f"only {1 - compact / json_:.1%} smaller"
