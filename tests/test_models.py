"""`list_models` and `slmchat models`: the built-in model, a (fake) Ollama server, a temp HF cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_ollama import FakeOllama

from slmchat.engine.models import list_models
from slmchat.infra.backends.ollama import normalize_host
from slmchat.infra.config import Config, TierConfig
from tests.helpers import free_port

#: read before conftest's autouse fixture clears it, for the live test
_LIVE_OLLAMA_HOST = os.environ.get("OLLAMA_HOST")


@pytest.fixture(autouse=True)
def no_ollama_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at OLLAMA_HOST unless a test starts a fake there (a real local Ollama stays out)."""
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def cache_repo(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """Lay out one model repo the way huggingface_hub caches it: refs/main and a snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


MLX_CONFIG = json.dumps({"model_type": "llama", "quantization": {"group_size": 64, "bits": 4}})
PLAIN_CONFIG = json.dumps({"model_type": "llama"})


def test_the_built_in_model_is_listed_and_runs_the_small_tier_by_default() -> None:
    listing = list_models(Config())
    smollm2 = listing.find("llamacpp:smollm2")
    assert smollm2 is not None and smollm2.source == "built-in" and smollm2.tiers == ("small",)
    assert smollm2.detail.endswith(".gguf") and smollm2.size_bytes and smollm2.size_bytes > 50_000_000
    assert listing.tier("small").model == "llamacpp:smollm2"
    assert listing.tier("large").configured is None
    assert [group.backend for group in listing.backends][:1] == ["llamacpp"]


def test_aliases_are_attached_to_their_models_and_a_broken_one_is_reported() -> None:
    config = Config(
        small=TierConfig(model="tiny"),
        aliases={"tiny": "llamacpp:smollm2", "fast": "ollama:llama3.2:3b", "bad": "nobackend"},
    )
    listing = list_models(config)
    assert listing.find("tiny") == listing.find("llamacpp:smollm2")
    assert listing.find("tiny").aliases == ("tiny",) and listing.find("tiny").tiers == ("small",)  # type: ignore[union-attr]
    assert listing.tier("small").configured == "tiny" and listing.tier("small").model == "llamacpp:smollm2"
    fast = listing.find("fast")
    assert fast is not None and fast.name == "ollama:llama3.2:3b" and fast.source == "alias"
    assert listing.problems == ("alias 'bad': model name 'nobackend' has no backend",)


def test_pulled_models_are_listed_and_the_tier_that_runs_one_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOllama(models=("qwen2.5:0.5b", "llama3.2:3b")) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host_port)
        config = Config(small=TierConfig(model="ollama:llama3.2:3b"), large=TierConfig(model="ollama:mistral"))
        listing = list_models(config)
        assert [r.method for r in server.requests_to("/api/tags")] == ["GET"]
    ollama = next(group for group in listing.backends if group.backend == "ollama")
    assert ollama.status == "ok" and ollama.where == server.url
    names = [model.name for model in ollama.models]
    assert names[:2] == ["ollama:llama3.2:3b", "ollama:qwen2.5:0.5b"]
    llama = listing.find("ollama:llama3.2:3b")
    assert llama is not None and llama.source == "ollama" and llama.tiers == ("small",)
    assert llama.detail == "3.2B, Q4_K_M" and llama.size_bytes == 2019393189
    mistral = listing.find("ollama:mistral")  # configured but not pulled: still listed, and says so
    assert mistral is not None and mistral.tiers == ("large",) and mistral.detail == f"not pulled on {server.url}"
    assert listing.find("llamacpp:smollm2").tiers == ()  # type: ignore[union-attr]


def test_a_tier_on_another_ollama_server_lists_that_server_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOllama(models=("llama3.2:3b",)) as default, FakeOllama(models=("qwen3:8b",)) as other:
        monkeypatch.setenv("OLLAMA_HOST", default.host_port)
        config = Config(large=TierConfig(model="ollama:qwen3", base_url=other.url))
        listing = list_models(config)
    groups = {group.where: [m.name for m in group.models] for group in listing.backends if group.backend == "ollama"}
    assert groups == {other.url: ["ollama:qwen3:8b", "ollama:qwen3"], default.url: ["ollama:llama3.2:3b"]}
    assert listing.find("ollama:qwen3:8b").tiers == ()  # type: ignore[union-attr]  # qwen3 means qwen3:latest
    assert listing.find("ollama:qwen3").tiers == ("large",)  # type: ignore[union-attr]


def test_an_unreachable_ollama_is_reported_not_raised() -> None:
    listing = list_models(Config())
    ollama = next(group for group in listing.backends if group.backend == "ollama")
    assert ollama.status == "unreachable" and ollama.models == ()
    assert ollama.reason == f"cannot reach Ollama at {normalize_host(os.environ['OLLAMA_HOST'])}"
    assert ollama.hint is not None and "ollama serve" in ollama.hint


def test_an_ollama_that_never_answers_costs_only_the_short_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{silent_server}")
    started = time.monotonic()
    listing = list_models(Config(), ollama_timeout_s=0.3)
    assert time.monotonic() - started < 5
    ollama = next(group for group in listing.backends if group.backend == "ollama")
    assert ollama.status == "unreachable" and "did not answer within 0.3 s" in (ollama.reason or "")


def test_mlx_repos_in_the_hf_cache_are_found_and_plain_ones_left_out(hf_cache: Path) -> None:
    cache_repo(hf_cache, "mlx-community/Tiny-bf16", {"config.json": PLAIN_CONFIG, "model.safetensors": "w"})
    cache_repo(
        hf_cache,
        "someone/Qwen-0.5B-q4",  # no "mlx" in the name: found by the quantization table mlx_lm.convert writes
        {"config.json": MLX_CONFIG, "model-00001-of-00002.safetensors": "w", "model-00002-of-00002.safetensors": "w"},
    )
    cache_repo(hf_cache, "bert/tiny", {"config.json": PLAIN_CONFIG, "model.safetensors": "w"})  # transformers
    cache_repo(hf_cache, "someone/Tiny-MLX-GGUF", {"tiny.gguf": "w"})  # no config.json + safetensors
    cache_repo(hf_cache, "mlx-community/half", {"config.json": MLX_CONFIG})  # no weights yet
    config = Config(large=TierConfig(model="mlx:mlx-community/Tiny-bf16"))
    listing = list_models(config)
    mlx = next(group for group in listing.backends if group.backend == "mlx")
    assert mlx.where == f"Hugging Face cache {hf_cache}" and mlx.status == "ok"
    assert [model.name for model in mlx.models] == ["mlx:mlx-community/Tiny-bf16", "mlx:someone/Qwen-0.5B-q4"]
    assert mlx.models[0].tiers == ("large",) and mlx.models[0].detail == ""
    assert mlx.models[1].detail == "4-bit" and mlx.models[1].source == "hf-cache"


def test_hf_home_is_honoured_and_a_missing_cache_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    mlx = next(group for group in list_models(Config()).backends if group.backend == "mlx")
    assert mlx.where == f"Hugging Face cache {tmp_path / 'hfhome' / 'hub'}" and mlx.models == ()
    cache_repo(
        tmp_path / "hfhome" / "hub", "mlx-community/Tiny-4bit", {"config.json": MLX_CONFIG, "model.safetensors": "w"}
    )
    assert list_models(Config()).find("mlx:mlx-community/Tiny-4bit") is not None


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slmchat", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip


def test_slmchat_models_json_and_text(hf_cache: Path) -> None:
    cache_repo(hf_cache, "mlx-community/Tiny-4bit", {"config.json": MLX_CONFIG, "model.safetensors": "w"})
    with FakeOllama(models=("llama3.2:3b",)) as server:
        env = {"OLLAMA_HOST": server.host_port, "SLMCHAT_ALIASES__FAST": "ollama:llama3.2:3b"}
        result = run_cli("models", "--json", env=env)
        text = run_cli("models", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tiers"]["small"] == {"configured": "llamacpp:smollm2", "model": "llamacpp:smollm2", "problem": None}
    assert data["tiers"]["large"] == {"configured": None, "model": None, "problem": None}
    by_backend = {group["backend"]: group for group in data["backends"]}
    assert by_backend["llamacpp"]["models"][0]["name"] == "llamacpp:smollm2"
    assert by_backend["llamacpp"]["models"][0]["tiers"] == ["small"]
    assert by_backend["ollama"]["status"] == "ok"
    assert by_backend["ollama"]["models"][0]["aliases"] == ["fast"]
    assert [m["name"] for m in by_backend["mlx"]["models"]] == ["mlx:mlx-community/Tiny-4bit"]
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[:2] == ["small  llamacpp:smollm2", "large  not configured"]
    assert any(line.split()[:2] == ["llamacpp:smollm2", "small"] for line in lines)
    assert any(line.split()[:4] == ["ollama:llama3.2:3b", "alias", "fast", "3.2B,"] for line in lines)
    assert f"ollama ({server.url})" in lines


def test_slmchat_models_with_ollama_down_exits_0_and_says_why() -> None:
    port = free_port()
    result = run_cli("models", env={"OLLAMA_HOST": f"127.0.0.1:{port}"})
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert f"ollama (http://127.0.0.1:{port}): unreachable" in result.stdout
    assert f"  cannot reach Ollama at http://127.0.0.1:{port}" in result.stdout
    assert "  fix: start it with `ollama serve`" in result.stdout


# live ------------------------------------------------------------------------


def test_live_ollama_lists_what_its_tags_api_has(monkeypatch: pytest.MonkeyPatch) -> None:
    host = normalize_host(_LIVE_OLLAMA_HOST)
    try:
        tags = httpx.get(f"{host}/api/tags", timeout=2.0).raise_for_status().json()["models"]
    except RuntimeError as exc:  # conftest's network guard: only loopback is allowed
        pytest.skip(f"Ollama at {host} is not on loopback: {exc}")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        pytest.skip(f"no Ollama server answers at {host} ({type(exc).__name__})")
    monkeypatch.setenv("OLLAMA_HOST", host)
    ollama = next(group for group in list_models(Config()).backends if group.backend == "ollama")
    assert ollama.status == "ok"
    assert sorted(m.name for m in ollama.models) == sorted(f"ollama:{t.get('model') or t['name']}" for t in tags)
