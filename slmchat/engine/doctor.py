"""`slmchat doctor`: what is installed and reachable, with the fix for each problem."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from typing import Literal

import httpx

from slmchat.infra import paths
from slmchat.infra.backends import parse_model_name
from slmchat.infra.config import Config, MemoryConfig, TierConfig, load_config
from slmchat.infra.errors import SlmchatError

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str | None = None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_packages() -> list[Check]:
    checks = [Check("python", "ok", sys.version.split()[0])]
    llama = _version("llama-cpp-python")
    checks.append(
        Check("llama.cpp", "ok", f"llama-cpp-python {llama}")
        if llama
        else Check("llama.cpp", "fail", "llama-cpp-python is not installed", "pip install llama-cpp-python")
    )
    mlx = _version("mlx-lm")
    checks.append(
        Check("mlx", "ok", f"mlx-lm {mlx}")
        if mlx
        else Check(
            "mlx",
            "warn",
            "mlx-lm is not installed (only needed for mlx: models)",
            "pip install 'slmchat[mlx]' (on Linux: 'slmchat[mlx-cpu]')",
        )
    )
    return checks


def check_default_model() -> Check:
    from slmchat.infra.backends.llamacpp import resolve_model_path

    try:
        path = resolve_model_path("smollm2")
    except SlmchatError as exc:
        return Check("default model", "fail", exc.message, exc.hint)
    return Check("default model", "ok", f"{path} ({path.stat().st_size / 1e6:.0f} MB)")


async def check_ollama(host: str | None, model: str | None = None) -> Check:
    """Is an Ollama server answering at ``host`` (and does it have ``model``)?"""
    from slmchat.infra.backends.ollama import normalize_host

    host = normalize_host(host or os.environ.get("OLLAMA_HOST"))
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(host + "/api/version")
            response.raise_for_status()
            version = response.json().get("version", "?")
            if model is not None:
                shown = await client.post(host + "/api/show", json={"model": model})
                if shown.status_code == 404:
                    return Check(
                        "ollama",
                        "fail",
                        f"Ollama {version} at {host} has no model {model!r}",
                        f"pull it with `ollama pull {model}`",
                    )
                shown.raise_for_status()
    except (httpx.HTTPError, ValueError) as exc:
        return Check(
            "ollama",
            "warn",
            f"no Ollama server at {host} ({type(exc).__name__})",
            "start it with `ollama serve`, or set OLLAMA_HOST; only needed for ollama: models",
        )
    return Check("ollama", "ok", f"Ollama {version} at {host}")


async def check_tier(tier: str, cfg: TierConfig | None, config: Config) -> Check:
    name = f"{tier} tier"
    if cfg is None:
        return Check(
            name,
            "warn",
            "not configured: every turn runs on the small tier",
            "add a [large] section to the config (see docs/configuration.md)",
        )
    try:
        ref = parse_model_name(cfg.model, config.aliases)
    except SlmchatError as exc:
        return Check(name, "fail", exc.message, exc.hint)
    if ref.backend == "llamacpp":
        from slmchat.infra.backends.llamacpp import is_hub_name, resolve_model_path

        if is_hub_name(ref.model):
            return Check(name, "warn", f"{ref}: not a local file; it will be fetched from the hub on first use")
        try:
            resolve_model_path(ref.model)
        except SlmchatError as exc:
            return Check(name, "fail", f"{ref}: {exc.message}", exc.hint)
        return Check(name, "ok", str(ref))
    if ref.backend == "ollama":
        ollama = await check_ollama(cfg.base_url, ref.model)
        return Check(name, "ok" if ollama.level == "ok" else "fail", f"{ref}: {ollama.detail}", ollama.fix)
    if ref.backend == "openai":
        return await _check_openai(name, str(ref), cfg)
    return Check(name, "ok", str(ref))


async def _check_openai(name: str, label: str, cfg: TierConfig) -> Check:
    base = (cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
    from slmchat.infra import keys

    provider = cfg.options.get("key_provider") or keys.provider_for(cfg.base_url)
    found = keys.resolve_for_server(cfg.base_url, env_var=cfg.api_key_env, provider=provider)
    headers = {}
    if found is None and (cfg.api_key_env or not cfg.base_url):
        error = keys.missing_key_error(label, provider, cfg.api_key_env)
        return Check(name, "fail", error.message, error.hint)
    if found is not None:
        headers["Authorization"] = f"Bearer {found.value}"
    key_env = cfg.api_key_env or (keys.default_env_var(provider) if provider else "the provider's variable")
    try:
        async with httpx.AsyncClient(timeout=min(cfg.timeout_s, 5.0)) as client:
            response = await client.get(base + "/models", headers=headers)
    except httpx.HTTPError as exc:
        return Check(
            name,
            "fail",
            f"{label}: cannot reach {base} ({type(exc).__name__})",
            "check base_url and that the server is running",
        )
    if response.status_code in (401, 403):
        return Check(name, "fail", f"{label}: {base} refused the API key", f"set a valid key in {key_env}")
    if response.status_code >= 500:
        return Check(name, "fail", f"{label}: {base} answered {response.status_code}", "check the server's logs")
    if response.status_code >= 400:
        return Check(
            name,
            "warn",
            f"{label}: {base}/models answered {response.status_code}; chat may still work",
            "check base_url (it usually ends in /v1)",
        )
    return Check(name, "ok", f"{label} at {base}")


def check_embedding() -> Check:
    """The router's (and memory's) offline embedding model."""
    from slmchat.infra.embedding import MODEL_ID, MiniLMEmbedder

    try:
        MiniLMEmbedder().load()
    except SlmchatError as exc:
        return Check("embedding", "fail", exc.message, exc.hint)
    return Check("embedding", "ok", f"{MODEL_ID} (onnxruntime {_version('onnxruntime')})")


def check_tools(enabled: list[str]) -> Check:
    """The tools the config enables, and plugins that failed to load."""
    from slmchat.tools import load_tools

    try:
        box = load_tools(enabled)
    except SlmchatError as exc:
        return Check("tools", "fail", exc.message, exc.hint)
    names = ", ".join(sorted(box.tools)) or "none (install a plugin: see docs/tools.md)"
    if box.problems:
        return Check("tools", "warn", f"{names}; " + "; ".join(box.problems), "fix or uninstall the plugin")
    return Check("tools", "ok", names)


def check_memory(config: MemoryConfig) -> Check:
    """Long-term memory: the embedded database or the server opens, and how much it holds."""
    if not config.enabled:
        return Check("memory", "ok", "off ([memory] enabled = false)")
    from slmchat.memory.store import MemoryStore
    from slmchat.memory.types import MemoryUnavailable

    try:
        store = MemoryStore.open(config.path, config.url)
        facts, exchanges = store.count("fact"), store.count("exchange")
    except MemoryUnavailable as exc:
        return Check("memory", "fail", exc.message, exc.hint)
    where = config.url or str(store.path)
    plural = lambda n, word: f"{n} {word}{'s' if n != 1 else ''}"  # noqa: E731
    return Check("memory", "ok", f"{where}: {plural(facts, 'fact')}, {plural(exchanges, 'exchange')}")


def check_config() -> tuple[Check, Config]:
    """The config file's check, and the config the other checks use: the file's, else the defaults.

    A config that does not load (not UTF-8, not TOML, a bad value) fails this one check; the
    rest still run, on the defaults, so one bad file does not hide every other problem.
    """
    where = paths.config_file()
    try:
        config = load_config()
    except SlmchatError as exc:
        return Check("config", "fail", exc.message, exc.hint), Config()
    return Check("config", "ok", f"{where}" + ("" if where.exists() else " (not created; defaults)")), config


def check_history() -> Check:
    try:
        from slmchat.infra.store import Store

        Store(paths.database_file()).close()
    except SlmchatError as exc:  # each storage problem (full, read-only, no permission, damaged) has its own fix
        return Check("history", "fail", exc.message, exc.hint)
    except OSError as exc:
        return Check("history", "fail", str(exc), f"check that {paths.data_dir()} is writable")
    return Check("history", "ok", str(paths.database_file()))


async def run_checks() -> list[Check]:
    config_check, config = check_config()
    checks = [*check_packages(), check_default_model(), check_embedding(), config_check, check_history()]
    checks.append(await check_tier("small", config.small, config))
    checks.append(await check_tier("large", config.large, config))
    checks.append(check_tools(config.tools.enabled))
    checks.append(check_memory(config.memory))
    if not any(c.name.endswith("tier") and "ollama:" in c.detail for c in checks):
        checks.append(await check_ollama(None))
    return checks
