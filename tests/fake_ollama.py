"""A fake Ollama server for tests: real HTTP on 127.0.0.1, Ollama's wire format, scripted answers.

The responses follow Ollama's API documentation, docs/api.md of github.com/ollama/ollama:
"Generate a chat completion" (``POST /api/chat``: newline-delimited JSON objects with ``model``,
``created_at``, ``message: {role, content}``, ``done: false``, then a final object with ``done: true``,
``done_reason`` and the metrics ``total_duration``, ``load_duration``, ``prompt_eval_count``,
``prompt_eval_duration``, ``eval_count``, ``eval_duration`` in nanoseconds; an empty ``messages``
loads the model and answers ``done_reason: "load"``), "List Local Models" (``GET /api/tags``) and
"Show Model Information" (``POST /api/show``) and "Version" (``GET /api/version``).
Unknown models get HTTP 404 with ``{"error": ...}``.
Where the examples leave fields out, the server's types (api/types.go) decide: the final chat object
still carries ``message`` (with empty content), and zero metrics are omitted.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class ChatScript:
    """What the fake answers to ``POST /api/chat``."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    done_reason: str = "stop"
    #: ``None`` leaves the field out of the final object, as a server that did not count does
    prompt_eval_count: int | None = 26
    eval_count: int | None = 4
    #: seconds to wait before each chunk (slow mode, for cancellation tests)
    delay_s: float = 0.0
    #: when set, sent as an ``{"error": ...}`` line after the chunks instead of the final object
    error: str | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeOllama:
    """Serve a few model names; record every request; answer chats from ``script``."""

    def __init__(self, models: tuple[str, ...] = ("llama3.2:3b",), script: ChatScript | None = None) -> None:
        self.models = list(models)
        self.script = script or ChatScript()
        self.requests: list[RecordedRequest] = []
        #: set when a streaming client went away before the stream ended
        self.client_disconnected = threading.Event()
        #: set when a chat stream was sent to its end
        self.stream_completed = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )

    # lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``, the way OLLAMA_HOST is usually written."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # inspection --------------------------------------------------------------

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _known(self, name: str) -> str | None:
        """The stored name ``name`` refers to (a missing tag means ``latest``)."""
        full = name if ":" in name else f"{name}:latest"
        return full if full in self.models else None

    # HTTP --------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet: tests read the records instead
                pass

            def handle(self) -> None:
                with contextlib.suppress(ConnectionError):  # a client gone between requests (keep-alive)
                    super().handle()

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                fake._record(RecordedRequest(self.command, self.path, body, dict(self.headers.items())))
                return body

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._body()
                if self.path == "/api/tags":
                    self._json(200, {"models": [_tag(name) for name in fake.models]})
                elif self.path == "/api/version":  # api.md "Version"
                    self._json(200, {"version": "0.5.1"})
                elif self.path == "/":
                    data = b"Ollama is running"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(404, {"error": "404 page not found"})

            def do_POST(self) -> None:
                body = self._body()
                if not isinstance(body, dict):
                    self._json(400, {"error": "invalid request body"})
                    return
                name = str(body.get("model") or "")
                if self.path == "/api/show":
                    if fake._known(name) is None:
                        self._json(404, {"error": f"model '{name}' not found"})
                    else:
                        self._json(200, _show(name))
                elif self.path == "/api/chat":
                    if fake._known(name) is None:
                        self._json(404, {"error": f'model "{name}" not found, try pulling it first'})
                    elif not body.get("messages"):
                        self._json(200, _chat_part(name, "", done=True, done_reason="load"))
                    elif body.get("stream", True) is False:
                        self._chat_whole(name)
                    else:
                        self._chat_stream(name)
                else:
                    self._json(404, {"error": "404 page not found"})

            def _chat_whole(self, name: str) -> None:
                script = fake.script
                final = _chat_part(name, "".join(script.chunks), done=True, done_reason=script.done_reason)
                final.update(_metrics(script))
                self._json(200, final)

            def _chat_stream(self, name: str) -> None:
                script = fake.script
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = [_chat_part(name, text) for text in script.chunks]
                if script.error is not None:
                    lines.append({"error": script.error})
                else:
                    final = _chat_part(name, "", done=True, done_reason=script.done_reason)
                    final.update(_metrics(script))
                    lines.append(final)
                try:
                    for line in lines:
                        if script.delay_s:
                            time.sleep(script.delay_s)
                        data = json.dumps(line).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.client_disconnected.set()
                    self.close_connection = True
                    return
                fake.stream_completed.set()

        return Handler


@contextlib.contextmanager
def fake_ollama(models: tuple[str, ...] = ("llama3.2:3b",), script: ChatScript | None = None) -> Iterator[FakeOllama]:
    """A running ``FakeOllama``, stopped afterwards."""
    with FakeOllama(models, script) as server:
        yield server


def _chat_part(model: str, content: str, *, done: bool = False, done_reason: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {
        "model": model,
        "created_at": _now(),
        "message": {"role": "assistant", "content": content},
    }
    if done_reason is not None:
        part["done_reason"] = done_reason
    part["done"] = done
    return part


def _metrics(script: ChatScript) -> dict[str, int]:
    metrics = {
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": script.prompt_eval_count,
        "prompt_eval_duration": 342546000,
        "eval_count": script.eval_count,
        "eval_duration": 4535599000,
    }
    return {key: value for key, value in metrics.items() if value}


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2024-11-04T14:56:49.277302595-07:00",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": _details(),
    }


def _show(name: str) -> dict[str, Any]:
    return {
        "modelfile": f'# Modelfile generated by "ollama show"\nFROM {name}\n',
        "parameters": 'num_ctx                        4096\nstop                           "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": _details(),
        "model_info": {
            "general.architecture": "llama",
            "general.parameter_count": 3212749888,
            "llama.context_length": 131072,
        },
        "capabilities": ["completion", "tools"],
        "modified_at": "2024-11-04T14:56:49.277302595-07:00",
    }
