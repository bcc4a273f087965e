"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
from typing import Any

from slmchat.engine.session import Session
from slmchat.infra.config import Config, TierConfig


def small_config(**small: Any) -> Config:
    """A config whose small tier is the shipped model with short, repeatable answers."""
    fields = {"model": "llamacpp:smollm2", "max_tokens": 24, "temperature": 0.0, "seed": 1, **small}
    return Config(small=TierConfig(**fields))


def collect(session: Session, text: str, route: str | None = None) -> list[Any]:
    """All events of one turn, run to the end."""

    async def run() -> list[Any]:
        return [event async for event in session.turn(text, route=route)]

    return asyncio.run(run())


def cold(backend: Any) -> Any:
    """Empty a llama.cpp backend's KV cache, so the next prompt is evaluated whole, as on a fresh load.

    The shared ``small_backend`` keeps the last prompt cached and later calls replay only what
    differs. llama.cpp's logits for a whole-prompt batch and for a one-token replay differ in
    the last digits, enough to flip a near tie at temperature 0 (SmolLM2 starts "La" or "The"
    for the capital of France). Tests that assert what the real model writes start cold, so the
    answer does not depend on which test ran before.
    """
    backend.llama.reset()
    return backend
