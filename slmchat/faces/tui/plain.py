"""Model output and stored text as data in the app: the shared terminal-safe text, under its old name.

Rich and Textual markup is avoided where text is drawn (``Text`` objects, ``markup=False``);
``faces.terminal_text.printable`` handles the other half: an escape sequence in an answer never
reaches the terminal.
"""

from __future__ import annotations

from slmchat.faces.terminal_text import printable


def plain(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, C1...) replaced by visible stand-ins."""
    return printable(text)
