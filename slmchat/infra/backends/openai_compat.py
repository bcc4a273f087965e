"""Any OpenAI-compatible chat endpoint through the official ``openai`` client.

OpenAI, Groq, Together, OpenRouter, vLLM, LM Studio, llama.cpp's server, Ollama's /v1.
``base_url`` defaults to the client's own default (OpenAI, or ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from slmchat.infra.backends.base import (
    CancelToken,
    Capabilities,
    ChatBackend,
    GenParams,
    Message,
    ProgressFn,
    StreamEnd,
    StreamItem,
    Usage,
    estimate_tokens,
)
from slmchat.infra.backends.names import quoted
from slmchat.infra.backends.options import TOOL_MODES
from slmchat.infra.errors import BackendTimeout, BackendUnavailable, ModelNotFound, SlmchatError

#: servers such as llama.cpp's accept any key; the client insists on having one
PLACEHOLDER_KEY = "no-key-needed"


class OpenAICompatBackend(ChatBackend):
    """Streams chat completions; usage comes from the server when it reports it."""

    name = "openai"
    capabilities = Capabilities(tool_calling=True, json_schema=True, embeddings=True, exact_token_counts=True)

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self._client: Any = None

    @property
    def where(self) -> str:
        return str(self.client.base_url).rstrip("/")

    @property
    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            from slmchat.infra import keys

            env = self.options.get("api_key_env")
            base_url = self.options.get("base_url")
            provider = self.options.get("key_provider") or keys.provider_for(base_url)
            found = keys.resolve_for_server(
                base_url, explicit=self.options.get("api_key"), env_var=env, provider=provider
            )
            if found is None and (env or not base_url):  # a named key must exist; the hosted default needs one
                raise keys.missing_key_error(self.model, provider, env)
            key = found.value if found else None
            self._client = AsyncOpenAI(
                base_url=self.options.get("base_url"),
                api_key=key or PLACEHOLDER_KEY,
                timeout=float(self.options.get("timeout_s") or 60.0),
                max_retries=int(self.options.get("max_retries", 0)),
            )
        return self._client

    @property
    def tool_mode(self) -> str:
        """How tool replies are constrained: ``native`` tools (the default), ``json_schema``
        response format (OpenAI structured outputs, vLLM), ``llama.cpp`` (its server's
        ``json_object`` + ``schema``), or ``prompt`` (no constraint)."""
        mode = str(self.options.get("tool_mode", "native"))
        if mode not in TOOL_MODES:
            raise SlmchatError(f"unknown tool_mode {quoted(mode)}", f"use one of: {', '.join(TOOL_MODES)}")
        return mode

    async def load(self, progress: ProgressFn | None = None) -> None:
        # Nothing to load; the first request tells whether the server answers. Building the
        # client here surfaces a missing key before the turn starts.
        if progress:
            progress(f"using {self.model} at {self.where}")

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        import openai

        request: dict[str, Any] = {
            "model": self.model,
            "messages": [m.as_dict() for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            request["seed"] = params.seed
        mode = self.tool_mode if (params.json_schema or params.tools) else "prompt"
        if mode == "native" and params.tools:
            request["tools"] = params.tools
        elif mode == "json_schema" and params.json_schema:
            request["response_format"] = {
                "type": "json_schema", "json_schema": {"name": "reply", "schema": params.json_schema},
            }  # fmt: skip
        elif mode == "llama.cpp" and params.json_schema:
            request["response_format"] = {"type": "json_object", "schema": params.json_schema}
        calls: dict[int, dict[str, str]] = {}  # native tool calls arrive in pieces, by index
        usage: Usage | None = None
        finish = "stop"
        parts: list[str] = []
        try:
            stream = await self.client.chat.completions.create(**request)
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, estimated=False)
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            parts.append(choice.delta.content)
                            yield choice.delta.content
                        for piece in (choice.delta.tool_calls or []) if choice.delta else []:
                            call = calls.setdefault(piece.index, {"name": "", "arguments": ""})
                            if piece.function is not None:
                                call["name"] += piece.function.name or ""
                                call["arguments"] += piece.function.arguments or ""
                        if choice.finish_reason:
                            finish = "length" if choice.finish_reason == "length" else "stop"
                    if cancel.cancelled:
                        finish = "cancelled"
                        break
            finally:
                await stream.close()
        except openai.APITimeoutError as exc:
            raise BackendTimeout(
                f"{self.where} did not answer within {self.options.get('timeout_s') or 60:g} s",
                "raise timeout_s for this tier, or check the server",
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(
                f"cannot reach {self.where}", "check base_url and that the server is running"
            ) from exc
        except openai.AuthenticationError as exc:
            raise BackendUnavailable(
                f"{self.where} refused the API key",
                f"set a valid key in {self.options.get('api_key_env') or 'OPENAI_API_KEY'} or with `slmchat keys set`",
            ) from exc
        except openai.NotFoundError as exc:
            raise ModelNotFound(
                f"{self.where} has no model {quoted(self.model)}", "check the model name for this server"
            ) from exc
        except openai.APIStatusError as exc:
            raise BackendUnavailable(
                f"{self.where} answered {exc.status_code}: {_short(exc)}", "check the request, the key and the server"
            ) from exc
        if calls:  # a native tool call, written the way every backend reports one
            first = calls[min(calls)]
            text = json.dumps({"tool": first["name"], "arguments": "__ARGS__"}).replace(
                '"__ARGS__"', first["arguments"] or "{}"
            )
            parts.append(text)
            yield text
        if usage is None:  # the server did not honour include_usage
            prompt = sum(estimate_tokens(m.content) for m in messages)
            usage = Usage(prompt, estimate_tokens("".join(parts)), estimated=True)
        yield StreamEnd(usage, finish)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
