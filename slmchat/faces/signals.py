"""SIGTERM and SIGHUP end a face's turn the way Ctrl-C does: the partial answer is kept.

``kill`` (SIGTERM) and closing the terminal (SIGHUP) would otherwise end the process at once,
losing the streamed text. A face (``ask``, the chat, the app) installs ``StopSignals`` on its
event loop: the first signal calls its ``stop`` (cancel the turn, or leave the app), the face
finishes the turn, which stores the partial answer as interrupted, and exits with 128 + the
signal number (143 for TERM, 129 for HUP). A second signal ends the process at once. Only
faces install it: a library must not take its host's signals (see ``slmchat.faces.process``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from types import TracebackType

#: the signals that mean "stop now" (SIGHUP does not exist on Windows)
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignals:
    """While active on the running loop, SIGTERM and SIGHUP call ``stop`` once; ``received`` is the signal.

    Use it around a turn (``with StopSignals(session.cancel) as stop: ...``), call ``stop.note()``
    before the block ends, then exit with ``stop.exit_code`` when ``stop.received`` is set.
    Outside a running loop, or off the main thread, it installs nothing and the signals keep
    their default.
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.received: signal.Signals | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stderr: int | None = None

    def __enter__(self) -> StopSignals:
        try:  # stderr as it is now: llama.cpp points fd 2 at /dev/null while it loads a model
            self._stderr = os.dup(sys.stderr.fileno())
        except (OSError, ValueError, AttributeError):
            self._stderr = None
        try:
            loop = asyncio.get_running_loop()
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, no loop, or not the main thread
            return self
        self._loop = loop
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for signum in STOP_SIGNALS:
                self._loop.remove_signal_handler(signum)
        self._loop = None
        if self._stderr is not None:
            os.close(self._stderr)
            self._stderr = None

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.received is not None:  # the second one: the user means it, stop without saving
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        self.stop()

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended; 0 when none came."""
        return 128 + int(self.received) if self.received is not None else 0

    def note(self, what: str = "the partial answer is saved") -> None:
        """One line on stderr saying why the face stopped; nothing when stderr is gone (SIGHUP)."""
        if self.received is None:
            return
        line = f"[stopped by {self.received.name}: {what}]"
        if self._stderr is None:
            say(line)
            return
        try:
            sys.stderr.flush()
            os.write(self._stderr, (line + "\n").encode())
        except (OSError, ValueError):  # EIO: the terminal is gone
            pass


def say(line: str) -> None:
    """Write ``line`` to stderr, ignoring a closed terminal or pipe (EIO, EPIPE after SIGHUP)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def silence_stdout() -> None:
    """Point stdout at /dev/null when the terminal is gone, so the flush at exit cannot fail loudly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
