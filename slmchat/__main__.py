"""`python -m slmchat` and the `slmchat` command: the CLI, quiet when Ctrl-C comes while it starts.

Importing the CLI takes a few tenths of a second (click, pydantic, the commands). Ctrl-C in that
time would print a ``KeyboardInterrupt`` traceback from deep inside an import; until the CLI is
loaded, Ctrl-C ends the process with 130 and nothing else, as there is nothing yet to save.
"""

from __future__ import annotations

import os
import signal


def _quit_while_starting(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def run() -> None:
    """The console script: load the CLI with a quiet Ctrl-C, then run it with Python's own."""
    signal.signal(signal.SIGINT, _quit_while_starting)
    from slmchat.faces.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # turns see Ctrl-C as KeyboardInterrupt again
    main()


if __name__ == "__main__":
    run()
