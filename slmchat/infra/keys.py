"""API keys: from the call, the environment, or the OS keychain (never a plaintext file).

A key is looked up, in order: the key given for this call, the provider's environment variable
(``OPENAI_API_KEY`` and so on), then the OS keychain through ``keyring`` under the service
``slmchat`` with the provider as the user name.

Where there is no usable keychain (a headless Linux box has none; ``keyring`` then falls back to
its ``fail`` backend) storing a key is refused, with the two ways out: export the variable, or opt
in to an encrypted file with ``SLMCHAT_KEYRING=cryptfile`` (``pip install 'slmchat[cryptfile]'``),
kept in slmchat's data dir and unlocked with ``SLMCHAT_KEYRING_PASSPHRASE`` or a prompt.

slmchat never changes the machine-wide keyring: it holds its backend object and calls its methods.
``PYTHON_KEYRING_BACKEND`` and keyring's own ``keyringrc.cfg`` are honoured as the user's choice.
File keyrings that a plugin merely registers (``keyrings.cryptfile`` and ``keyrings.alt`` add a
plaintext one) are never picked automatically. Keys never go into logs or exception messages.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError
from slmchat.infra.keychain import (  # noqa: F401 - re-exported: slmchat.infra.keys is the public API
    _CRYPTFILE_INSTALL,
    _PROVIDER_NAME,
    CRYPTFILE_NAME,
    ENV_VARIABLES,
    INDEX_NAME,
    KNOWN_PROVIDERS,
    PASSPHRASE_VARIABLE,
    SERVICE,
    STORE_VARIABLE,
    _cryptfile_path,
    _cryptfiles,
    _keychain_get,
    _no_keychain,
    _pick_system,
    _safe,
    _store,
    default_env_var,
    mask,
    normalize_provider,
    provider_for,
    use_backend,
)
from slmchat.infra.redact import register_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class ResolvedKey:
    """A key and where it came from: ``explicit``, ``env VARNAME`` or ``keychain``."""

    value: str
    source: str

    @property
    def masked(self) -> str:
        return mask(self.value)

    def __post_init__(self) -> None:
        register_secret(self.value)  # a server that echoes it back cannot put it on screen or on disk

    def __repr__(self) -> str:
        return f"ResolvedKey(value={self.masked!r}, source={self.source!r})"

    __str__ = __repr__


# -- the index of stored providers ---------------------------------------------------------


def _index_path() -> Path:
    return paths.data_dir() / INDEX_NAME


def _read_index() -> list[str]:
    try:
        names = json.loads(_index_path().read_text(encoding="utf-8")).get("providers", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and _PROVIDER_NAME.fullmatch(n)]


def _write_index(names: list[str]) -> None:
    path = _index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"providers": sorted(set(names))}, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:  # only `keys list` uses it; the key itself is stored
        log.debug("cannot write %s: %s", path, exc.strerror)


# -- the API -------------------------------------------------------------------------------


def resolve_key(
    provider: str, explicit: str | None = None, env_var: str | None = None, *, interactive: bool = False
) -> ResolvedKey | None:
    """The key for ``provider``: ``explicit``, then ``env_var`` (or the provider's default), then the keychain.

    None when none of them has one. Raises only for a key store that is misconfigured (an
    encrypted file whose passphrase is missing or wrong), never because a key is absent.
    ``interactive`` allows prompting for that passphrase on a terminal.
    """
    if explicit:
        return ResolvedKey(explicit, "explicit")
    name = normalize_provider(provider)
    var = env_var or default_env_var(name)
    value = os.environ.get(var)
    if value:
        return ResolvedKey(value, f"env {var}")
    stored = _keychain_get(_store(interactive=interactive), name)
    return ResolvedKey(stored, "keychain") if stored else None


def resolve_for_server(
    base_url: str | None,
    explicit: str | None = None,
    env_var: str | None = None,
    provider: str | None = None,
    *,
    interactive: bool = False,
) -> ResolvedKey | None:
    """The key for an OpenAI-compatible server: by provider for a hosted one, else only explicit/``env_var``."""
    provider = provider or provider_for(base_url)
    if provider:
        return resolve_key(provider, explicit, env_var, interactive=interactive)
    if explicit:
        return ResolvedKey(explicit, "explicit")
    value = os.environ.get(env_var) if env_var else None
    return ResolvedKey(value, f"env {env_var}") if value else None


def missing_key_error(what: str, provider: str | None, env_var: str | None = None) -> SlmchatError:
    """The error for a server that needs a key and has none."""
    if not provider:
        var = env_var or "OPENAI_API_KEY"
        return SlmchatError(f"no API key for {what}: {var} is not set", f"export {var}=...")
    var = env_var or default_env_var(provider)
    return SlmchatError(
        f"no API key for {what}: {var} is not set and the keychain has no {provider} key",
        f"run `slmchat keys set {provider}`, or export {var}=...",
    )


def set_key(provider: str, key: str, *, interactive: bool = False) -> str:
    """Store ``key`` for ``provider``; returns where it went. Refuses when there is no keychain."""
    name = normalize_provider(provider)
    key = (key or "").strip()
    if not key:
        raise SlmchatError(f"the key for {name} is empty", "paste the whole key")
    if any(ch.isspace() for ch in key):
        raise SlmchatError(f"the key for {name} contains spaces or line breaks", "paste the key alone")
    store = _store(for_write=True, interactive=interactive)
    if not store.usable:
        raise _no_keychain(name, store)
    from keyring.errors import KeyringError, NoKeyringError

    try:
        store.backend.set_password(SERVICE, name, key)
    except NoKeyringError:
        raise _no_keychain(name, store) from None
    except KeyringError as exc:
        raise SlmchatError(
            f"the keychain ({store.label}) refused to store the {name} key: {_safe(exc, key)}",
            f"unlock the keychain and try again, or export {default_env_var(name)}=...",
        ) from None
    _write_index([*_read_index(), name])
    return store.label if store.file is None else f"{store.label} at {store.file}"


def delete_key(provider: str, *, interactive: bool = False) -> bool:
    """Remove the stored key for ``provider``; False when none was stored."""
    name = normalize_provider(provider)
    store = _store(interactive=interactive)
    deleted = False
    if store.backend is not None and store.usable:
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            if store.backend.get_password(SERVICE, name) is not None:
                store.backend.delete_password(SERVICE, name)
                deleted = True
        except PasswordDeleteError:
            pass
        except KeyringError as exc:
            raise SlmchatError(
                f"the keychain ({store.label}) refused to delete the {name} key: {_safe(exc)}",
                "unlock the keychain and try again",
            ) from None
    index = _read_index()
    if name in index:
        _write_index([n for n in index if n != name])
    return deleted


def list_keys(*, interactive: bool = False) -> list[tuple[str, str, str]]:
    """``(provider, source, masked)`` for the known providers and every stored one.

    ``source`` is ``env VARNAME``, ``keychain`` or ``none``; ``masked`` is empty for ``none``.
    """
    store = _store(interactive=interactive)
    rows = []
    for name in dict.fromkeys([*KNOWN_PROVIDERS, *sorted(_read_index())]):
        var = default_env_var(name)
        value = os.environ.get(var)
        if value:
            rows.append((name, f"env {var}", mask(value)))
            continue
        stored = _keychain_get(store, name)
        rows.append((name, "keychain", mask(stored)) if stored else (name, "none", ""))
    return rows


def key_store_description() -> str:
    """Where keys are kept, for ``slmchat keys path``: the backend and, for a file, its path."""
    store = _store(unlock=False)
    if not store.usable:
        return (
            f"no usable keychain ({store.label}): keys come from environment variables only. "
            f"To store them, {_CRYPTFILE_INSTALL} and set {STORE_VARIABLE}=cryptfile "
            f"(encrypted file: {_cryptfile_path()})"
        )
    where = f" at {store.file}" if store.file else ""
    missing = " (not created yet)" if store.file and not store.file.exists() else ""
    return f"{store.label}{where}{missing}, service {SERVICE!r}"
