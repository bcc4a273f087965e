"""The OpenAI-compatible backend against a real llama.cpp server, and the errors servers send."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd
from slmchat.infra.backends.openai_compat import OpenAICompatBackend
from slmchat.infra.errors import BackendUnavailable, ModelNotFound, SlmchatError


def run(backend: OpenAICompatBackend, text: str, max_tokens: int = 16, cancel_after: int | None = None) -> list:
    token = CancelToken()

    async def go() -> list:
        items = []
        try:
            async for item in backend.stream([Message("user", text)], GenParams(max_tokens=max_tokens), token):
                items.append(item)
                if cancel_after is not None and len(items) == cancel_after:
                    token.cancel()
        finally:
            await backend.aclose()
        return items

    return asyncio.run(go())


def test_streams_from_a_real_llama_cpp_server(llama_server: str) -> None:
    items = run(OpenAICompatBackend("smollm2-server", {"base_url": llama_server}), "What is 2 + 2?")
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason in ("stop", "length")
    assert "".join(items[:-1]).strip()
    # llama.cpp's server does not report usage when streaming: counts are estimates and say so
    assert end.usage.estimated is True and end.usage.completion_tokens > 0


def test_length_and_cancel(llama_server: str) -> None:
    items = run(OpenAICompatBackend("m", {"base_url": llama_server}), "Write a long story.", max_tokens=8)
    assert items[-1].finish_reason == "length"
    items = run(OpenAICompatBackend("m", {"base_url": llama_server}), "Write a long story.", 200, cancel_after=2)
    assert items[-1].finish_reason == "cancelled" and len(items) == 3


class ErrorServer(ThreadingHTTPServer):
    """Answers every request with one status and an OpenAI-style error body."""

    def __init__(self, status: int, body: dict) -> None:
        self.status, self.body = status, body

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:
                payload = json.dumps(self.body).encode()
                handler.send_response(self.status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload)

            def log_message(handler, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (401, BackendUnavailable, "refused the API key"),
        (404, ModelNotFound, "has no model 'gpt-9'"),
        (500, BackendUnavailable, "answered 500"),
    ],
)
def test_server_errors_become_clear_messages(status: int, error: type, fragment: str) -> None:
    server = ErrorServer(status, {"error": {"message": "nope", "type": "invalid_request_error"}})
    try:
        with pytest.raises(error, match=fragment) as caught:
            run(OpenAICompatBackend("gpt-9", {"base_url": server.url, "api_key": "sk-test"}), "hi")
        assert caught.value.hint
        assert "sk-test" not in str(caught.value)  # keys never end up in messages
    finally:
        server.shutdown()


def test_the_hosted_default_needs_a_key() -> None:
    with pytest.raises(SlmchatError, match="no API key") as caught:
        run(OpenAICompatBackend("gpt-4o-mini", {"api_key_env": "MY_KEY"}), "hi")
    assert "MY_KEY" in (caught.value.hint or "")


def test_a_named_key_variable_must_be_set_even_for_a_custom_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SlmchatError, match="GROQ_API_KEY is not set"):
        run(OpenAICompatBackend("llama", {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GROQ_API_KEY"}), "hi")
