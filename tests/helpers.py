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
