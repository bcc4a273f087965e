"""Finding tools: installed plugins (entry-point group ``slmchat.tools``) and ``module:function`` names.

A plugin's entry point names a typed function, or a list of them::

    [project.entry-points."slmchat.tools"]
    calculate = "slmchat_calculator:calculate"

The tool's name is the function's (or ``@tool(name=...)``), not the entry point's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from slmchat.infra.errors import SlmchatError
from slmchat.tools.base import Tool, tool_from_function

ENTRY_POINT_GROUP = "slmchat.tools"


@dataclass
class Toolbox:
    """The tools a session offers, by name, and the plugins that could not be loaded."""

    tools: dict[str, Tool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    @property
    def specs(self) -> list:
        return [t.spec for t in self.tools.values()]

    def add(self, *functions: Callable[..., Any] | Tool) -> Toolbox:
        for item in functions:
            made = item if isinstance(item, Tool) else tool_from_function(item)
            self.tools[made.name] = made
        return self


def _as_tools(obj: Any) -> list[Tool]:
    items = obj if isinstance(obj, list | tuple) else [obj]
    return [item if isinstance(item, Tool) else tool_from_function(item) for item in items]


def installed_tools() -> Toolbox:
    """Every tool from installed plugins; a broken plugin is reported, not fatal."""
    box = Toolbox()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            for made in _as_tools(ep.load()):
                box.tools[made.name] = made
        except Exception as exc:  # a plugin's bug must not stop the chat
            box.problems.append(f"plugin {ep.name} ({ep.value}) did not load: {type(exc).__name__}: {exc}")
    return box


def import_tool(reference: str) -> list[Tool]:
    """Tools from ``package.module:function`` (or a list of functions)."""
    module_name, _, attribute = reference.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SlmchatError(f"cannot load tool {reference}: {exc}", "check the name in [tools] enabled") from None
    return _as_tools(obj)


def load_tools(enabled: Iterable[str] | None) -> Toolbox:
    """The tools to offer: ``enabled`` names installed tools or ``module:function``; "*" is all installed."""
    wanted = list(enabled) if enabled is not None else ["*"]
    if not wanted:
        return Toolbox()
    installed = installed_tools()
    box = Toolbox(problems=list(installed.problems))
    for name in wanted:
        if name == "*":
            box.tools.update(installed.tools)
        elif ":" in name:
            box.add(*import_tool(name))
        elif name in installed:
            box.tools[name] = installed[name]
        else:
            known = ", ".join(sorted(installed.tools)) or "none installed"
            box.problems.append(f"tool {name} is enabled in the config but not installed (installed: {known})")
    return box
