"""The Ollama backend: chat with a model served by a local or remote Ollama server.

Uses the official ``ollama`` client (``ollama.AsyncClient``) over Ollama's HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import ollama
import pydantic

from slmchat.infra.backends.base import (
    CancelToken,
    Capabilities,
    ChatBackend,
    FinishReason,
    GenParams,
    Message,
    ProgressFn,
    StreamEnd,
    StreamItem,
    Usage,
    estimate_tokens,
)
from slmchat.infra.backends.names import quoted, shorten
from slmchat.infra.errors import BackendTimeout, BackendUnavailable, ModelNotFound, SlmchatError

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
DEFAULT_TIMEOUT_S = 60.0
#: seconds `list_pulled` waits: listing models must not hang on a server that does not answer
LIST_TIMEOUT_S = 2.0
#: how often a stream waiting for the server looks at its cancel token, in seconds
CANCEL_POLL_S = 0.05

_DONE_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


def normalize_host(raw: str | None) -> str:
    """``scheme://host:port[/path]`` for an ``OLLAMA_HOST``-style address (``host``, ``host:port``, a URL).

    Follows Ollama's own reading: without a scheme it is http on port 11434; with one, the scheme's port.
    """
    raw = (raw or "").strip()
    if not raw:
        return DEFAULT_HOST
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest, default_port = "http", raw, DEFAULT_PORT
    else:
        default_port = 443 if scheme == "https" else 80
    try:
        split = urlsplit(f"{scheme}://{rest}")
        port = split.port or default_port
    except ValueError:  # a port that is not a number: let the client report it
        return raw
    host = split.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = split.path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


class OllamaBackend(ChatBackend):
    """A model served by Ollama, named as Ollama names it (``llama3.2:3b``).

    Options: ``base_url`` (else ``OLLAMA_HOST``, else http://127.0.0.1:11434) and ``timeout_s``
    (seconds to wait for the server to connect or send the next piece, default 60).
    """

    name = "ollama"
    capabilities = Capabilities(tool_calling=True, json_schema=True, exact_token_counts=True)

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self.host = normalize_host(self.options.get("base_url") or os.environ.get("OLLAMA_HOST"))
        self.timeout_s = float(self.options.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self._context_tokens: int | None = None

    @property
    def context_tokens(self) -> int | None:
        """The ``num_ctx`` the model is configured with, when ``load`` found one.

        Not the model's trained context length: Ollama cuts prompts at ``num_ctx``.
        """
        return self._context_tokens

    def _client(self) -> ollama.AsyncClient:
        # One client per call: an httpx client belongs to the event loop it first ran in.
        return ollama.AsyncClient(host=self.host, timeout=self.timeout_s)

    async def load(self, progress: ProgressFn | None = None) -> None:
        """Check that the server answers and has the model, then have it load the model into memory."""
        say = progress or (lambda _message: None)
        say(f"connecting to Ollama at {self.host}")
        try:
            async with self._client() as client:
                try:
                    info = await client.show(self.model)
                except pydantic.ValidationError:
                    info = None  # an older server's answer lacks fields the client wants: the model exists
                if info is not None:
                    self._context_tokens = _num_ctx(info.parameters)
                say(f"loading {self.model} into Ollama's memory")
                # An empty chat is Ollama's documented way to load a model without generating.
                await client.chat(self.model, messages=[], stream=False)
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        say(f"{self.model} is ready")

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        """Stream the answer: text deltas, then one ``StreamEnd`` with Ollama's token counts."""
        options: dict[str, Any] = {"num_predict": params.max_tokens, "temperature": params.temperature}
        if params.seed is not None:
            options["seed"] = params.seed
        payload = [m.as_dict() for m in messages]
        # One task owns the HTTP stream, so cancelling it closes the connection cleanly,
        # even while the server has not sent anything yet (a long prompt, a model loading).
        queue: asyncio.Queue[ollama.ChatResponse] = asyncio.Queue()
        pieces: list[str] = []

        def usage(prompt_count: int | None, completion_count: int | None) -> Usage:
            estimated = prompt_count is None or completion_count is None
            if prompt_count is None:
                prompt_count = sum(estimate_tokens(m.content) for m in messages)
            if completion_count is None:
                completion_count = estimate_tokens("".join(pieces))
            return Usage(prompt_count, completion_count, estimated=estimated)

        reader = asyncio.create_task(
            self._read_chat(payload, options, queue, params.json_schema), name="slmchat-ollama-chat"
        )
        getter: asyncio.Task[ollama.ChatResponse] | None = None
        try:
            while True:
                if cancel.cancelled:
                    yield StreamEnd(usage(None, None), "cancelled")
                    return
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, reader}, timeout=CANCEL_POLL_S, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    if reader.done() and queue.empty():  # the reader failed, or the stream ran out early
                        raise self._reader_error(reader)
                    continue
                part = getter.result()
                getter = None
                text = part.message.content if part.message is not None else None
                if text:
                    pieces.append(text)
                    yield text
                if part.done:
                    reason = _DONE_REASONS.get(part.done_reason or "stop", "stop")
                    yield StreamEnd(usage(part.prompt_eval_count, part.eval_count), reason)
                    return
        finally:
            if getter is not None:
                getter.cancel()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_chat(
        self,
        payload: list[dict[str, str]],
        options: dict[str, Any],
        queue: asyncio.Queue[ollama.ChatResponse],
        json_schema: dict[str, Any] | None = None,
    ) -> None:
        """Put the parts of Ollama's chat stream into ``queue`` as they arrive."""
        async with self._client() as client:
            parts = await client.chat(self.model, messages=payload, stream=True, options=options, format=json_schema)
            async for part in parts:
                await queue.put(part)

    def _reader_error(self, reader: asyncio.Task[None]) -> BaseException:
        """What to raise for a chat stream that stopped before its last part."""
        exc = reader.exception()
        if exc is None:
            return BackendUnavailable(
                f"Ollama at {self.host} ended the answer before it was done", "look at the Ollama server log"
            )
        mapped = self._map_error(exc)
        if mapped is None:
            return exc
        mapped.__cause__ = exc
        return mapped

    def _map_error(self, exc: BaseException) -> SlmchatError | None:
        """The user error for a failure of the client or the connection; ``None`` if it is not one."""
        if isinstance(exc, SlmchatError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404:
                return ModelNotFound(
                    f"Ollama at {self.host} has no model {quoted(self.model)}",
                    f"pull it with `ollama pull {shorten(self.model)}`, or see `ollama list` for the models it has",
                )
            status = f" (HTTP {exc.status_code})" if exc.status_code > 0 else ""
            return BackendUnavailable(
                f"Ollama at {self.host} failed{status}: {exc.error}", "look at the Ollama server log"
            )
        if isinstance(exc, ollama.RequestError):
            return ModelNotFound(f"cannot ask Ollama for model {quoted(self.model)}: {exc.error}")
        return _connection_error(exc, self.host, self.timeout_s)


def _num_ctx(parameters: str | None) -> int | None:
    """``num_ctx`` from the parameters text of ``/api/show`` (lines of ``name value``)."""
    for line in (parameters or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "num_ctx":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def _connection_error(exc: BaseException, host: str, timeout_s: float) -> SlmchatError | None:
    """The user error for a transport failure talking to Ollama at ``host``; ``None`` if it is not one."""
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(
            f"Ollama at {host} did not answer within {timeout_s:g} s",
            "check the server is not overloaded, or raise timeout_s",
        )
    if isinstance(exc, ConnectionError | httpx.ConnectError | httpx.UnsupportedProtocol):
        return BackendUnavailable(
            f"cannot reach Ollama at {host}",
            "start it with `ollama serve`, or set OLLAMA_HOST / base_url to where it runs",
        )
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailable(f"lost the connection to Ollama at {host}: {exc}", "look at the Ollama server log")
    if isinstance(exc, httpx.InvalidURL):
        return BackendUnavailable(
            f"invalid Ollama address {quoted(host)}: {exc}", "set OLLAMA_HOST / base_url to host:port"
        )
    if isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
        return BackendUnavailable(
            f"unexpected answer from {host}, which may not be Ollama: {exc}",
            "set OLLAMA_HOST / base_url to where Ollama runs",
        )
    return None


# -- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulledModel:
    """One model an Ollama server holds: an entry of ``GET /api/tags``, named as Ollama names it."""

    name: str
    size_bytes: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    family: str | None = None


def list_pulled(host: str | None = None, timeout_s: float = LIST_TIMEOUT_S) -> list[PulledModel]:
    """The models pulled on the Ollama server at ``host`` (``GET /api/tags``), by name.

    ``host`` is read as ``OLLAMA_HOST`` is (default: ``OLLAMA_HOST``, else 127.0.0.1:11434).
    Raises ``BackendUnavailable`` or ``BackendTimeout`` saying why the server could not be asked.
    Plain httpx rather than the client, whose typed answer drops entries that carry only ``name``.
    """
    host = normalize_host(host or os.environ.get("OLLAMA_HOST"))
    try:
        with httpx.Client(timeout=timeout_s) as client:
            response = client.get(host + "/api/tags")
        if response.status_code != 200:
            raise BackendUnavailable(
                f"Ollama at {host} answered HTTP {response.status_code} to /api/tags",
                "set OLLAMA_HOST / base_url to where Ollama runs, or look at the server log",
            )
        entries = response.json().get("models")
        if not isinstance(entries, list):
            raise ValueError("no list of models")
        models = [_pulled(entry) for entry in entries if isinstance(entry, dict)]
    except SlmchatError:
        raise
    except httpx.TimeoutException as exc:
        raise BackendTimeout(
            f"Ollama at {host} did not answer within {timeout_s:g} s", "check that the server is not overloaded"
        ) from exc
    except (ValueError, AttributeError) as exc:  # not JSON, or not the shape /api/tags has
        raise BackendUnavailable(
            f"unexpected answer from {host}, which may not be Ollama: {exc}",
            "set OLLAMA_HOST / base_url to where Ollama runs",
        ) from exc
    except Exception as exc:
        mapped = _connection_error(exc, host, timeout_s)
        if mapped is None:
            raise
        raise mapped from exc
    return sorted((m for m in models if m.name), key=lambda m: m.name)


def _pulled(entry: dict[str, Any]) -> PulledModel:
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    size = entry.get("size")
    return PulledModel(
        name=str(entry.get("model") or entry.get("name") or ""),
        size_bytes=size if isinstance(size, int) else None,
        parameter_size=details.get("parameter_size") or None,
        quantization=details.get("quantization_level") or None,
        family=details.get("family") or None,
    )
