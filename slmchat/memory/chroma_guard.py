"""Keeping Chroma's failures out of the chat: clear errors, a lock probe, server URLs.

Chroma's embedded engine waits for another process's SQLite lock with no time limit while
holding the GIL, so ``LockProbe`` looks at the file's locks with ``fcntl`` ``F_GETLK`` first.
Every other failure is mapped by ``unavailable`` to a ``MemoryUnavailable`` naming the database.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from slmchat.memory.types import MemoryUnavailable

DEFAULT_PORT = 8000
OFF_HINT = "or turn memory off: [memory] enabled = false"


def parse_url(url: str) -> tuple[str, int, bool]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise MemoryUnavailable(f"the memory server URL {url!r} is not valid: {exc}", _SERVER_HINT) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MemoryUnavailable(
            f"the memory server URL {url!r} is not valid", f"give it as http://host:port (memory.url), {OFF_HINT}"
        )
    ssl = parts.scheme == "https"
    return parts.hostname, port or (443 if ssl else DEFAULT_PORT), ssl


def netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_SERVER_HINT = f"is it running? start one with `chroma run --path DIR --port 8000`, fix memory.url, {OFF_HINT}"

_DAMAGED = ("file is not a database", "malformed", "(code: 26)", "(code: 11)", "not a database", "corrupt")
_LOCKED = ("database is locked", "(code: 5)", "database table is locked", "(code: 6)")
_READ_ONLY = ("readonly", "read-only", "permission denied", "(code: 8)", "unable to open database")


def unavailable(
    exc: BaseException, where: str, *, server: bool, opening: bool = False, action: str = "open memory"
) -> MemoryUnavailable:
    """A short MemoryUnavailable for any failure of Chroma, SQLite, the file system or the network."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    lowered = detail.lower()
    if server:
        import httpx

        if isinstance(exc, httpx.HTTPStatusError):
            return MemoryUnavailable(
                f"the memory server at {where} answered {exc.response.status_code}; is it a Chroma server?",
                _SERVER_HINT,
            )
        if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError) or "could not connect" in lowered:
            return MemoryUnavailable(f"cannot reach the memory server at {where}", _SERVER_HINT)
        return MemoryUnavailable(f"the memory server at {where} failed to {action}: {_short(detail)}", _SERVER_HINT)
    if any(marker in lowered for marker in _DAMAGED):
        return MemoryUnavailable(
            f"the memory database at {where} is damaged",
            f"move the folder away to start afresh, {OFF_HINT}",
        )
    if any(marker in lowered for marker in _LOCKED):
        return _locked(where)
    if isinstance(exc, PermissionError) or any(marker in lowered for marker in _READ_ONLY):
        return MemoryUnavailable(
            f"cannot {'open' if opening else 'write'} the memory database at {where}: {_short(detail)}",
            f"check the folder's permissions, {OFF_HINT}",
        )
    if isinstance(exc, OSError):
        return MemoryUnavailable(
            f"cannot use the memory database at {where}: {exc.strerror or _short(detail)}",
            f"check the disk, {OFF_HINT}",
        )
    if "embedding function" in lowered:
        return MemoryUnavailable(
            f"the memory database at {where} was made with another embedding model",
            f"use another memory.path, {OFF_HINT}",
        )
    return MemoryUnavailable(
        f"the memory database at {where} failed to {action}: {_short(detail)}",
        f"if it keeps failing, move the folder away to start afresh, {OFF_HINT}",
    )


def _locked(where: str) -> MemoryUnavailable:
    return MemoryUnavailable(
        f"the memory database at {where} is locked by another program",
        f"close the other program using it and retry, {OFF_HINT}",
    )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:
        pass


def forget_failed_system(identifier: str) -> None:
    """Chroma caches a client's system by path before starting it and keeps it when starting fails;
    the next open of that path would get the broken one (``'RustBindingsAPI' object has no attribute
    'bindings'``). Drop it when no client holds it."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        with SharedSystemClient._refcount_lock:
            if SharedSystemClient._identifier_to_refcount.get(identifier, 0) <= 0:
                SharedSystemClient._identifier_to_system.pop(identifier, None)
    except Exception:
        pass


# -- another process's lock on the database file ----------------------------------------------

# SQLite's lock bytes (os_unix.c): PENDING, RESERVED, then the 510-byte SHARED range
_PENDING_BYTE = 0x40000000
_LOCK_SPAN = 2 + 510


class LockProbe:
    """Sees whether another process holds a SQLite write lock (RESERVED, PENDING or EXCLUSIVE) on a file.

    Uses ``fcntl(F_GETLK)``, which reports a conflicting lock without taking one and ignores this
    process's own locks (Chroma's). The file descriptor stays open until ``close()``: closing any
    descriptor of a file drops every POSIX lock this process holds on it, Chroma's included, so it
    is closed only after the Chroma client. Linux and macOS/BSD; elsewhere ``on()`` gives None.
    """

    def __init__(self, fd: int, layout: str) -> None:
        self._fd: int | None = fd
        self._layout = layout

    @classmethod
    def on(cls, file: Path) -> LockProbe | None:
        try:
            import fcntl  # noqa: F401
        except ImportError:
            return None
        if sys.platform.startswith("linux"):
            layout = "@hhqqi"  # l_type, l_whence, l_start, l_len, l_pid
        elif sys.platform == "darwin" or "bsd" in sys.platform:
            layout = "@qqihh"  # l_start, l_len, l_pid, l_type, l_whence
        else:
            return None
        try:
            fd = os.open(file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        return cls(fd, layout)

    def locked(self) -> bool:
        import fcntl

        if self._fd is None:
            return False
        if self._layout == "@hhqqi":
            request = struct.pack(self._layout, fcntl.F_RDLCK, os.SEEK_SET, _PENDING_BYTE, _LOCK_SPAN, 0)
            size = struct.calcsize(self._layout)
            answer = fcntl.fcntl(self._fd, fcntl.F_GETLK, request + bytes(64))
            lock_type = struct.unpack(self._layout, answer[:size])[0]
        else:
            request = struct.pack(self._layout, _PENDING_BYTE, _LOCK_SPAN, 0, fcntl.F_RDLCK, os.SEEK_SET)
            size = struct.calcsize(self._layout)
            answer = fcntl.fcntl(self._fd, fcntl.F_GETLK, request + bytes(64))
            lock_type = struct.unpack(self._layout, answer[:size])[3]
        return lock_type != fcntl.F_UNLCK

    def wait(self, timeout: float, where: str) -> None:
        """Return once no other process holds a write lock; MemoryUnavailable after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                if not self.locked():
                    return
            except OSError:
                return  # cannot tell: let Chroma try
            if time.monotonic() >= deadline:
                raise _locked(where)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            quietly(lambda: os.close(fd))
