"""llama.cpp in-process on the real SmolLM2-135M: streaming, exact counts, cancel, bad files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd
from slmchat.infra.backends.llamacpp import LlamaCppBackend
from slmchat.infra.errors import ModelNotFound
from tests.helpers import cold

QUESTION = [Message("system", "You are a helpful assistant."), Message("user", "What is the capital of France?")]


def stream(backend: LlamaCppBackend, messages: list[Message], params: GenParams, cancel_after: int | None = None):  # type: ignore[no-untyped-def]
    token = CancelToken()

    async def run() -> list:
        items = []
        async for item in backend.stream(messages, params, token):
            items.append(item)
            if cancel_after is not None and len(items) == cancel_after:
                token.cancel()
        return items

    return asyncio.run(run())


@pytest.mark.parametrize("max_tokens", [5, 60])
def test_counts_match_llama_cpps_own_usage(small_backend: LlamaCppBackend, max_tokens: int) -> None:
    """Our stream and llama-cpp-python's own completion, each from an empty KV cache.

    Both must start alike: the second of two calls on one context finds the prompt cached and
    replays only its last token, and llama.cpp's logits from that one-token batch differ in the
    last digits from a whole-prompt batch, enough to turn "The capital of France is" (warm)
    into "La femme de France" (cold) at temperature 0. Same prompt, same sampling, another start.
    """
    params = GenParams(max_tokens=max_tokens, temperature=0.0, seed=7)
    items = stream(cold(small_backend), QUESTION, params)
    end = items[-1]
    assert isinstance(end, StreamEnd) and len(items) > 1 and all(isinstance(i, str) for i in items[:-1])
    reference = cold(small_backend).llama.create_chat_completion(
        messages=[m.as_dict() for m in QUESTION], max_tokens=max_tokens, temperature=0.0, seed=7
    )
    assert "".join(items[:-1]) == reference["choices"][0]["message"]["content"]
    assert end.usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert end.usage.completion_tokens == reference["usage"]["completion_tokens"]
    assert end.finish_reason == reference["choices"][0]["finish_reason"]
    assert end.usage.estimated is False


def test_cancel_stops_within_a_token(small_backend: LlamaCppBackend) -> None:
    items = stream(
        small_backend, [Message("user", "Write a long poem about rivers.")], GenParams(max_tokens=300), cancel_after=3
    )
    end = items[-1]
    assert end.finish_reason == "cancelled"
    assert len(items) - 1 <= 4 and end.usage.completion_tokens <= 5


def test_exact_token_counting_after_load(small_backend: LlamaCppBackend) -> None:
    assert small_backend.count_tokens("Hello world") == (2, False)
    assert small_backend.context_tokens == 2048


def test_load_reports_progress_and_is_done_once(smollm2_path: Path) -> None:
    backend = LlamaCppBackend(str(smollm2_path), {"n_ctx": 256})
    assert backend.count_tokens("Hello world")[1] is True  # an estimate before loading
    messages: list[str] = []
    asyncio.run(backend.load(messages.append))
    llama = backend.llama
    asyncio.run(backend.load(messages.append))
    assert backend.llama is llama and len(messages) == 2
    assert "loading SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)" == messages[0] and "context 256" in messages[1]


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelNotFound) as caught:
        asyncio.run(LlamaCppBackend(str(bad)).load())
    assert "could not load" in caught.value.message and "complete GGUF" in (caught.value.hint or "")


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="model file not found"):
        asyncio.run(LlamaCppBackend(str(tmp_path / "nope.gguf")).load())
