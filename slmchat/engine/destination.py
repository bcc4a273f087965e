"""Where a tier's text goes: this machine, or a named host. The terminal app shows it as a badge."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from slmchat.infra.config import TierConfig

#: backends that run the model in this process (``scripted`` is slmchat.testing's)
IN_PROCESS = frozenset({"llamacpp", "mlx", "scripted"})
OPENAI_DEFAULT = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Destination:
    """``local`` when the prompt never leaves this machine; otherwise ``host`` receives it."""

    local: bool
    host: str | None = None

    @property
    def label(self) -> str:
        if self.local:
            return "local: stays on this machine" if self.host is None else f"local: {self.host}"
        return f"remote: sent to {self.host or 'an unknown host'}"

    @property
    def short(self) -> str:
        """For a footer line: ``stays on this machine``, ``this machine (127.0.0.1:8080)``, ``sent to host``."""
        if self.local:
            return "stays on this machine" if self.host is None else f"this machine ({self.host})"
        return f"sent to {self.host or 'an unknown host'}"


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _from_url(url: str) -> Destination:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    return Destination(_is_loopback(host), parts.netloc or url)


def destination(backend: str, cfg: TierConfig | None) -> Destination:
    """Where ``backend`` (``llamacpp``, ``ollama``, ``openai``...) with these settings sends the prompt."""
    if backend in IN_PROCESS:
        return Destination(True)
    base_url = cfg.base_url if cfg else None
    if backend == "ollama":
        from slmchat.infra.backends.ollama import normalize_host

        return _from_url(normalize_host(base_url or os.environ.get("OLLAMA_HOST")))
    if backend == "openai":
        return _from_url(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT)
    return Destination(False, None)  # a backend we cannot see into: assume the text leaves
