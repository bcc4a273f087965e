"""Where slmchat keeps API keys: the OS keychain through ``keyring``, or an opt-in encrypted file.

Provider names, their environment variables and key masking live here too, since the stores need
them; ``slmchat.infra.keys`` is the API the rest of slmchat uses.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError

log = logging.getLogger(__name__)

#: the keyring service every key is stored under; the provider is the user name
SERVICE = "slmchat"
#: selects the key store: unset or ``system`` (the OS keychain), or ``cryptfile``
STORE_VARIABLE = "SLMCHAT_KEYRING"
#: unlocks the encrypted file store without a prompt
PASSPHRASE_VARIABLE = "SLMCHAT_KEYRING_PASSPHRASE"
#: SLMCHAT_* variables that are not config keys (config.load_config must skip them)
ENV_VARIABLES = frozenset({STORE_VARIABLE, PASSPHRASE_VARIABLE})
#: the encrypted file store, inside slmchat's data dir
CRYPTFILE_NAME = "keyring.cryptfile.cfg"
#: provider names stored here, so ``keys list`` can show them (names only, never keys)
INDEX_NAME = "keys-index.json"

KNOWN_PROVIDERS: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}
#: hosted endpoints and the provider whose key they take
PROVIDER_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "openrouter.ai": "openrouter",
}

_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_KEY_PREFIX = re.compile(r"[A-Za-z]{2,4}[-_]")
_CRYPTFILE_INSTALL = "pip install 'slmchat[cryptfile]'"


# -- names and masking ---------------------------------------------------------------------


def normalize_provider(provider: str) -> str:
    """The provider's canonical (lowercase) name; rejects names that cannot be one."""
    name = provider.strip().lower()
    if not _PROVIDER_NAME.fullmatch(name):
        raise SlmchatError(
            f"{provider!r} is not a provider name",
            "use lowercase letters, digits, '.', '-' or '_', e.g. openai, anthropic, groq, openrouter",
        )
    return name


def default_env_var(provider: str) -> str:
    """``OPENAI_API_KEY`` for ``openai``; ``<PROVIDER>_API_KEY`` for any other name."""
    name = normalize_provider(provider)
    return KNOWN_PROVIDERS.get(name) or re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_API_KEY"


def provider_for(base_url: str | None) -> str | None:
    """The provider of a hosted endpoint (no URL means OpenAI's); None for any other server."""
    if not base_url:
        return "openai"
    host = (urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or "").lower()
    return PROVIDER_HOSTS.get(host)


def mask(key: str | None) -> str:
    """``sk-…abcd``: a short well-known prefix and at most the last 4 characters."""
    if not key:
        return ""
    if len(key) < 12:
        return "…"  # too short to show any of it
    prefix = _KEY_PREFIX.match(key)
    return f"{prefix.group(0) if prefix else ''}…{key[-4:]}"


# -- the key store -------------------------------------------------------------------------

_override: Any = None
_cryptfiles: dict[str, Any] = {}  # unlocked encrypted file keyrings, by path


@contextmanager
def use_backend(keyring_backend: Any) -> Iterator[Any]:
    """Use this keyring backend object for slmchat's calls inside the block (tests, embedders)."""
    global _override
    previous, _override = _override, keyring_backend
    try:
        yield keyring_backend
    finally:
        _override = previous


@dataclass
class _Store:
    backend: Any  # a keyring.backend.KeyringBackend; None: the encrypted file does not exist yet
    label: str  # how `keys path` names it
    file: Path | None = None  # the file behind it, if any
    usable: bool = True


def _cryptfile_path() -> Path:
    return paths.data_dir() / CRYPTFILE_NAME


def _is_file_keyring(backend: Any) -> bool:
    return getattr(backend, "file_path", None) is not None


def _usable(backend: Any) -> bool:
    """False for keyring's fail backend, the null backend and any backend with priority ≤ 0."""
    from keyring.backends import fail

    if backend is None or isinstance(backend, fail.Keyring):
        return False
    try:
        return float(backend.priority) > 0
    except Exception:  # a backend that is not viable here raises from its priority
        return False


def _pick_system(backend: Any) -> Any:
    """The OS keychain among what keyring detected, leaving out file keyrings; or the fail backend."""
    from keyring.backends import chainer, fail

    candidates = list(backend.backends) if isinstance(backend, chainer.ChainerBackend) else [backend]
    for candidate in candidates:  # the chainer lists them by priority, highest first
        if _usable(candidate) and not _is_file_keyring(candidate):
            return candidate
    return fail.Keyring()


def _name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _store(*, for_write: bool = False, interactive: bool = False, unlock: bool = True) -> _Store:
    """The key store slmchat uses now: an override, the encrypted file, or the OS keychain."""
    if _override is not None:
        file = getattr(_override, "file_path", None)
        return _Store(_override, _name(_override), Path(file) if file else None, _usable(_override))
    choice = os.environ.get(STORE_VARIABLE, "").strip().lower()
    if choice == "cryptfile":
        return _cryptfile_store(for_write=for_write, interactive=interactive, unlock=unlock)
    if choice not in ("", "system"):
        raise SlmchatError(
            f"{STORE_VARIABLE}={choice!r} is not a key store",
            f"unset it for the OS keychain, or set {STORE_VARIABLE}=cryptfile for an encrypted file",
        )
    import keyring.core

    try:
        chosen = keyring.core.load_env()  # PYTHON_KEYRING_BACKEND
        origin = "PYTHON_KEYRING_BACKEND"
        if chosen is None:
            chosen, origin = keyring.core.load_config(), "keyringrc.cfg"
    except Exception as exc:  # a name that does not import, or a backend that is not viable here
        raise SlmchatError(
            f"the keyring backend chosen by PYTHON_KEYRING_BACKEND or keyringrc.cfg cannot be loaded: "
            f"{type(exc).__name__}",
            "fix or unset PYTHON_KEYRING_BACKEND (and keyring's keyringrc.cfg)",
        ) from exc
    if chosen is not None:  # the user's own choice, honoured as it is
        file = getattr(chosen, "file_path", None)
        return _Store(chosen, f"{_name(chosen)}, chosen by {origin}", Path(file) if file else None, _usable(chosen))
    system = _pick_system(keyring.get_keyring())
    usable = _usable(system)
    return _Store(
        system, f"OS keychain {_name(system)}" if usable else f"keyring backend {_name(system)}", None, usable
    )


def _cryptfile_store(*, for_write: bool, interactive: bool, unlock: bool = True) -> _Store:
    path = _cryptfile_path()
    label = "encrypted file (keyrings.cryptfile)"
    cached = _cryptfiles.get(str(path))  # unlocked by a prompt earlier in this process
    if cached is not None and path.exists() and not os.environ.get(PASSPHRASE_VARIABLE):
        return _Store(cached, label, path)
    try:
        from keyrings.cryptfile.cryptfile import CryptFileKeyring
    except ImportError as exc:
        raise SlmchatError(
            f"{STORE_VARIABLE}=cryptfile needs the keyrings.cryptfile package, which is not installed",
            f"{_CRYPTFILE_INSTALL}, or unset {STORE_VARIABLE}",
        ) from exc
    if not unlock or (not path.exists() and not for_write):
        return _Store(None, label, path)  # nothing stored yet (or only describing): no passphrase needed
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    prompted = False
    if not passphrase:
        if not (interactive and sys.stdin.isatty()):
            raise SlmchatError(
                f"the encrypted key file {path} needs its passphrase",
                f"set {PASSPHRASE_VARIABLE}=... (or run the command in a terminal to be asked for it)",
            )
        prompted = True
        if path.exists():
            passphrase = getpass.getpass(f"passphrase for {path}: ")
        else:
            passphrase = getpass.getpass(f"choose a passphrase for {path}: ")
            if getpass.getpass("the same passphrase again: ") != passphrase:
                raise SlmchatError("the two passphrases differ", "run the command again")
    backend = CryptFileKeyring()
    backend.file_path = str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        backend.keyring_key = passphrase  # creates the file, or checks the passphrase against it
    except ValueError:
        hint = f"check {PASSPHRASE_VARIABLE}" if os.environ.get(PASSPHRASE_VARIABLE) else "try again"
        raise SlmchatError(f"wrong or empty passphrase for the encrypted key file {path}", hint) from None
    if prompted:  # ask once per process; a passphrase from the environment is read each time
        _cryptfiles[str(path)] = backend
    return _Store(backend, label, path)


def _no_keychain(provider: str, store: _Store) -> SlmchatError:
    env = default_env_var(provider)
    return SlmchatError(
        f"there is no usable keychain here to store the {provider} key in ({store.label})",
        f"either export {env}=... in your shell profile, or opt in to an encrypted file: "
        f"{_CRYPTFILE_INSTALL} and set {STORE_VARIABLE}=cryptfile (the file lives in {paths.data_dir()}; "
        f"its passphrase comes from {PASSPHRASE_VARIABLE} or a prompt)",
    )


def _safe(exc: BaseException, secret: str | None = None) -> str:
    """An exception as text for a message, with any secret in it masked."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text.replace(secret, mask(secret)) if secret else text


def _keychain_get(store: _Store, provider: str) -> str | None:
    if store.backend is None or not store.usable:
        return None
    from keyring.errors import KeyringError

    try:
        return store.backend.get_password(SERVICE, provider) or None
    except KeyringError as exc:  # a locked or unreachable keychain: as if it had nothing
        log.debug("keychain lookup for %s failed: %s", provider, type(exc).__name__)
        return None
