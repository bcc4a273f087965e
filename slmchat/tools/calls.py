"""What a model's reply means: a tool call, a plain answer, or something malformed.

With constrained output the reply is always one of the shapes in ``reply_schema``; without it
the parser also has to cope with what small models really write (code fences, chatter
around the JSON, cut-off JSON that json-repair can close).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import json_repair

from slmchat.tools.base import ToolSpec


@dataclass(frozen=True)
class Call:
    """A tool call as the model wrote it (not yet checked against the tool)."""

    name: str
    arguments: dict[str, Any]
    repaired: bool = False  # json-repair had to fix the JSON


@dataclass(frozen=True)
class Answer:
    """A reply that calls no tool."""

    text: str


@dataclass(frozen=True)
class Malformed:
    """A reply that looks like an attempted call but cannot be read as one."""

    text: str
    reason: str


Reply = Call | Answer | Malformed

_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)


@dataclass(frozen=True)
class ReplySchema:
    """The JSON schema a constrained reply must follow, and whether a plain answer is allowed."""

    schema: dict[str, Any]
    tools: tuple[str, ...] = field(default=())
    allow_answer: bool = True


def reply_schema(
    specs: list[ToolSpec],
    allow_answer: bool = True,
    allow_tools: bool = True,
    spans: list[str] | None = None,
    require: dict[str, dict[str, dict[str, Any] | None]] | None = None,
) -> ReplySchema:
    """``{"tool": NAME, "arguments": {...}}`` for one of ``specs``, or ``{"answer": TEXT}``.

    Each tool's arguments follow its own schema, so a grammar-constrained model can only
    write a known tool name with that tool's parameters. With ``spans`` (``value_spans`` of the
    question), a free string argument must be one of them: copied, not paraphrased. ``require``
    names, per tool, optional parameters the reply must fill too, each with the schema its value
    must follow or None for its own (``mentioned.named_parameters``).
    """
    options: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for spec in specs if allow_tools else []:
        arguments = bounded({k: v for k, v in spec.parameters.items() if k != "$defs"})
        if spans:
            arguments = copied_strings(arguments, spans)
        if extra := (require or {}).get(spec.name):
            arguments["required"] = list(dict.fromkeys([*arguments.get("required", []), *extra]))
            fixed = {name: schema for name, schema in extra.items() if schema is not None}
            arguments["properties"] = {**arguments.get("properties", {}), **fixed}
        defs.update(spec.parameters.get("$defs", {}))
        arguments.setdefault("type", "object")
        arguments["additionalProperties"] = False
        options.append({
            "type": "object",
            "properties": {"tool": {"const": spec.name}, "arguments": arguments},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        })  # fmt: skip
    if allow_answer or not options:
        options.append({
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        })  # fmt: skip
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    if defs:
        schema = {**schema, "$defs": defs}
    names = tuple(spec.name for spec in specs) if allow_tools else ()
    return ReplySchema(schema, names, allow_answer or not options)


def copied_strings(arguments: dict[str, Any], spans: list[str]) -> dict[str, Any]:
    """``arguments`` whose free strings (no enum, pattern or format hint), and lists of them,
    must be one of ``spans``."""
    from slmchat.tools.prompt import format_hint

    def free(schema: Any) -> bool:
        return (
            isinstance(schema, dict)
            and schema.get("type") == "string"
            and not {"enum", "const", "pattern", "format"} & schema.keys()
            and not format_hint(schema)
        )

    properties = dict(arguments.get("properties", {}))
    for name, schema in properties.items():
        if free(schema):
            properties[name] = {"type": "string", "enum": spans}
        elif isinstance(schema, dict) and schema.get("type") == "array" and free(schema.get("items")):
            properties[name] = {**schema, "items": {"type": "string", "enum": spans}}
    return {**arguments, "properties": properties}


#: bounds for strings and lists that set none: a small model sometimes repeats inside a value
#: ("employees_table_delete_custom_custom_…") until max_tokens, and the call is lost
MAX_STRING = 200
MAX_ITEMS = 32


def bounded(schema: Any) -> Any:
    """``schema`` with a length cap on every unbounded string and array, at any depth."""
    if isinstance(schema, list):
        return [bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) if k in ("items", "anyOf", "oneOf", "allOf") else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {name: bounded(sub) for name, sub in schema["properties"].items()}
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds and "enum" not in schema and "pattern" not in schema:
        out.setdefault("maxLength", MAX_STRING)
    if "array" in kinds:
        out.setdefault("maxItems", MAX_ITEMS)
    return out


def parse_reply(text: str) -> Reply:
    """Read a model reply. Text with no JSON object in it is a plain answer."""
    stripped = text.strip()
    fenced = _FENCE.search(stripped)
    body = fenced.group(1).strip() if fenced else stripped
    start = _first_json_start(body)
    if start < 0:
        return Answer(stripped)
    # words before the JSON (also before a fenced block): an answer that shows some JSON, unless it is a call
    prose_before = start > 0 or bool(fenced and stripped[: fenced.start()].strip())
    candidate = body[start:]
    repaired = False
    try:
        data = json.JSONDecoder().raw_decode(candidate)[0]
    except json.JSONDecodeError:
        data = json_repair.repair_json(candidate, return_objects=True)
        repaired = True
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # several calls: the first one runs now
    if not isinstance(data, dict) or not data:
        if prose_before:
            return Answer(stripped)  # prose that happens to contain a bracket
        return Malformed(stripped, "the JSON could not be read")
    return _shape(data, stripped, repaired, prose_before)


def _first_json_start(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[{")) if p >= 0]
    return min(positions) if positions else -1


def _shape(data: dict[str, Any], text: str, repaired: bool, prose_before: bool) -> Reply:
    if "answer" in data and "tool" not in data:
        answer = data["answer"]
        return Answer(answer if isinstance(answer, str) else json.dumps(answer))
    name = data.get("tool", data.get("name"))
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI-style arguments encoded as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = json_repair.repair_json(arguments, return_objects=True)
            repaired = True
    if isinstance(name, str) and name and isinstance(arguments, dict):
        return Call(name, arguments, repaired)
    if prose_before:
        return Answer(text)
    if name is None:
        return Malformed(text, 'no "tool" name in the JSON')
    return Malformed(text, '"arguments" is not an object')


class AnswerStream:
    """Pulls the text of ``{"answer": "..."}`` out of a reply while it streams.

    ``feed`` takes the next raw piece and returns the newly decoded answer text, so a
    constrained answer reaches the user token by token instead of all at the end.
    """

    _START = re.compile(r'^\s*\{\s*"answer"\s*:\s*"')
    _ESCAPES: ClassVar[dict[str, str]] = {
        '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
    }  # fmt: skip

    def __init__(self) -> None:
        self.raw = ""
        self._pos: int | None = None  # where the answer string's content starts in ``raw``
        self.done = False
        self.is_answer: bool | None = None  # unknown until the opening is seen
        self.prose = False

    def feed(self, piece: str) -> str:
        self.raw += piece
        if self.is_answer is None:
            match = self._START.match(self.raw)
            head = self.raw.lstrip()[:1]
            if match:
                self.is_answer, self._pos = True, match.end()
            elif head and head not in "{[`":  # prose (unconstrained output): passes through as it is
                self.is_answer = self.prose = True
                return self.raw
            elif not _could_become_answer(self.raw):
                self.is_answer = False
        elif self.prose:
            return piece
        if not self.is_answer or self.done or self._pos is None:
            return ""
        out, pos = [], self._pos
        while pos < len(self.raw):
            char = self.raw[pos]
            if char == '"':
                self.done = True
                pos += 1
                break
            if char == "\\":
                if pos + 1 >= len(self.raw):
                    break
                code = self.raw[pos + 1]
                if code == "u":
                    if pos + 6 > len(self.raw):
                        break
                    out.append(chr(int(self.raw[pos + 2 : pos + 6], 16)))
                    pos += 6
                    continue
                out.append(self._ESCAPES.get(code, code))
                pos += 2
                continue
            out.append(char)
            pos += 1
        self._pos = pos
        return "".join(out)


def _could_become_answer(raw: str) -> bool:
    """Whether ``raw`` is still a prefix of ``{"answer": "`` (whitespace allowed)."""
    compact = re.sub(r"\s+", "", raw)
    return '{"answer":"'.startswith(compact[:11])
