"""Quoting user values in messages: a 100 KB model name must not become a 100 KB error line."""

from __future__ import annotations

from typing import Any

#: characters of a value shown in a message before it is cut
SHOWN_CHARS = 60
#: characters of a file path shown: paths are long but only useful whole (names are capped at MAX_MODEL_NAME)
SHOWN_PATH_CHARS = 300
#: the longest model name accepted; longer ones are refused before anything looks them up
MAX_MODEL_NAME = 1000


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` itself, or its first ``limit`` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def quoted(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut like ``shorten`` when the value is long."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
