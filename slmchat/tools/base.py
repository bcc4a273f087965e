"""A tool is a typed Python function; its schema and argument validation come from its signature.

Plugins write plain functions with annotated parameters and a docstring. ``@tool`` is only
needed to rename a tool or declare that it touches the outside world (``requires_approval``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

_MARK = "__slmchat_tool__"


@dataclass(frozen=True)
class ToolSpec:
    """What a model is told about a tool: name, one-line description, JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of type object
    requires_approval: bool = False

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties", {}))


class ToolUnavailable(RuntimeError):
    """Raised by a tool that cannot work as set up (no folder allowed, no service configured).

    The model is told to answer without it; the message is for the user to fix the setup.
    """


class ArgumentError(ValueError):
    """The arguments of a call do not fit the tool; ``problems`` says which and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Tool:
    """A callable tool: its spec plus the function and the pydantic model that checks arguments."""

    spec: ToolSpec
    function: Callable[..., Any] | None
    arguments: type[BaseModel] | None = field(default=None, repr=False)  # None: check against the JSON schema
    timeout_s: float = 30.0

    @property
    def name(self) -> str:
        return self.spec.name

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Checked and coerced arguments, or ``ArgumentError`` naming each problem."""
        if self.arguments is None:
            return _validate_schema(self.spec.parameters, arguments)
        try:
            model = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            raise ArgumentError([_problem(error) for error in exc.errors()]) from None
        return {name: getattr(model, name) for name in model.model_fields_set | _required(self.arguments)}

    def run(self, arguments: dict[str, Any]) -> Any:
        """Run with validated arguments (blocking; the engine calls it in a worker thread)."""
        if self.function is None:
            raise RuntimeError(f"tool {self.name} only describes a call; it has nothing to run")
        return self.function(**self.validate(arguments))


def tool_from_spec(spec: ToolSpec, function: Callable[..., Any] | None = None) -> Tool:
    """A tool described by a JSON schema (for example a benchmark's), checked with jsonschema."""
    return Tool(spec, function)


def _validate_schema(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator({**schema, "additionalProperties": False})
    problems = []
    for error in sorted(checker.iter_errors(arguments), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        if error.validator == "required":
            problems.append(f"{error.message.split(' is ')[0]} is missing")
        elif error.validator == "additionalProperties":
            extra = sorted(set(arguments) - set(schema.get("properties", {})))
            problems.append(f"{', '.join(repr(e) for e in extra)} is not a parameter")
        else:
            problems.append(f"'{where or 'arguments'}': {error.message}")
    if problems:
        raise ArgumentError(problems)
    return arguments


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, info in model.model_fields.items() if info.is_required()}


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    if error["type"] == "missing":
        return f"'{where}' is missing"
    if error["type"] == "extra_forbidden":
        return f"'{where}' is not a parameter"
    return f"'{where}': {error['msg'].lower()} (got {error.get('input')!r})"


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    requires_approval: bool = False,
    timeout_s: float = 30.0,
) -> Any:
    """Mark a function as a tool: ``@tool`` or ``@tool(requires_approval=True)``."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _MARK, {"name": name, "requires_approval": requires_approval, "timeout_s": timeout_s})
        return fn

    return mark(function) if function is not None else mark


def tool_from_function(function: Callable[..., Any]) -> Tool:
    """Build a ``Tool`` from a typed function; refuses parameters without annotations."""
    options = getattr(function, _MARK, {})
    name = options.get("name") or function.__name__
    hints = get_type_hints(function)
    fields: dict[str, Any] = {}
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args and **kwargs cannot be described to a model")
        if param.name not in hints:
            raise TypeError(f"tool {name}: parameter '{param.name}' needs a type annotation")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]
    schema = _plain_schema(model.model_json_schema())
    doc = inspect.getdoc(function) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    spec = ToolSpec(name, summary, schema, options.get("requires_approval", False))
    return Tool(spec, function, model, options.get("timeout_s", 30.0))


def _plain_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic's schema without titles, so the prompt spends no tokens on them."""
    schema = {k: v for k, v in schema.items() if k not in ("title", "additionalProperties")}
    properties = {}
    for key, value in schema.get("properties", {}).items():
        properties[key] = {k: v for k, v in value.items() if k != "title"}
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        result["required"] = schema["required"]
    if "$defs" in schema:
        result["$defs"] = schema["$defs"]
    return result
