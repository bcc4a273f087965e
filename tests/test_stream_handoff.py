"""Moving a blocking stream from a worker thread into the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from slmchat.infra.backends.base import StreamItem, iterate_in_thread


def drain(produce, slow_consumer: bool = False) -> list[StreamItem]:  # type: ignore[no-untyped-def]
    async def run() -> list[StreamItem]:
        out = []
        async for item in iterate_in_thread(produce):
            out.append(item)
            if slow_consumer:
                time.sleep(0.001)  # the worker races ahead: items arrive in batches
        return out

    return asyncio.run(run())


def numbers(n: int) -> Iterator[StreamItem]:
    for i in range(n):
        yield str(i)


@pytest.mark.parametrize("slow", [False, True])
def test_every_item_arrives_once_in_order(slow: bool) -> None:
    assert drain(lambda: numbers(2000), slow) == [str(i) for i in range(2000)]


def test_an_error_in_the_worker_reaches_the_consumer_after_the_items_before_it() -> None:
    def failing() -> Iterator[StreamItem]:
        yield "a"
        yield "b"
        raise ValueError("model crashed")

    seen: list[StreamItem] = []

    async def run() -> None:
        async for item in iterate_in_thread(failing):
            seen.append(item)

    with pytest.raises(ValueError, match="model crashed"):
        asyncio.run(run())
    assert seen == ["a", "b"]


def test_an_empty_stream_ends() -> None:
    assert drain(lambda: iter(())) == []
