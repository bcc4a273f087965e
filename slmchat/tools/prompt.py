"""The tool section of the prompt: compact signatures for small models, JSON schema for the rest.

Compact: one line per tool, ``convert(value: float, from_unit: str, to_unit: str) - Convert
between units``. JSON: the OpenAI ``tools`` list, what backends with native tool calling take.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from slmchat.tools.base import ToolSpec

PromptStyle = Literal["compact", "json"]

#: how to answer; the same words for both styles, so only the tool list differs between them
CALL_INSTRUCTIONS = (
    'Reply with JSON only: {"tool": NAME, "arguments": {...}} to call a tool, or {"answer": TEXT} when no tool fits.'
)
TOOLS_HEADER = "Tools:"
#: words of a tool's description kept in the compact prompt (its first sentence, cut here)
SUMMARY_WORDS = 8

_SIMPLE_TYPES = {
    "integer": "int", "number": "float", "string": "str", "boolean": "bool", "object": "dict", "null": "None",
}  # fmt: skip
#: the form a string parameter's description asks for, kept in the compact line: date and time
#: patterns, "City, State"-like examples (as the form, never the example: a small model copies it)
_DATE_FORM = re.compile(
    r"\b(YYYY[-/.]MM[-/.]DD(?:[T ]HH:MM(?::SS)?)?|MM[-/.]DD[-/.]YYYY|DD[-/.]MM[-/.]YYYY|HH:MM(?::SS)?)\b"
)
_PLACE_FORM = re.compile(
    r"\b(?:format(?:ted)?(?: it)? as|in the (?:format|form) of)\s+['\"]?([A-Z][a-z]+(?:, [A-Z][a-z]+)+)"
)
_PLACE_EXAMPLE = re.compile(r"\b[Ee]\.g\.,?\s+(?:[A-Z][\w.]*\s?)+,\s?([A-Z]{2})\b")
#: a sentence ends at . ! ? before a capital letter or the end, but not at "e.g." or "i.e."
_FIRST_SENTENCE = re.compile(r"(.+?(?<!\be\.g)(?<!\bi\.e)[.!?])(?=\s+[A-Z(\"']|\s*$)")


def openai_tools(specs: list[ToolSpec]) -> list[dict[str, Any]]:
    """The OpenAI ``tools`` parameter for these specs."""
    return [
        {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.parameters}}
        for s in specs
    ]


def tool_section(specs: list[ToolSpec], style: PromptStyle = "compact") -> str:
    """The text that tells the model which tools exist (without the answer instructions)."""
    if style == "json":
        return f"{TOOLS_HEADER}\n{json.dumps(openai_tools(specs), ensure_ascii=False)}"
    return "\n".join([TOOLS_HEADER, *(compact_signature(spec) for spec in specs)])


def tool_prompt(specs: list[ToolSpec], style: PromptStyle = "compact", system: str = "") -> str:
    """A system prompt offering ``specs``: the caller's system text, the tools, how to reply."""
    parts = [system.strip()] if system.strip() else []
    parts += [tool_section(specs, style), CALL_INSTRUCTIONS]
    return "\n".join(parts)


def compact_signature(spec: ToolSpec, summary_words: int | None = SUMMARY_WORDS) -> str:
    """``name(value: float, unit: str = "m", digits?: int) - First words of the description``.

    ``?`` marks an optional parameter without a default. Only the first ``summary_words``
    words of the description's first sentence are kept for the model: the gate has already
    matched the question against the whole description. ``None`` keeps the whole sentence
    (what people read in ``/tools``).
    """
    required = set(spec.required)
    params = []
    for name, schema in spec.properties.items():
        text = f"{name}: {type_name(schema, spec.parameters)}"
        if hint := format_hint(schema):
            text = f'{text} "{hint}"'
        if name not in required:
            text = f"{text} = {json.dumps(schema['default'])}" if "default" in schema else f"{name}?{text[len(name) :]}"
        params.append(text)
    line = f"{spec.name}({', '.join(params)})"
    summary = " ".join(first_sentence(spec.description).split()[:summary_words]).rstrip(",;:")
    return f"{line} - {summary}" if summary else line


def format_hint(schema: dict[str, Any]) -> str:
    """The form a string value must take, from its description ("YYYY-MM-DD", "City, State"), or ""."""
    description = schema.get("description", "")
    if schema.get("type") != "string" or "enum" in schema or not isinstance(description, str):
        return ""
    if match := _DATE_FORM.search(description):
        return match.group(1)
    if match := _PLACE_FORM.search(description):
        return match.group(1)
    if _PLACE_EXAMPLE.search(description):
        return "City, ST"
    return ""


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """``name(a=1, b="x")``: a call as people (and models) read it."""
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return f"{name}({inner})"


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = _FIRST_SENTENCE.match(text)
    return (match.group(1) if match else text).rstrip(".")


def type_name(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> str:
    """A short Python-like name for a JSON-schema type."""
    if "$ref" in schema and root is not None:
        schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "enum" in schema:
        return "|".join(json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema:
        names = [type_name(option, root, depth) for option in schema["anyOf"]]
        return "|".join(dict.fromkeys(names))
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(type_name({**schema, "type": k}, root, depth) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return f"list[{type_name(items, root, depth + 1)}]" if isinstance(items, dict) and items else "list"
    if kind == "object" and schema.get("properties") and depth < 1:
        inner = ", ".join(f"{k}: {type_name(v, root, depth + 1)}" for k, v in schema["properties"].items())
        return "{" + inner + "}"
    if kind is None:
        return "any"
    return _SIMPLE_TYPES.get(kind, str(kind))
