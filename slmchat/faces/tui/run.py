"""Start the terminal app from the CLI: the config, the debug log, and a session built in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from slmchat.faces.signals import StopSignals
from slmchat.infra import paths
from slmchat.infra.config import load_config

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session
    from slmchat.faces.tui.app import SlmchatApp


def debug_log_file() -> Path:
    """Where ``slmchat --debug`` writes tracebacks (the app shows this path with the error)."""
    return paths.data_dir() / "logs" / "debug.log"


def run_app(open_session: Callable[[], Session], *, debug: bool = False) -> int:
    """Run the app until the user leaves; the session is closed with it. The exit code.

    SIGTERM and SIGHUP (the terminal closed) leave the app as Ctrl-Q would, stopping a running
    answer first (its partial answer is stored), and the code is 128 + the signal.
    """
    from slmchat.faces.tui.app import SlmchatApp
    from slmchat.faces.tui.driver import hangup_safe_driver

    log = debug_log_file() if debug else None
    app = SlmchatApp(load_config(), open_session, debug_log=log, driver_class=hangup_safe_driver())
    return asyncio.run(_run(app))


async def _run(app: SlmchatApp) -> int:
    streaming = False

    def leave() -> None:
        nonlocal streaming
        streaming = app.live is not None
        if app.session is not None:
            app.session.cancel()
        app.exit(return_code=signals.exit_code)

    signals = StopSignals(leave)
    with signals:
        await app.run_async()
        signals.note("the partial answer is saved" if streaming else "the chat is closed")
    return signals.exit_code or app.return_code or 0
