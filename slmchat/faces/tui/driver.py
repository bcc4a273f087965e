"""Textual's terminal driver, made safe for a terminal that closes while the app draws.

Textual writes each frame through a writer thread with a queue of 30. When the terminal is
closed, the thread's next write fails (EIO) and the thread dies; the app keeps drawing (a
streaming answer redraws often) until the queue is full, and the next frame blocks the event
loop for good, so the SIGHUP handler never leaves the app. Here the writer's file drops what
it cannot write once the terminal is gone, so the thread lives and the app can leave.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.driver import Driver


class TerminalOutput:
    """A text file that drops writes once they fail (the terminal is gone: EIO, or EPIPE)."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._file.write(text)
            except (OSError, ValueError):
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.gone = True

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def hangup_safe_driver() -> type[Driver] | None:
    """The driver class for the app on Linux and macOS; None (Textual's choice) elsewhere.

    None too when ``TEXTUAL_DRIVER`` names a driver: the user's choice stands.
    """
    if sys.platform == "win32" or os.environ.get("TEXTUAL_DRIVER"):
        return None
    from textual.drivers.linux_driver import LinuxDriver

    class HangupSafeDriver(LinuxDriver):
        """``LinuxDriver`` writing through ``TerminalOutput``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._file = TerminalOutput(self._file)

    return HangupSafeDriver
