"""Each backend's ``options`` table, declared with types, checked without importing the backend.

A tier's ``options = { n_ctx = "big" }`` used to reach llama.cpp as ``int("big")`` and surface as
"unexpected error"; a misspelt ``n_ctxx`` was silently ignored. ``check_options`` names the bad
key, what it should be and what it got, and lists the known options for an unknown one. Only
pydantic is imported here: validating a config must not load llama_cpp, mlx or a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slmchat.infra.backends.names import quoted

#: how an OpenAI-compatible server is asked for a tool call (see OpenAICompatBackend.tool_mode)
ToolMode = Literal["native", "json_schema", "llama.cpp", "prompt"]
TOOL_MODES: tuple[str, ...] = get_args(ToolMode)


class _Options(BaseModel):
    # strict: "big" and "4" are not numbers, "yes" is not a boolean; TOML has real ones
    model_config = ConfigDict(extra="forbid", strict=True)


class LlamaCppOptions(_Options):
    """Passed to ``llama_cpp.Llama``; unset ones keep llama-cpp-python's defaults (n_ctx: 2048)."""

    n_ctx: int | None = Field(None, gt=0, description="context window in tokens (default 2048)")
    n_threads: int | None = Field(None, gt=0, description="CPU threads for generation")
    n_threads_batch: int | None = Field(None, gt=0, description="CPU threads for reading the prompt")
    n_batch: int | None = Field(None, gt=0, description="prompt tokens evaluated per batch")
    n_gpu_layers: int | None = Field(None, ge=-1, description="layers offloaded to the GPU; -1 is all")
    chat_format: str | None = Field(None, min_length=1, description="chat template name, when the file has none")
    use_mmap: bool | None = Field(None, description="map the file instead of reading it into memory")


class OllamaOptions(_Options):
    """The Ollama backend takes its server and timeout from the tier (``base_url``, ``timeout_s``)."""


class MlxOptions(_Options):
    revision: str | None = Field(None, min_length=1, description="a Hub branch, tag or commit")
    trust_remote_code: bool = Field(False, description="allow models whose config names custom Python code")


class OpenAIOptions(_Options):
    key_provider: str | None = Field(None, min_length=1, description="whose key to use for an unknown base_url")
    max_retries: int | None = Field(None, ge=0, description="retries of a failed request (default 0)")
    tool_mode: ToolMode | None = Field(None, description="how tool replies are constrained")


#: backend prefix -> its options
OPTIONS: dict[str, type[_Options]] = {
    "llamacpp": LlamaCppOptions,
    "ollama": OllamaOptions,
    "mlx": MlxOptions,
    "openai": OpenAIOptions,
}


@dataclass(frozen=True)
class OptionProblem:
    """One bad option: its key, what is wrong, and the value given (``unknown``: no such option)."""

    key: str
    message: str
    value: Any = None
    unknown: bool = False

    def describe(self, where: str) -> str:
        """``small.options.n_ctx: Input should be a valid integer (got 'big')`` for ``where="small.options"``."""
        got = "" if self.unknown else f" (got {quoted(self.value)})"
        return f"{where}.{self.key}: {self.message}{got}"


def known_options(backend: str) -> list[str]:
    return list(OPTIONS[backend].model_fields)


def check_options(backend: str, options: Mapping[str, Any]) -> list[OptionProblem]:
    """Every problem with ``options`` for ``backend`` (an empty list when they are fine)."""
    try:
        OPTIONS[backend].model_validate(dict(options))
    except ValidationError as exc:
        return [_problem(backend, error) for error in exc.errors()]
    return []


def _problem(backend: str, error: Any) -> OptionProblem:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = known_options(backend)
        listed = f"known: {', '.join(known)}" if known else "it takes none"
        return OptionProblem(key, f"unknown option {quoted(key)} for the {backend} backend; {listed}", unknown=True)
    return OptionProblem(key, error["msg"], error.get("input"))
