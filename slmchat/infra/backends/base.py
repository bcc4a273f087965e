"""What every model backend provides: one streaming chat call that ends with usage.

A backend yields text deltas (``str``) and finishes with exactly one ``StreamEnd``.
Timing is measured by the engine, the same way for every backend, so figures compare.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled", "loop", "error"]


@dataclass(frozen=True)
class Message:
    """One chat message as sent to a model."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Usage:
    """Token counts of one model call; ``estimated`` when the backend did not report them."""

    prompt_tokens: int | None
    completion_tokens: int | None
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class StreamEnd:
    """The last item of every stream."""

    usage: Usage
    finish_reason: FinishReason = "stop"


@dataclass(frozen=True)
class GenParams:
    """Sampling settings for one call."""

    max_tokens: int = 512
    temperature: float = 0.7
    seed: int | None = None
    #: constrain the reply to this JSON schema (backends that declare ``json_schema``)
    json_schema: dict[str, Any] | None = None
    #: the same choices as OpenAI ``tools``, for backends that call tools natively
    tools: list[dict[str, Any]] | None = None
    #: a call aside from the conversation (background memory work): a backend with a prompt cache keeps the
    #: conversation's cache as it was, and a cancel stops the call even in the middle of the prompt
    aside: bool = False


@dataclass(frozen=True)
class Capabilities:
    """Declared, not guessed: what a backend can do beyond plain chat."""

    tool_calling: bool = False
    json_schema: bool = False
    embeddings: bool = False
    exact_token_counts: bool = False


class CancelToken:
    """Set by the engine to stop a stream; backends check it between tokens.

    A token made with a ``parent`` is cancelled when the parent is: the engine stops one model
    call (an escalation) with its own token, and the whole turn with the parent.
    """

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)


StreamItem = str | StreamEnd
ProgressFn = Callable[[str], None]


def estimate_tokens(text: str) -> int:
    """A character-based estimate (4 characters a token), used only where no tokenizer is at hand."""
    return max(1, (len(text) + 3) // 4) if text else 0


class ChatBackend(ABC):
    """Base class of the model backends. ``model`` is the backend-specific model name."""

    #: the prefix used in ``backend:model`` names
    name: ClassVar[str] = "base"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        self.model = model
        self.options: dict[str, Any] = dict(options or {})

    async def load(self, progress: ProgressFn | None = None) -> None:
        """Make the model ready (load weights, check the server). Default: nothing to do."""

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens, when known."""
        return None

    def count_tokens(self, text: str) -> tuple[int, bool]:
        """Token count of ``text`` and whether it is an estimate."""
        return estimate_tokens(text), True

    @abstractmethod
    def stream(self, messages: list[Message], params: GenParams, cancel: CancelToken) -> AsyncIterator[StreamItem]:
        """Stream the answer to ``messages``: text deltas, then one ``StreamEnd``."""

    async def aclose(self) -> None:
        """Release clients and memory."""


async def iterate_in_thread(produce: Callable[[], Iterator[StreamItem]]) -> AsyncIterator[StreamItem]:
    """Run a blocking stream in a worker thread and hand its items to the event loop.

    Used by the in-process backends (llama.cpp, MLX), whose generation blocks. The worker
    wakes the loop only when it has nothing pending, and the loop takes everything waiting at
    once, so a busy loop costs one wake-up per batch rather than one per token.
    The producer must watch its own ``CancelToken``; this only moves items across.
    """
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    lock = threading.Lock()
    pending: deque[tuple[str, Any]] = deque()
    awake = False  # a wake-up is scheduled and not yet taken

    def post(tag: str, value: Any) -> None:
        nonlocal awake
        with lock:
            pending.append((tag, value))
            if awake:
                return
            awake = True
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the loop closed under us (process exiting): nobody listens
            pass

    def work() -> None:
        try:
            for item in produce():
                post("item", item)
        except BaseException as exc:
            post("error", exc)
        else:
            post("done", None)

    thread = threading.Thread(target=work, name="slmchat-generate", daemon=True)
    thread.start()
    while True:
        await ready.wait()
        ready.clear()
        with lock:
            batch = list(pending)
            pending.clear()
            awake = False
        for tag, value in batch:
            if tag == "item":
                yield value
            elif tag == "error":
                raise value
            else:
                return
