"""OpenAI native tool calls: the request carries ``tools``, streamed ``tool_calls`` come back as one call.

The server here is a stand-in that speaks OpenAI's documented streaming format: chunks of
``chat.completion.chunk`` over SSE, a tool call's id and name in its first frame and its
arguments in later fragments by ``index``, ``finish_reason: "tool_calls"``, then a usage
chunk with no choices and ``data: [DONE]``. No real OpenAI endpoint is reachable here.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slmchat.infra.backends.base import CancelToken, GenParams, Message, StreamEnd
from slmchat.infra.backends.openai_compat import OpenAICompatBackend
from slmchat.tools import ToolSpec
from slmchat.tools.calls import Call, parse_reply, reply_schema
from slmchat.tools.prompt import openai_tools


def _chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


FRAMES = [
    _chunk({"role": "assistant", "content": None}),
    _chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris", "days": 2}'}}]}),
    _chunk({}, finish="tool_calls"),
    _chunk(None, usage={"prompt_tokens": 61, "completion_tokens": 17, "total_tokens": 78}),
    b"data: [DONE]\n\n",
]


@pytest.fixture
def openai_stand_in() -> Iterator[tuple[str, list[dict]]]:
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for frame in FRAMES:
                self.wfile.write(frame)
                self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()


def test_native_tool_calls_become_the_same_call_as_every_backend_reports(openai_stand_in) -> None:  # type: ignore[no-untyped-def]
    url, requests = openai_stand_in
    spec = ToolSpec("get_weather", "Weather for a city.", {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"],
    })  # fmt: skip
    backend = OpenAICompatBackend("gpt-test", {"base_url": url, "api_key": "sk-test", "timeout_s": 10})
    params = GenParams(
        max_tokens=64, temperature=0, json_schema=reply_schema([spec]).schema, tools=openai_tools([spec])
    )

    async def run() -> list:
        items = [item async for item in backend.stream([Message("user", "Weather in Paris?")], params, CancelToken())]
        await backend.aclose()
        return items

    items = asyncio.run(run())
    text = "".join(item for item in items if isinstance(item, str))
    assert parse_reply(text) == Call("get_weather", {"city": "Paris", "days": 2})
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.usage.prompt_tokens == 61 and not end.usage.estimated
    sent = requests[0]
    assert sent["tools"][0]["function"]["name"] == "get_weather" and "response_format" not in sent


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("json_schema", "json_schema"), ("llama.cpp", "json_object"), ("prompt", None)],
)
def test_the_other_tool_modes_send_the_schema_their_way(openai_stand_in, mode: str, expected: str | None) -> None:  # type: ignore[no-untyped-def]
    url, requests = openai_stand_in
    spec = ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})
    options = {"base_url": url, "api_key": "sk-test", "tool_mode": mode}
    backend = OpenAICompatBackend("gpt-test", options)
    params = GenParams(json_schema=reply_schema([spec]).schema, tools=openai_tools([spec]))

    async def run() -> None:
        async for _item in backend.stream([Message("user", "x")], params, CancelToken()):
            pass
        await backend.aclose()

    asyncio.run(run())
    sent = requests[0]
    assert "tools" not in sent
    assert (sent.get("response_format") or {}).get("type") == expected
