"""User-facing errors: one clear line of what went wrong and one of what to do."""

from __future__ import annotations

from slmchat.infra.redact import redact


class SlmchatError(Exception):
    """An error the user can fix; faces print it without a traceback.

    ``hint`` says what to do about it. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        message, hint = redact(message), redact(hint) if hint else hint  # a server may echo a key
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(SlmchatError):
    """The config file or an SLMCHAT_* override is invalid."""


class ModelNotFound(SlmchatError):
    """A model name does not resolve to anything loadable."""


class BackendUnavailable(SlmchatError):
    """A backend's library is not installed or its server cannot be reached."""


class BackendTimeout(SlmchatError):
    """A backend did not answer within the configured time."""
