"""The small and large tiers: which model each runs, its settings, and its loaded backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from slmchat.engine.destination import Destination, destination
from slmchat.engine.events import Event, ModelFailed, ModelLoading, ModelReady
from slmchat.infra.backends import ChatBackend, ModelRef, create_backend, parse_model_name
from slmchat.infra.config import OPTIONS_HINT, Config, TierConfig
from slmchat.infra.errors import ConfigError, SlmchatError
from slmchat.routing import Tier


class Tiers:
    """Model names and settings per tier; backends load once, on first use, shared by callers."""

    def __init__(self, config: Config, backends: dict[Tier, ChatBackend] | None, emit: Callable[[Event], None]) -> None:
        """``backends`` supplies ready backend objects; ``emit`` receives the loading events."""
        self.config = config
        self._emit = emit
        self._tiers: dict[Tier, TierConfig | None] = {"small": config.small, "large": config.large}
        self._backends: dict[Tier, ChatBackend] = dict(backends or {})
        self._shared = set(self._backends.values())
        self._refs: dict[Tier, ModelRef | None] = {}
        for tier, cfg in self._tiers.items():
            given = self._backends.get(tier)
            if given is not None:  # a supplied backend names itself
                self._refs[tier] = ModelRef(given.name, given.model)
                self._tiers[tier] = cfg or TierConfig(model=str(self._refs[tier]))
            else:
                self._refs[tier] = parse_model_name(cfg.model, config.aliases) if cfg else None
        self._loading: dict[Tier, asyncio.Task[ChatBackend]] = {}
        self._retired: list[ChatBackend] = []

    def settings(self, tier: Tier) -> TierConfig | None:
        """The settings a tier runs with now (after any ``set_model``)."""
        return self._tiers[tier]

    def model_name(self, tier: Tier) -> str | None:
        ref = self._refs[tier]
        return str(ref) if ref else None

    def destination(self, tier: Tier) -> Destination | None:
        """Where this tier's prompts go (None: the tier is not configured)."""
        ref = self._refs[tier]
        return destination(ref.backend, self._tiers[tier]) if ref else None

    def set_model(self, tier: Tier, name: str) -> str:
        """Use another model for ``tier`` from the next turn on; returns the resolved name."""
        ref = parse_model_name(name, self.config.aliases)
        cfg = self._tiers[tier]
        previous = self._refs[tier]
        if cfg is None or previous is None or previous.backend != ref.backend:
            # another backend: the old server address, key and options do not apply to it
            keep = {"max_tokens", "temperature", "seed", "context_tokens"}
            cfg = TierConfig(model=name, **(cfg.model_dump(include=keep) if cfg else {}))
        self._tiers[tier] = cfg.model_copy(update={"model": name})
        self._refs[tier] = ref
        old = self._backends.pop(tier, None)
        self._loading.pop(tier, None)
        if old is not None and old not in self._shared:
            self._retired.append(old)  # closed with the session
        return str(ref)

    async def backend(self, tier: Tier) -> ChatBackend:
        """The loaded backend of ``tier``; loads it once, shared by concurrent callers."""
        if tier in self._backends:
            return self._backends[tier]
        task = self._loading.get(tier)
        if task is None:
            task = self._loading[tier] = asyncio.ensure_future(self._load(tier))
        try:
            backend = await task
        except BaseException:
            self._loading.pop(tier, None)  # let the next turn try again
            raise
        self._backends[tier] = backend
        return backend

    async def _load(self, tier: Tier) -> ChatBackend:
        ref, cfg = self._refs[tier], self._tiers[tier]
        if ref is None or cfg is None:
            raise SlmchatError(f"no {tier} tier is configured", "add a [large] section to the config")
        options: dict[str, Any] = {"base_url": cfg.base_url, "timeout_s": cfg.timeout_s, **cfg.options}
        if cfg.api_key_env:  # the backend resolves the key itself (environment, then keychain)
            options["api_key_env"] = cfg.api_key_env
        started = time.perf_counter()
        self._emit(ModelLoading(tier, str(ref)))
        try:
            if cfg.options and (problems := _option_problems(ref.backend, cfg.options)):  # a Config built in code
                described = "; ".join(problem.describe(f"{tier}.options") for problem in problems)
                raise ConfigError(f"invalid options for the {tier} tier: {described}", OPTIONS_HINT)
            backend = create_backend(ref, options)
            await backend.load()  # progress is told by the events around it
        except SlmchatError as exc:
            self._emit(ModelFailed(tier, str(ref), exc.message, exc.hint))
            raise
        except Exception as exc:
            self._emit(ModelFailed(tier, str(ref), f"{type(exc).__name__}: {exc}"))
            raise
        self._emit(ModelReady(tier, str(ref), (time.perf_counter() - started) * 1000))
        return backend

    def loaded(self, tier: Tier) -> ChatBackend | None:
        """The backend of ``tier`` if it has been loaded."""
        return self._backends.get(tier)

    async def aclose(self) -> None:
        for backend in [*self._backends.values(), *self._retired]:
            if backend not in self._shared:
                await backend.aclose()
        self._retired.clear()
        self._backends.clear()


def _option_problems(backend: str, options: dict[str, Any]) -> list[Any]:
    """The backend's option checks, imported only when a tier has options (its pydantic models cost ~50 ms)."""
    from slmchat.infra.backends.options import check_options

    return check_options(backend, options)
