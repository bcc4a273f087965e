"""Model output and stored text as data: terminal control characters made visible, never obeyed.

Rich and Textual markup is avoided where text is drawn (``Text`` objects, ``markup=False``);
this module handles the other half: an escape sequence in an answer must not reach the
terminal, so every control character except newline and tab is shown as its Unicode picture.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x7F:
        return "\u2421"  # ␡
    if code < 0x20:
        return chr(0x2400 + code)  # ␀..␟ (␛ for ESC)
    return f"\\x{code:02x}"  # C1 controls have no pictures


def plain(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, C1...) replaced by visible stand-ins."""
    return _CONTROL.sub(_picture, text)
