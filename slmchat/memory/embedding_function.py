"""slmchat's offline MiniLM embedder as a Chroma embedding function, registered by name.

Chroma persists an embedding function in a collection's configuration as its ``name()`` and
``get_config()``; whoever opens the collection later rebuilds it with ``build_from_config`` from the
classes registered with ``register_embedding_function``. Importing this module registers
``SlmchatMiniLM`` as ``slmchat-minilm-int8``, so a reopened database (another process, plain
``chromadb``) embeds query texts the same way without being handed the function.

Chroma rebuilds the function each time it reads a collection's configuration, so instances share
one ``MiniLMEmbedder`` per ``max_tokens`` in the process (the router's ``default_embedder()`` when
the length matches): the ONNX model is loaded once.
"""

from __future__ import annotations

import threading
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from slmchat.infra.embedding import DIMENSIONS, MAX_POSITIONS, MODEL_ID, MiniLMEmbedder, default_embedder

NAME = "slmchat-minilm-int8"
#: memory texts (facts, question and answer) are longer than routing prompts; the router uses 64
DEFAULT_MAX_TOKENS = 128
#: texts per ONNX run for memory's own embedder. onnxruntime keeps the memory of its largest run: 32 texts of
#: 128 tokens took the process from 270 MB to 603 MB, 8 texts to 303 MB, at the same speed (300 texts, 28 s
#: and 30 s on 2 busy cores). A turn embeds one text; an import embeds thousands.
EMBED_BATCH = 8

_shared: dict[int, MiniLMEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(max_tokens: int = DEFAULT_MAX_TOKENS) -> MiniLMEmbedder:
    """The process's embedder for ``max_tokens``: ``default_embedder()`` if its length matches."""
    default = default_embedder()
    if max_tokens == default.max_tokens:
        return default
    with _shared_lock:
        embedder = _shared.get(max_tokens)
        if embedder is None:
            embedder = _shared[max_tokens] = MiniLMEmbedder(max_tokens=max_tokens, batch_size=EMBED_BATCH)
        return embedder


@register_embedding_function
class SlmchatMiniLM(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 (int8 ONNX, offline): L2-normalised 384-dim float32 vectors, cosine space."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS, *, embedder: MiniLMEmbedder | None = None) -> None:
        if embedder is not None:
            self.embedder = embedder
        else:
            self.embedder = shared_embedder(max_tokens)  # a bad length raises SlmchatError
        self.max_tokens = self.embedder.max_tokens

    def __call__(self, input: Documents) -> Embeddings:
        texts = [input] if isinstance(input, str) else list(input)
        return list(self.embedder.embed(texts))

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        # vectors are unit length, so inner product ranks as cosine does
        return ["cosine", "ip"]

    def is_legacy(self) -> bool:
        return False

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_ID, "dimensions": DIMENSIONS, "max_tokens": self.max_tokens}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SlmchatMiniLM:
        SlmchatMiniLM.validate_config(config)
        return SlmchatMiniLM(max_tokens=int(config.get("max_tokens", DEFAULT_MAX_TOKENS)))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        model = config.get("model", MODEL_ID)
        if model != MODEL_ID:
            raise ValueError(f"{NAME} embeds with {MODEL_ID}, not {model!r}")
        dimensions = config.get("dimensions", DIMENSIONS)
        if dimensions != DIMENSIONS:
            raise ValueError(f"{NAME} gives {DIMENSIONS} dimensions, not {dimensions!r}")
        max_tokens = config.get("max_tokens", DEFAULT_MAX_TOKENS)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 3 <= max_tokens <= MAX_POSITIONS:
            raise ValueError(f"{NAME} max_tokens must be an integer from 3 to {MAX_POSITIONS}, not {max_tokens!r}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        self.validate_config({**old_config, **new_config})

    def __repr__(self) -> str:
        return f"SlmchatMiniLM(max_tokens={self.max_tokens})"
