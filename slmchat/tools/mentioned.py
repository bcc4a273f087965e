"""The optional parameters a question names, so the constrained reply must fill them.

SmolLM2 leaves out optional parameters even when the user asked for them: "the average
temperature in Austin for the next 3 days in Celsius" becomes
``average_temperature(location="Austin", days=3)``, and the tool answers in its default unit.
A parameter counts as named when a key word of its name is in the question ("toll roads
avoided" names ``avoid_tolls``), or one of its values is: an enum value, or a value quoted in
its description ("'Celsius' or 'Fahrenheit'" names ``temp_unit`` for "in Celsius").

What the question says also fixes the value where it can: a string named by its values may
only take those values (the model wrote ``root_type="real_roots"`` for "find all the roots"
when the description offers 'real' and 'all'), and a boolean named by its name is true
("toll roads avoided": ``avoid_tolls=true``; left free, 2 of the 4 named booleans of the
first 120 tuning items of BFCL simple_python came out false).
"""

from __future__ import annotations

import re
from typing import Any

from slmchat.tools.base import ToolSpec
from slmchat.tools.grounding import Sources, fold, words
from slmchat.tools.relevance import name_words

_QUOTED = re.compile(r"'([^']{2,40})'|\"([^\"]{2,40})\"")


def named_parameters(spec: ToolSpec, question: str) -> dict[str, dict[str, Any] | None]:
    """The optional parameters of ``spec`` that ``question`` names, in the spec's order, each with
    the schema its value must follow now (None: its own schema)."""
    sources = Sources([question])
    required = set(spec.required)
    named: dict[str, dict[str, Any] | None] = {}
    for name, schema in spec.properties.items():
        if name in required:
            continue
        values = [value for value in _values(schema) if _phrase_in(value, sources)]
        if values and schema.get("type") == "string":
            named[name] = {"type": "string", "enum": list(dict.fromkeys(values))}
        elif values:
            named[name] = None
        elif any(sources.has_word(word) for word in name_words(name)):
            named[name] = {"type": "boolean", "const": True} if schema.get("type") == "boolean" else None
    return named


def _values(schema: dict[str, Any]) -> list[str]:
    """The string values a parameter lists: its enum, and those quoted in its description."""
    values = [v for v in schema.get("enum", []) if isinstance(v, str)]
    description = schema.get("description", "")
    if isinstance(description, str):
        values += [a or b for a, b in _QUOTED.findall(description)]
    return values


def _phrase_in(value: str, sources: Sources) -> bool:
    """Every word of ``value`` is a word of the sources (whole words: "all" is not in "small")."""
    found = words(fold(value))
    return bool(found) and all(word in sources.words for word in found) and len("".join(found)) >= 2
