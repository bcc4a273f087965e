"""``backend:model`` names, aliases, and how local GGUF names resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.infra.backends import ModelRef, create_backend, parse_model_name
from slmchat.infra.backends.llamacpp import is_hub_name, resolve_model_path
from slmchat.infra.errors import ModelNotFound


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ollama:llama3.2:3b", ModelRef("ollama", "llama3.2:3b")),
        ("llamacpp:/models/x.gguf", ModelRef("llamacpp", "/models/x.gguf")),
        ("openai:gpt-4o-mini", ModelRef("openai", "gpt-4o-mini")),
        ("mlx:mlx-community/Qwen2.5-0.5B-Instruct-4bit", ModelRef("mlx", "mlx-community/Qwen2.5-0.5B-Instruct-4bit")),
    ],
)
def test_first_colon_separates_the_backend(name: str, expected: ModelRef) -> None:
    assert parse_model_name(name) == expected
    assert str(parse_model_name(name)) == name


def test_aliases_resolve_in_chains_and_loops_are_caught() -> None:
    aliases = {"fast": "local", "local": "ollama:llama3.2:3b", "a": "b", "b": "a"}
    assert parse_model_name("fast", aliases) == ModelRef("ollama", "llama3.2:3b")
    with pytest.raises(ModelNotFound, match="refers to itself"):
        parse_model_name("a", aliases)


@pytest.mark.parametrize("name", ["gpt-4o", "nosuch:model", "ollama:"])
def test_bad_names_say_how_to_write_them(name: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        parse_model_name(name)
    assert caught.value.hint and "llamacpp" in caught.value.hint


def test_builtin_and_local_gguf_names(smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model_path("smollm2") == smollm2_path and smollm2_path.stat().st_size > 50_000_000
    assert resolve_model_path(str(smollm2_path)) == smollm2_path
    monkeypatch.chdir(smollm2_path.parent)
    assert resolve_model_path(f"./{smollm2_path.name}") == Path(f"./{smollm2_path.name}")
    with pytest.raises(ModelNotFound, match="model file not found"):
        resolve_model_path(str(tmp_path / "missing.gguf"))


def test_hub_names_are_recognised_but_never_fetched_in_tests() -> None:
    assert is_hub_name("bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")
    assert not is_hub_name("/abs/owner/repo/file.gguf") and not is_hub_name("./a/b/c.gguf")
    assert not is_hub_name("owner/repo/readme.md")
    # HF_HUB_OFFLINE=1 (set for every test): an uncached hub file is a clear error, not a download
    with pytest.raises(ModelNotFound) as caught:
        resolve_model_path("someone/some-repo-GGUF/model-Q4_K_M.gguf")
    assert "not in the local cache" in caught.value.message and "local .gguf path" in (caught.value.hint or "")


def test_create_backend_picks_the_class() -> None:
    backend = create_backend(ModelRef("llamacpp", "smollm2"), {"n_ctx": 512})
    assert backend.name == "llamacpp" and backend.options["n_ctx"] == 512
