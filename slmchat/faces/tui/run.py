"""Start the terminal app from the CLI: the config, the debug log, and a session built in the background."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from slmchat.infra import paths
from slmchat.infra.config import load_config

if TYPE_CHECKING:  # only annotations: the session's modules load in the thread that builds it
    from slmchat.engine.session import Session


def debug_log_file() -> Path:
    """Where ``slmchat --debug`` writes tracebacks (the app shows this path with the error)."""
    return paths.data_dir() / "logs" / "debug.log"


def run_app(open_session: Callable[[], Session], *, debug: bool = False) -> None:
    """Run the app until the user leaves; the session is closed with it."""
    from slmchat.faces.tui.app import SlmchatApp

    SlmchatApp(load_config(), open_session, debug_log=debug_log_file() if debug else None).run()
