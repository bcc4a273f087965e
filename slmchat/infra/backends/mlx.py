"""The MLX backend: runs an MLX-format model in process with ``mlx-lm``.

``model`` is a local model folder (``config.json``, ``model*.safetensors``, tokenizer files) or a
Hugging Face repo id such as ``mlx-community/Qwen2.5-0.5B-Instruct-4bit``, which ``mlx_lm.load``
fetches into the Hugging Face cache when online. MLX is imported only when a model is loaded,
so this module imports on machines without it.

Options (the tier's ``options`` table): ``revision`` (a Hub branch, tag or commit) and
``trust_remote_code`` (allow models whose config names a custom Python file; off by default).

All MLX work runs on one long-lived thread (see ``slmchat.infra.backends.mlx_thread`` for why).
"""

from __future__ import annotations

import contextlib
import queue
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from slmchat.infra.backends.base import (
    CancelToken,
    Capabilities,
    ChatBackend,
    FinishReason,
    GenParams,
    Message,
    ProgressFn,
    StreamEnd,
    StreamItem,
    Usage,
    iterate_in_thread,
)
from slmchat.infra.backends.mlx_thread import MlxThread
from slmchat.infra.backends.names import SHOWN_PATH_CHARS, quoted
from slmchat.infra.errors import BackendUnavailable, ModelNotFound, SlmchatError

#: ``owner/name`` as the Hugging Face Hub spells repo ids
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EXAMPLE_REPO = "mlx-community/Qwen2.5-0.5B-Instruct-4bit"
#: how often a stream queued behind another one looks at its cancel token
_POLL_SECONDS = 0.05

T = TypeVar("T")


_MLX_THREAD = MlxThread()


def _exists(path: Path) -> bool:
    """``path.exists()``, where a name too long for the filesystem does not exist either."""
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG and the like: no such folder
        return False


def _install_hint() -> str:
    if sys.platform.startswith("linux"):
        return "install it with: pip install 'mlx-lm[cpu]' (or 'slmchat[mlx-cpu]')"
    return "install it with: pip install 'slmchat[mlx]' (MLX runs on Apple silicon and Linux)"


def _is_hub_id(model: str) -> bool:
    """Whether ``model`` reads as a Hub repo id rather than a path (``owner/name``, nothing else)."""
    return bool(_REPO_ID.match(model)) and not model.startswith((".", "~"))


def _no_template_prompt(messages: list[Message]) -> str:
    """A plain ``role: content`` transcript, for tokenizers without a chat template."""
    lines = [f"{m.role}: {m.content}" for m in messages]
    lines.append("assistant:")
    return "\n".join(lines)


def _merge_system(messages: list[Message]) -> list[Message]:
    """Fold system messages into the first user message, for templates that refuse a system role."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    for i, m in enumerate(rest):
        if m.role == "user":
            rest[i] = Message("user", f"{system}\n\n{m.content}" if system else m.content)
            return rest
    return [Message("user", system), *rest] if system else rest


class MlxBackend(ChatBackend):
    """An MLX model loaded in this process with ``mlx_lm.load`` and run with ``stream_generate``."""

    name: ClassVar[str] = "mlx"
    # mlx-lm's GenerationResponse carries prompt_tokens and generation_tokens.
    capabilities: ClassVar[Capabilities] = Capabilities(exact_token_counts=True)

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model, options)
        self._model: Any = None
        self._tokenizer: Any = None
        self._config: dict[str, Any] = {}
        self._streams: set[threading.Event] = set()  # stop flags of the streams in flight

    # -- loading -------------------------------------------------------------------------------

    def _resolve(self) -> tuple[str, bool]:
        """The path or repo id to hand to ``mlx_lm.load``, and whether it is a repo id.

        Raises ``ModelNotFound`` for a missing or incomplete local folder, before MLX sees it.
        """
        path = Path(self.model).expanduser()
        if not _exists(path):
            if _is_hub_id(self.model):
                return self.model, True
            raise ModelNotFound(
                f"MLX model folder {quoted(str(path), SHOWN_PATH_CHARS)} does not exist",
                "check the path, or give a Hugging Face repo id such as " + _EXAMPLE_REPO,
            )
        if not path.is_dir():
            raise ModelNotFound(
                f"{quoted(str(path), SHOWN_PATH_CHARS)} is a file, but MLX loads a model folder",
                "point at the folder holding config.json and model*.safetensors (for a .gguf file use llamacpp:<path>)",
            )
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{quoted(str(path), SHOWN_PATH_CHARS)} is not an MLX model folder: it has no config.json",
                "convert a Hugging Face model with: mlx_lm.convert --hf-path <repo> --mlx-path <folder>",
            )
        if not any(path.glob("model*.safetensors")):
            raise ModelNotFound(
                f"{quoted(str(path), SHOWN_PATH_CHARS)} has no model*.safetensors weights",
                "convert the model with: mlx_lm.convert --hf-path <repo> --mlx-path <folder>",
            )
        return str(path), False

    def _load_error(self, exc: Exception, target: str) -> SlmchatError:
        """Turn what ``mlx_lm.load`` raised into an error that says what to do."""
        shown = quoted(target, SHOWN_PATH_CHARS)
        try:
            from huggingface_hub import errors as hub_errors
        except ImportError:  # pragma: no cover - mlx-lm depends on huggingface_hub
            hub_errors = None
        if hub_errors is not None:
            if isinstance(exc, hub_errors.RevisionNotFoundError):
                return ModelNotFound(
                    f"revision {quoted(self.options.get('revision'))} of {shown} is not on Hugging Face",
                    "fix the revision option, or remove it to use the main branch",
                )
            if isinstance(exc, hub_errors.RepositoryNotFoundError):
                return ModelNotFound(
                    f"Hugging Face repo {shown} was not found (or is private or gated)",
                    f"check the repo id (e.g. {_EXAMPLE_REPO}) or log in with: hf auth login; "
                    "a local folder must exist",
                )
            if isinstance(exc, hub_errors.LocalEntryNotFoundError):
                return ModelNotFound(
                    f"{shown} is not in the Hugging Face cache and cannot be downloaded now",
                    "go online (and unset HF_HUB_OFFLINE) to download it once, or give a local model folder",
                )
            if isinstance(exc, hub_errors.HfHubHTTPError):
                return BackendUnavailable(
                    f"downloading {shown} from Hugging Face failed: {exc}",
                    "check the network connection and try again",
                )
        if isinstance(exc, ConnectionError | TimeoutError):
            return BackendUnavailable(
                f"cannot reach Hugging Face to download {shown}: {exc}",
                "check the network connection, or give a local model folder",
            )
        if isinstance(exc, FileNotFoundError | KeyError):
            return ModelNotFound(
                f"{shown} is missing files MLX needs: {exc}",
                "make sure the folder holds config.json, model*.safetensors and the tokenizer files",
            )
        text = str(exc)
        if isinstance(exc, ValueError) and "not supported" in text:
            return ModelNotFound(
                f"MLX cannot run {shown}: {text}",
                "upgrade mlx-lm (pip install -U mlx-lm), or pick a model of a supported architecture",
            )
        return ModelNotFound(
            f"MLX could not load {shown}: {type(exc).__name__}: {text}",
            "check that it is a complete MLX model folder (try: mlx_lm.generate --model <it>)",
        )

    async def load(self, progress: ProgressFn | None = None) -> None:
        """Import MLX and load the weights and tokenizer on the MLX thread."""
        if self._model is not None:
            return
        say: ProgressFn = progress or (lambda _message: None)
        say("importing MLX")
        try:
            import mlx.core as mx
            import mlx_lm
        except (ImportError, OSError) as exc:  # OSError: the native library is missing
            raise BackendUnavailable(f"MLX is not available: {exc}", _install_hint()) from exc
        target, from_hub = self._resolve()
        say(f"loading {target} from Hugging Face (downloads on first use)" if from_hub else f"loading {target}")
        kwargs: dict[str, Any] = {"return_config": True}
        if self.options.get("revision"):
            kwargs["revision"] = str(self.options["revision"])
        if self.options.get("trust_remote_code"):
            kwargs["trust_remote_code"] = True
        try:
            model, tokenizer, config = await _MLX_THREAD.call(lambda: mlx_lm.load(target, **kwargs))
        except SlmchatError:
            raise
        except Exception as exc:  # every other failure becomes an error with a hint
            raise self._load_error(exc, target) from exc
        self._model, self._tokenizer, self._config = model, tokenizer, dict(config or {})
        device = mx.default_device().type
        say(f"MLX model ready ({getattr(device, 'name', device)})")

    @property
    def loaded(self) -> bool:
        """Whether ``load`` has finished."""
        return self._model is not None

    @property
    def context_tokens(self) -> int | None:
        """``max_position_embeddings`` from the model's config (or its text part), when known."""
        for section in (self._config, self._config.get("text_config") or {}):
            value = section.get("max_position_embeddings") if isinstance(section, dict) else None
            if isinstance(value, int) and value > 0:
                return value
        return None

    def count_tokens(self, text: str) -> tuple[int, bool]:
        """Exact with the model's tokenizer once loaded, else the base estimate."""
        if self._tokenizer is None:
            return super().count_tokens(text)
        return len(self._tokenizer.encode(text, add_special_tokens=False)), False

    # -- generation ----------------------------------------------------------------------------

    @staticmethod
    def _prompt_tokens(tokenizer: Any, messages: list[Message]) -> list[int]:
        """Token ids of the prompt: the chat template with a generation prompt, or a plain transcript."""
        if getattr(tokenizer, "has_chat_template", False):
            try:
                text = tokenizer.apply_chat_template(
                    [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True
                )
            except Exception:
                # Some templates (Gemma, older Mistral) refuse a system role: fold it into the user turn.
                if not any(m.role == "system" for m in messages):
                    raise
                text = tokenizer.apply_chat_template(
                    [m.as_dict() for m in _merge_system(messages)],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            # the template writes the special tokens (BOS) itself
            return list(tokenizer.encode(text, add_special_tokens=False))
        return list(tokenizer.encode(_no_template_prompt(messages), add_special_tokens=True))

    def _generate(self, prompt: list[int], params: GenParams, stopped: Callable[[], bool]) -> Iterator[StreamItem]:
        """The blocking generation, on the MLX thread: text deltas, then one ``StreamEnd``.

        Counts are mlx-lm's; on a natural stop its completion count includes the end-of-sequence token.
        """
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        prompt_tokens, completion_tokens = len(prompt), 0
        if stopped():
            yield StreamEnd(Usage(prompt_tokens, 0, estimated=False), "cancelled")
            return
        model, tokenizer = self._model, self._tokenizer
        if model is None:
            raise BackendUnavailable(f"the MLX model {quoted(self.model)} was closed", "load it again")
        if params.seed is not None:
            mx.random.seed(params.seed)
        finish: FinishReason = "stop"
        responses = stream_generate(
            model,
            tokenizer,
            prompt,
            max_tokens=max(1, params.max_tokens),
            sampler=make_sampler(temp=max(0.0, params.temperature)),
        )
        try:
            for response in responses:
                prompt_tokens = response.prompt_tokens
                completion_tokens = response.generation_tokens
                if response.text:
                    yield response.text
                if response.finish_reason is not None:
                    finish = "length" if response.finish_reason == "length" else "stop"
                    break
                if stopped():  # before asking for the next token
                    finish = "cancelled"
                    break
        finally:
            responses.close()
        yield StreamEnd(Usage(prompt_tokens, completion_tokens, estimated=False), finish)

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        """Yield text deltas, then one ``StreamEnd`` with mlx-lm's exact token counts.

        ``iterate_in_thread`` runs a relay that builds the prompt and passes on what the MLX thread
        generates; the relay ends after the stream and never touches MLX itself.
        """
        if self._model is None:
            await self.load()
        tokenizer = self._tokenizer
        stop = threading.Event()  # set when the consumer goes away or the backend closes
        self._streams.add(stop)

        def stopped() -> bool:
            return stop.is_set() or cancel.cancelled or _MLX_THREAD.closing.is_set()

        def relay() -> Iterator[StreamItem]:
            prompt = self._prompt_tokens(tokenizer, messages)
            out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
            claim = threading.Lock()  # taken by the MLX thread to run the job, or here to drop it

            def job() -> None:
                if not claim.acquire(blocking=False):
                    return  # cancelled while queued behind another stream
                try:
                    for item in self._generate(prompt, params, stopped):
                        out.put(("item", item))
                except BaseException as exc:  # handed to the consumer as is
                    out.put(("error", exc))
                else:
                    out.put(("done", None))

            _MLX_THREAD.submit(job)
            while True:
                try:
                    tag, value = out.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if stopped() and claim.acquire(blocking=False):
                        yield StreamEnd(Usage(len(prompt), 0, estimated=False), "cancelled")
                        return
                    continue
                if tag == "item":
                    yield value
                elif tag == "error":
                    raise value
                else:
                    return

        items = iterate_in_thread(relay)
        try:
            async for item in items:
                if isinstance(item, str) and cancel.cancelled:
                    continue  # already in flight when the engine cancelled: drop it
                yield item
        finally:
            stop.set()
            self._streams.discard(stop)
            await items.aclose()

    async def aclose(self) -> None:
        """Stop the streams in flight, drop the model and give MLX's cached buffers back."""
        for stop in list(self._streams):
            stop.set()
        if self._model is None:
            return
        self._model = self._tokenizer = None
        self._config = {}

        def release() -> None:  # queued after any generation still finishing
            import mlx.core as mx

            mx.clear_cache()

        with contextlib.suppress(ImportError, AttributeError):  # older MLX has no clear_cache
            await _MLX_THREAD.call(release)
