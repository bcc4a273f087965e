"""Model backends and ``backend:model`` names.

Backends are imported lazily: a machine without MLX or Ollama's client can still run the rest.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

from slmchat.infra.backends.base import (
    CancelToken,
    Capabilities,
    ChatBackend,
    GenParams,
    Message,
    StreamEnd,
    Usage,
)
from slmchat.infra.backends.names import MAX_MODEL_NAME, quoted
from slmchat.infra.errors import BackendUnavailable, ModelNotFound

__all__ = [
    "BACKENDS",
    "CancelToken",
    "Capabilities",
    "ChatBackend",
    "GenParams",
    "Message",
    "ModelRef",
    "StreamEnd",
    "Usage",
    "create_backend",
    "parse_model_name",
]

#: backend prefix -> (module, class, pip extra that installs its library)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "llamacpp": ("slmchat.infra.backends.llamacpp", "LlamaCppBackend", "slmchat"),
    "ollama": ("slmchat.infra.backends.ollama", "OllamaBackend", "slmchat"),
    "mlx": (
        "slmchat.infra.backends.mlx",
        "MlxBackend",
        "slmchat[mlx]" if sys.platform == "darwin" else "slmchat[mlx-cpu]",
    ),
    "openai": ("slmchat.infra.backends.openai_compat", "OpenAICompatBackend", "slmchat"),
}


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name: which backend, and the backend's own model name."""

    backend: str
    model: str

    def __str__(self) -> str:
        return f"{self.backend}:{self.model}"


def parse_model_name(name: str, aliases: dict[str, str] | None = None) -> ModelRef:
    """Read ``backend:model`` (``ollama:llama3.2:3b``, ``llamacpp:/m/x.gguf``) or an alias.

    Only the first colon separates the backend, so Ollama tags keep theirs. Every way of naming
    a model (``-m``, ``/model``, the config, an alias) comes through here, so an empty or absurdly
    long name is refused here, before a backend or the filesystem sees it.
    """
    aliases = aliases or {}
    seen: set[str] = set()
    _check_name(name)
    while name in aliases:
        if name in seen:
            raise ModelNotFound(f"model alias {quoted(name)} refers to itself", "fix [aliases] in the config")
        seen.add(name)
        name = aliases[name]
        _check_name(name)
    backend, sep, model = name.partition(":")
    if not sep or not model:
        raise ModelNotFound(
            f"model name {quoted(name)} has no backend",
            f"write it as backend:model, e.g. llamacpp:smollm2, ollama:llama3.2:3b or openai:gpt-4o-mini "
            f"(backends: {', '.join(BACKENDS)})",
        )
    if backend not in BACKENDS:
        raise ModelNotFound(
            f"unknown backend {quoted(backend)} in model name {quoted(name)}",
            f"use one of: {', '.join(BACKENDS)}",
        )
    return ModelRef(backend, model)


def _check_name(name: str) -> None:
    """Refuse an empty name (``-m ""``, ``/model ""``, ``model = ""``) and one too long to be a name."""
    if not name.strip().strip("\"'"):
        raise ModelNotFound("the model name is empty", "give backend:model, e.g. llamacpp:smollm2, or leave out -m")
    if len(name) > MAX_MODEL_NAME:
        raise ModelNotFound(
            f"the model name is too long: {len(name)} characters (at most {MAX_MODEL_NAME})",
            "give backend:model, e.g. llamacpp:smollm2; a local file by its path",
        )


def create_backend(ref: ModelRef, options: dict[str, Any] | None = None) -> ChatBackend:
    """Build (not load) the backend object for ``ref``."""
    module_name, class_name, extra = BACKENDS[ref.backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {ref.backend} backend cannot be used: {exc}",
            f"install it with: pip install '{extra}'",
        ) from exc
    cls: type[ChatBackend] = getattr(module, class_name)
    return cls(ref.model, options)
