"""The Ollama backend against a fake Ollama server (tests/fake_ollama.py), and once against a real one."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from fake_ollama import ChatScript, FakeOllama

from slmchat.infra.backends import create_backend, parse_model_name
from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd, StreamItem, Usage
from slmchat.infra.backends.ollama import OllamaBackend, normalize_host
from slmchat.infra.errors import BackendTimeout, BackendUnavailable, ModelNotFound

#: read before conftest's autouse fixture clears it, for the live test
_LIVE_OLLAMA_HOST = os.environ.get("OLLAMA_HOST")

MESSAGES = [Message("system", "Be brief."), Message("user", "Say hello.")]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def collect(
    backend: OllamaBackend, params: GenParams | None = None, cancel: CancelToken | None = None
) -> tuple[list[str], StreamEnd]:
    deltas: list[str] = []
    ends: list[StreamEnd] = []
    async for item in backend.stream(MESSAGES, params or GenParams(), cancel or CancelToken()):
        if isinstance(item, StreamEnd):
            ends.append(item)
        else:
            assert not ends, "text after the StreamEnd"
            deltas.append(item)
    assert len(ends) == 1
    return deltas, ends[0]


def test_streams_deltas_and_exact_usage(fake: FakeOllama) -> None:
    backend = OllamaBackend("llama3.2:3b", {"base_url": fake.url})
    deltas, end = asyncio.run(collect(backend))
    assert deltas == ["Hello", ",", " world", "!"]
    assert end == StreamEnd(Usage(26, 4, estimated=False), "stop")
    assert fake.stream_completed.wait(5)  # the server thread marks it after its last write: a race, so wait


def test_request_body_follows_the_api(fake: FakeOllama) -> None:
    backend = OllamaBackend("llama3.2:3b", {"base_url": fake.url})
    asyncio.run(collect(backend, GenParams(max_tokens=77, temperature=0.2, seed=7)))
    (request,) = fake.requests_to("/api/chat")
    assert request.method == "POST"
    body = request.body
    assert body["model"] == "llama3.2:3b"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]
    assert body["stream"] is True
    assert body["options"] == {"num_predict": 77, "temperature": 0.2, "seed": 7}


def test_seed_left_out_when_unset(fake: FakeOllama) -> None:
    backend = OllamaBackend("llama3.2:3b", {"base_url": fake.url})
    asyncio.run(collect(backend, GenParams(max_tokens=5)))
    (request,) = fake.requests_to("/api/chat")
    assert "seed" not in request.body["options"]
    assert request.body["options"]["num_predict"] == 5


def test_done_reason_length_is_mapped() -> None:
    with FakeOllama(script=ChatScript(chunks=["a", "b"], done_reason="length", eval_count=2)) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url})
        deltas, end = asyncio.run(collect(backend))
    assert deltas == ["a", "b"]
    assert end.finish_reason == "length"
    assert end.usage == Usage(26, 2, estimated=False)


def test_missing_counts_are_estimated() -> None:
    script = ChatScript(chunks=["12345678"], prompt_eval_count=None, eval_count=None)
    with FakeOllama(script=script) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url})
        _, end = asyncio.run(collect(backend))
    assert end.usage.estimated is True
    assert end.usage.completion_tokens == 2  # 8 characters
    assert end.usage.prompt_tokens == 3 + 3  # "Be brief." and "Say hello.", 4 characters a token
    assert end.finish_reason == "stop"


def test_ollama_host_environment_variable_is_honoured(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake.host_port)
    backend = OllamaBackend("llama3.2:3b", {})
    assert backend.host == fake.url
    asyncio.run(backend.load())
    deltas, _ = asyncio.run(collect(backend))
    assert "".join(deltas) == "Hello, world!"
    assert [r.path for r in fake.requests] == ["/api/show", "/api/chat", "/api/chat"]


def test_base_url_wins_over_ollama_host(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    backend = OllamaBackend("llama3.2:3b", {"base_url": fake.url})
    deltas, _ = asyncio.run(collect(backend))
    assert deltas


def test_default_host() -> None:
    assert OllamaBackend("llama3.2:3b").host == "http://127.0.0.1:11434"
    assert normalize_host("example.com") == "http://example.com:11434"
    assert normalize_host(":5000") == "http://127.0.0.1:5000"
    assert normalize_host("https://ollama.example.com/base/") == "https://ollama.example.com:443/base"


def test_load_reports_progress_and_loads_the_model(fake: FakeOllama) -> None:
    messages: list[str] = []
    backend = OllamaBackend("llama3.2:3b", {"base_url": fake.url})
    asyncio.run(backend.load(messages.append))
    assert messages
    assert all(isinstance(m, str) and m for m in messages)
    show, load = fake.requests
    assert (show.path, show.body["model"]) == ("/api/show", "llama3.2:3b")
    assert (load.path, load.body["messages"]) == ("/api/chat", [])
    assert backend.context_tokens == 4096


def test_unreachable_host_is_backend_unavailable() -> None:
    port = free_port()
    backend = OllamaBackend("llama3.2:3b", {"base_url": f"127.0.0.1:{port}", "timeout_s": 2})
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(backend.load())
    assert f"127.0.0.1:{port}" in info.value.message
    assert "ollama serve" in (info.value.hint or "")
    with pytest.raises(BackendUnavailable) as info:
        asyncio.run(collect(backend))
    assert f"127.0.0.1:{port}" in info.value.message
    assert "ollama serve" in (info.value.hint or "")


def test_unknown_model_is_model_not_found(fake: FakeOllama) -> None:
    backend = OllamaBackend("nosuch:1b", {"base_url": fake.url})
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(backend.load())
    assert "nosuch:1b" in str(info.value)
    assert "ollama pull nosuch:1b" in (info.value.hint or "")
    with pytest.raises(ModelNotFound) as info:
        asyncio.run(collect(backend))
    assert "ollama pull" in (info.value.hint or "")


def test_error_line_mid_stream_is_a_user_error() -> None:
    with FakeOllama(script=ChatScript(chunks=["a"], error="out of memory")) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url})
        with pytest.raises(BackendUnavailable, match="out of memory"):
            asyncio.run(collect(backend))


def test_slow_server_is_backend_timeout() -> None:
    with FakeOllama(script=ChatScript(delay_s=1.0)) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url, "timeout_s": 0.2})
        with pytest.raises(BackendTimeout):
            asyncio.run(collect(backend))


def test_cancel_stops_promptly() -> None:
    script = ChatScript(chunks=[f"t{i} " for i in range(50)], delay_s=0.1)
    with FakeOllama(script=script) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url})
        cancel = CancelToken()

        async def run() -> tuple[list[StreamItem], float]:
            items: list[StreamItem] = []
            cancelled_at = 0.0
            async for item in backend.stream(MESSAGES, GenParams(), cancel):
                items.append(item)
                if len(items) == 2:
                    cancel.cancel()
                    cancelled_at = time.monotonic()
            return items, time.monotonic() - cancelled_at

        items, after_cancel = asyncio.run(run())
        assert after_cancel < 0.3
        assert items[:2] == ["t0 ", "t1 "]
        end = items[-1]
        assert isinstance(end, StreamEnd)
        assert end.finish_reason == "cancelled"
        assert end.usage.estimated is True
        assert len(items) <= 4  # at most a delta already under way, then the end
        # the connection was closed: the server's next write fails
        assert server.client_disconnected.wait(2.0)
        assert not server.stream_completed.is_set()


def test_cancel_while_waiting_for_the_first_token() -> None:
    with FakeOllama(script=ChatScript(delay_s=2.0)) as server:
        backend = OllamaBackend("llama3.2:3b", {"base_url": server.url})
        cancel = CancelToken()

        async def run() -> list[StreamItem]:
            asyncio.get_running_loop().call_later(0.2, cancel.cancel)
            return [item async for item in backend.stream(MESSAGES, GenParams(), cancel)]

        started = time.monotonic()
        items = asyncio.run(run())
        assert time.monotonic() - started < 1.0
        assert len(items) == 1
        assert isinstance(items[0], StreamEnd)
        assert items[0].finish_reason == "cancelled"


def test_created_through_the_registry(fake: FakeOllama) -> None:
    backend = create_backend(parse_model_name("ollama:llama3.2:3b"), {"base_url": fake.url})
    assert isinstance(backend, OllamaBackend)
    assert backend.model == "llama3.2:3b"
    assert backend.name == "ollama"
    assert backend.capabilities.exact_token_counts
    assert backend.capabilities.tool_calling
    assert backend.capabilities.json_schema


# live ------------------------------------------------------------------------


def _live_model(host: str) -> tuple[str | None, str]:
    """The smallest chat model a real Ollama at ``host`` has, or None and why not."""
    try:
        answer = httpx.get(f"{host}/api/tags", timeout=2.0)
        answer.raise_for_status()
        models = answer.json().get("models") or []
    except RuntimeError as exc:  # conftest's network guard: only loopback is allowed
        return None, f"Ollama at {host} is not on loopback: {exc}"
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"no Ollama server answers at {host} ({type(exc).__name__})"
    chat_models = [m for m in models if "embed" not in str(m.get("name", "")).lower()]
    if not chat_models:
        return None, f"the Ollama server at {host} has no chat model (ollama pull one)"
    smallest = min(chat_models, key=lambda m: m.get("size") or 0)
    return str(smallest.get("model") or smallest["name"]), ""


def test_live_ollama_streams_a_real_answer() -> None:
    host = normalize_host(_LIVE_OLLAMA_HOST)
    model, why_not = _live_model(host)
    if model is None:
        pytest.skip(why_not)
    backend = OllamaBackend(model, {"base_url": host, "timeout_s": 120})

    async def run() -> tuple[list[str], StreamEnd]:
        await backend.load()
        deltas: list[str] = []
        async for item in backend.stream(
            [Message("user", "Reply with the single word: hello")],
            GenParams(max_tokens=16, temperature=0.0, seed=1),
            CancelToken(),
        ):
            if isinstance(item, StreamEnd):
                return deltas, item
            deltas.append(item)
        raise AssertionError("the stream ended without a StreamEnd")

    deltas, end = asyncio.run(run())
    assert "".join(deltas).strip()
    assert end.finish_reason in ("stop", "length")
    assert end.usage.completion_tokens
    assert end.usage.completion_tokens <= 16 + 1
    assert end.usage.prompt_tokens
