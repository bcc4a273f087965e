"""What an interactive face does to its own process, which a library must not do to its host's."""

from __future__ import annotations

import gc


def freeze_loaded_objects() -> None:
    """Move every object alive now out of the garbage collector's scans.

    A face calls it once, after its first answer, when the model, the embedding model and the
    memory database are loaded. Without it a full collection walks ~100,000 long-lived objects on
    the event loop: 50–60 ms in which the chat cannot redraw (``tests/bench/bench_loop_lag.py
    --freeze-gc`` measures both). Frozen objects that become garbage later are not collected,
    which is fine for what loads once.
    """
    gc.freeze()
