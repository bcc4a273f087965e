"""Tools small models can call: typed functions, compact prompts, constrained calls, recovery."""

from slmchat.tools.base import ArgumentError, Tool, ToolSpec, ToolUnavailable, tool, tool_from_function
from slmchat.tools.registry import ENTRY_POINT_GROUP, Toolbox, load_tools

__all__ = [
    "ENTRY_POINT_GROUP", "ArgumentError", "Tool", "ToolSpec", "ToolUnavailable", "Toolbox", "load_tools", "tool",
    "tool_from_function",
]  # fmt: skip
