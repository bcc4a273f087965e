"""Text for a terminal: model output and stored text are data, never terminal commands.

An answer (or a document the model echoes back) may hold escape sequences: ``ESC ] 0;title
BEL`` retitles the window, ``ESC ] 52;c;... BEL`` writes the clipboard, ``ESC [ 2J`` clears the
screen. Every face that writes such text to a terminal passes it through ``printable``, which
shows each control character as a visible stand-in (``␛``, ``␇``) so nothing is obeyed and
nothing is hidden. Newline and tab are kept. ``write`` does the same for a stream.
"""

from __future__ import annotations

import json
import re
from typing import Any, TextIO

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
_CONTROL_NO_NEWLINE = re.compile(r"[\x00-\x1f\x7f\x80-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: what json.dumps(ensure_ascii=False) leaves raw that a terminal may obey (DEL, C1 controls such as
#: the one-byte CSI) or that cannot be encoded (lone surrogates): written as \uXXXX escapes instead
_RAW_IN_JSON = re.compile("[\x7f-\x9f\ud800-\udfff]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x7F:
        return "\u2421"  # ␡
    if code < 0x20:
        return chr(0x2400 + code)  # ␀..␟ (␛ for ESC, ␊ for a newline on a one-line field)
    return f"\\x{code:02x}"  # C1 controls (0x9b is a one-byte CSI) have no pictures


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with control characters (ESC, BEL, CR, C1, ...) made visible.

    Newlines and tabs stay, unless ``one_line``: then they become ``␊`` and ``␉`` too (for
    columns in a table). Lone surrogates (undecodable bytes) become U+FFFD.
    """
    pattern = _CONTROL_NO_NEWLINE if one_line else _CONTROL
    text = pattern.sub(_picture, text)
    return replace_surrogates(text)


def write(stream: TextIO, text: str) -> None:
    """Write model or stored ``text`` to ``stream`` (a terminal or a pipe) with controls made visible."""
    stream.write(printable(text))


def replace_surrogates(text: str) -> str:
    """Lone surrogates (undecodable bytes read with surrogateescape) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as readable UTF-8 JSON with every control character escaped (\\u001b, \\u009b)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
