"""Scripted models for tests of faces and plugins: real ``Session`` turns, deterministic answers.

A face's snapshot test needs the same stream every run; a plugin author needs a model that
calls their tool. ``ScriptedBackend`` is a real ``ChatBackend``: the engine routes, stores,
measures and emits events exactly as with a real model, only the text is fixed::

    from slmchat.testing import ScriptedBackend, scripted_session

    session = scripted_session(["Paris is the capital of France."])
    stats = session.ask("What is the capital of France?")

The engine's own tests run the real llama.cpp model; use this where the model is not the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from slmchat.engine.session import Session
from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamEnd, StreamItem, Usage
from slmchat.infra.config import Config, MemoryConfig, TierConfig
from slmchat.infra.store import Store

#: one scripted reply: the whole text (streamed in ``chunk``-character pieces), the pieces
#: themselves (the last may be an exception, raised after the others stream), or an exception
Reply = str | Sequence[str | BaseException] | BaseException


class ScriptedBackend(ChatBackend):
    """Answers call *n* with ``replies[n]`` (the last reply repeats), whatever it was asked.

    ``seen`` keeps each call's messages and ``params`` its sampling settings, so a test can
    check what the engine sent. ``delay_s`` waits before each piece (to test cancelling);
    ``closed`` counts ``aclose`` calls.
    """

    name = "scripted"

    def __init__(
        self, replies: Sequence[Reply], *, model: str = "script", chunk: int = 6, delay_s: float = 0.0
    ) -> None:
        super().__init__(model)
        if not replies:
            raise ValueError("a scripted backend needs at least one reply")
        self.replies = list(replies)
        self.chunk = chunk
        self.delay_s = delay_s
        self.seen: list[list[Message]] = []
        self.params: list[GenParams] = []
        self.closed = 0

    def _pieces(self, reply: Reply) -> tuple[list[str], BaseException | None]:
        if isinstance(reply, BaseException):
            return [], reply
        if isinstance(reply, str):
            return [reply[i : i + self.chunk] for i in range(0, len(reply), self.chunk)], None
        pieces = list(reply)
        if pieces and isinstance(pieces[-1], BaseException):
            return [str(p) for p in pieces[:-1]], pieces[-1]
        return [str(p) for p in pieces], None

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        call = len(self.seen)
        self.seen.append(list(messages))
        self.params.append(params)
        pieces, error = self._pieces(self.replies[min(call, len(self.replies) - 1)])
        prompt = sum(self.count_tokens(m.content)[0] for m in messages)
        sent = 0
        for piece in pieces[: params.max_tokens]:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if cancel.cancelled:
                yield StreamEnd(Usage(prompt, sent), "cancelled")
                return
            sent += 1
            yield piece
            await asyncio.sleep(0)
        if error is not None:
            raise error
        finish = "length" if len(pieces) > params.max_tokens else "stop"
        yield StreamEnd(Usage(prompt, sent), finish)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        self.closed += 1


def scripted_session(
    small: Sequence[Reply],
    large: Sequence[Reply] | None = None,
    *,
    config: Config | None = None,
    data_dir: Path | None = None,
    **session_options: Any,
) -> Session:
    """A ``Session`` whose tiers are scripted; memory off unless ``config`` turns it on.

    ``data_dir`` holds the history database (default: the configured data dir).
    """
    if config is None:
        config = Config(
            small=TierConfig(model="scripted:small", max_tokens=256),
            large=TierConfig(model="scripted:large", max_tokens=256) if large is not None else None,
            memory=MemoryConfig(enabled=False),
        )
    backends: dict[str, ChatBackend] = {"small": ScriptedBackend(small, model="small")}
    if large is not None:
        backends["large"] = ScriptedBackend(large, model="large")
    if data_dir is not None:
        session_options.setdefault("store", Store(data_dir / "history.db"))
    return Session(config, backends=backends, **session_options)  # type: ignore[arg-type]
