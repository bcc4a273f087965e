"""The optional parameters a question names, so the constrained reply must fill them.

SmolLM2 leaves out optional parameters even when the user asked for them: "the circumference
of a circle with a radius of 4 inches" becomes ``calculate_circumference(radius=4)``, and the
tool answers in its default unit. A parameter counts as named when a key word of its name is
in the question ("toll roads avoided" names ``avoid_tolls``), or one of its values is: an enum
value, or a value quoted in its description ("'Celsius' or 'Fahrenheit'" names ``temp_unit``
for "in Celsius").
"""

from __future__ import annotations

import re
from typing import Any

from slmchat.tools.base import ToolSpec
from slmchat.tools.grounding import Sources, fold, words
from slmchat.tools.relevance import name_words

_QUOTED = re.compile(r"'([^']{2,40})'|\"([^\"]{2,40})\"")


def named_parameters(spec: ToolSpec, question: str) -> list[str]:
    """The optional parameters of ``spec`` that ``question`` names, in the spec's order."""
    sources = Sources([question])
    required = set(spec.required)
    return [
        name
        for name, schema in spec.properties.items()
        if name not in required and (_name_in(name, sources) or _value_in(schema, sources))
    ]


def _name_in(name: str, sources: Sources) -> bool:
    return any(sources.has_word(word) for word in name_words(name))


def _value_in(schema: dict[str, Any], sources: Sources) -> bool:
    values = [v for v in schema.get("enum", []) if isinstance(v, str)]
    description = schema.get("description", "")
    if isinstance(description, str):
        values += [a or b for a, b in _QUOTED.findall(description)]
    return any(_phrase_in(value, sources) for value in values)


def _phrase_in(value: str, sources: Sources) -> bool:
    """Every word of ``value`` is a word of the sources (whole words: "all" is not in "small")."""
    found = words(fold(value))
    return bool(found) and all(word in sources.words for word in found) and len("".join(found)) >= 2
