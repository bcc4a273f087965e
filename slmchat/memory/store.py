"""Long-term memory in Chroma: facts and past exchanges, embedded offline, searched by meaning and recency.

Embedded by default (``chromadb.PersistentClient`` on ``memory/`` in the data dir), or a Chroma
server (``url``) shared between machines. Two collections, ``slmchat_facts`` and
``slmchat_exchanges``, in cosine space, embedded by ``SlmchatMiniLM`` (registered with Chroma, so
the database reopens with it without being told).

Every storage failure (damaged or locked database, unreachable server, any ``chromadb`` error)
comes out as ``MemoryUnavailable`` with a short message naming the database and a hint: the chat
goes on without memory.

A locked database needs care: Chroma's embedded engine (Rust, sqlx) waits for a lock held by
another process with no time limit, and holds the GIL while it waits, so no thread can time it out.
Before each call the store therefore looks at the database file's SQLite locks with ``fcntl``
``F_GETLK``, which sees other processes' locks without taking or dropping any (a second SQLite
connection in this process would drop Chroma's own locks when it closed), and gives up after
``timeout`` seconds. A lock taken between that look and Chroma's call still makes the call wait.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np

from slmchat import paths
from slmchat.embedding import DIMENSIONS
from slmchat.errors import SlmchatError
from slmchat.memory.embedding_function import SlmchatMiniLM
from slmchat.memory.types import Hit, Kind, MemoryItem, MemoryUnavailable

COLLECTIONS: dict[Kind, str] = {"fact": "slmchat_facts", "exchange": "slmchat_exchanges"}
KINDS: tuple[Kind, ...] = ("fact", "exchange")
MAX_TEXT_CHARS = 2000
#: seconds to wait for another process's database lock, or for a server to answer a connection
DEFAULT_TIMEOUT = 5.0
#: seconds a server may take to answer a request once connected
SERVER_READ_TIMEOUT = 30.0
DEFAULT_PORT = 8000
SQLITE_FILE = "chroma.sqlite3"
#: metadata keys that may be absent; written as None on replace so Chroma drops an old value
_OPTIONAL_KEYS = ("conversation_id", "turn_id", "confidence")
_OFF = "or turn memory off: [memory] enabled = false"

T = TypeVar("T")


class MemoryStore:
    """Facts and exchanges in two Chroma collections. Sync and thread-safe (calls are serialised)."""

    def __init__(
        self,
        client: Any,
        collections: dict[Kind, Any],
        embedding_function: SlmchatMiniLM,
        *,
        where: str,
        path: Path | None = None,
        url: str | None = None,
        lock_probe: _LockProbe | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._client = client
        self._collections = collections
        self.embedding_function = embedding_function
        self.where = where  # the path or URL, for messages
        self.path = path
        self.url = url
        self.timeout = timeout
        self._probe = lock_probe
        self._lock = threading.RLock()
        self._closed = False

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str | None = None,
        url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        embedding_function: SlmchatMiniLM | None = None,
    ) -> MemoryStore:
        """The embedded database at ``path`` (default: ``memory/`` in the data dir), or the server at ``url``."""
        ef = embedding_function or SlmchatMiniLM()
        if url:
            return cls._open_server(url, ef, timeout)
        folder = Path(path).expanduser() if path is not None else paths.data_dir() / "memory"
        return cls._open_embedded(folder.resolve(), ef, timeout)

    @classmethod
    def _open_embedded(cls, folder: Path, ef: SlmchatMiniLM, timeout: float) -> MemoryStore:
        import chromadb
        from chromadb.config import Settings

        where = str(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MemoryUnavailable(
                f"cannot create the memory folder {folder}: {exc.strerror or exc}",
                f"check memory.path and its permissions, {_OFF}",
            ) from exc
        probe: _LockProbe | None = None
        client = None
        try:
            if (folder / SQLITE_FILE).exists():
                probe = _LockProbe.on(folder / SQLITE_FILE)
                if probe is not None:
                    probe.wait(timeout, where)
            settings = Settings(anonymized_telemetry=False, allow_reset=False)
            client = chromadb.PersistentClient(path=where, settings=settings)
            if probe is None:
                probe = _LockProbe.on(folder / SQLITE_FILE)
            collections = {kind: _collection(client, name, ef) for kind, name in COLLECTIONS.items()}
        except BaseException as exc:
            if client is not None:
                _quietly(client.close)
            else:
                _forget_failed_system(where)
            if probe is not None:
                probe.close()
            if isinstance(exc, SlmchatError):
                raise
            if isinstance(exc, Exception):
                raise _unavailable(exc, where, server=False, opening=True) from exc
            raise
        return cls(client, collections, ef, where=where, path=folder, lock_probe=probe, timeout=timeout)

    @classmethod
    def _open_server(cls, url: str, ef: SlmchatMiniLM, timeout: float) -> MemoryStore:
        import chromadb
        import httpx
        from chromadb.config import Settings

        host, port, ssl = _parse_url(url)
        base = f"{'https' if ssl else 'http'}://{_netloc(host)}:{port}"
        client = None
        try:
            # Chroma's HTTP client has no timeout: see that the server answers before trusting it
            response = httpx.get(f"{base}/api/v2/heartbeat", timeout=timeout)
            response.raise_for_status()
            client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=Settings(anonymized_telemetry=False))
            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                session.timeout = httpx.Timeout(max(SERVER_READ_TIMEOUT, timeout), connect=timeout)
            collections = {kind: _collection(client, name, ef) for kind, name in COLLECTIONS.items()}
        except SlmchatError:
            if client is not None:
                _quietly(client.close)
            raise
        except Exception as exc:
            if client is not None:
                _quietly(client.close)
            raise _unavailable(exc, url, server=True, opening=True) from exc
        return cls(client, collections, ef, where=url, url=url, timeout=timeout)

    def close(self) -> None:
        """Release the database (idempotent). The store cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _quietly(self._client.close)
            if self._probe is not None:
                self._probe.close()  # after Chroma's connections are gone: see _LockProbe

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def add(
        self,
        text: str,
        kind: Kind,
        *,
        conversation_id: str | None = None,
        turn_id: int | None = None,
        source: str = "extracted",
        confidence: float | None = None,
        now: float | None = None,
    ) -> MemoryItem:
        """Store a new fact or exchange; its id is a fresh uuid4 hex."""
        _check_kind(kind)
        stamp = time.time() if now is None else float(now)
        item = MemoryItem(
            id=uuid.uuid4().hex,
            kind=kind,
            text=_check_text(text),
            created_at=stamp,
            updated_at=stamp,
            conversation_id=conversation_id,
            turn_id=turn_id,
            source=source,
            confidence=confidence,
        )
        with self._operation("store a memory"):
            self._collections[kind].add(ids=[item.id], documents=[item.text], metadatas=[item.metadata()])
        return item

    def update(
        self,
        id: str,
        text: str,
        *,
        confidence: float | None = None,
        source: str | None = None,
        conversation_id: str | None = None,
        turn_id: int | None = None,
        now: float | None = None,
    ) -> MemoryItem:
        """Replace an item's text (re-embedded); keeps what is not given. Unknown id: SlmchatError."""
        text = _check_text(text)
        with self._operation("update a memory"):
            old = self._get(id)
            if old is None:
                raise SlmchatError(f"no memory has the id {id}", "list memories to see their ids")
            item = MemoryItem(
                id=old.id,
                kind=old.kind,
                text=text,
                created_at=old.created_at,
                updated_at=time.time() if now is None else float(now),
                conversation_id=old.conversation_id if conversation_id is None else conversation_id,
                turn_id=old.turn_id if turn_id is None else turn_id,
                source=old.source if source is None else source,
                confidence=old.confidence if confidence is None else confidence,
            )
            self._collections[item.kind].update(ids=[item.id], documents=[item.text], metadatas=[_full_metadata(item)])
        return item

    def delete(self, ids: Sequence[str]) -> int:
        """Delete these items for good; returns how many of them existed."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return 0
        deleted = 0
        with self._operation("delete memories"):
            for collection in self._collections.values():
                found = collection.get(ids=wanted, include=[])["ids"]
                if found:
                    collection.delete(ids=list(found))
                    deleted += len(found)
        return deleted

    def import_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store exported rows, keeping their ids and timestamps (an existing id is replaced).

        Every row is checked first; one bad row raises SlmchatError naming it and nothing is written.
        """
        items = _validate_rows(rows)
        if not items:
            return 0
        with self._operation("import memories"):
            batch = max(1, min(int(self._client.get_max_batch_size()), 1000))
            for kind in KINDS:
                mine = [item for item in items if item.kind == kind]
                if not mine:
                    continue
                ids = [item.id for item in mine]
                for other_kind, other in self._collections.items():  # an id moving between kinds
                    if other_kind != kind:
                        moved = other.get(ids=ids, include=[])["ids"]
                        if moved:
                            other.delete(ids=list(moved))
                for start in range(0, len(mine), batch):
                    chunk = mine[start : start + batch]
                    self._collections[kind].upsert(
                        ids=[item.id for item in chunk],
                        documents=[item.text for item in chunk],
                        metadatas=[_full_metadata(item) for item in chunk],
                    )
        return len(items)

    # -- reading ----------------------------------------------------------------------------

    def get(self, id: str) -> MemoryItem | None:
        with self._operation("read a memory"):
            return self._get(id)

    def items(self, kind: Kind | None = None, limit: int | None = None) -> list[MemoryItem]:
        """Stored items, most recently updated first."""
        kinds = self._kinds(kind)
        found: list[MemoryItem] = []
        with self._operation("list memories"):
            for k in kinds:
                result = self._collections[k].get(include=["documents", "metadatas"])
                found.extend(_items(result["ids"], result["documents"], result["metadatas"]))
        found.sort(key=lambda item: (item.updated_at, item.created_at), reverse=True)
        return found if limit is None else found[: max(0, limit)]

    def count(self, kind: Kind | None = None) -> int:
        with self._operation("count memories"):
            return sum(int(self._collections[k].count()) for k in self._kinds(kind))

    def export(self) -> list[dict[str, Any]]:
        """Every item as ``MemoryItem.to_dict()``, most recently updated first (``import_items`` takes them)."""
        return [item.to_dict() for item in self.items()]

    def search(
        self,
        query: str | None = None,
        *,
        embedding: np.ndarray | Sequence[float] | None = None,
        kinds: Iterable[Kind] = KINDS,
        k: int = 5,
        now: float | None = None,
        recency_weight: float = 0.1,
        half_life_days: float = 30.0,
        min_similarity: float = 0.0,
    ) -> list[Hit]:
        """The ``k`` best items by similarity plus a recency bonus that halves every ``half_life_days``.

        Give the query's ``embedding`` when it is at hand (the router's, for a turn): nothing is
        embedded again. Otherwise ``query`` is embedded once for all kinds.
        """
        wanted = self._kinds_list(kinds)
        if k <= 0 or not wanted:
            return []
        if half_life_days <= 0:
            raise SlmchatError(f"half_life_days must be positive, not {half_life_days}")
        vector = self._query_vector(query, embedding)
        if vector is None:
            return []
        stamp = time.time() if now is None else float(now)
        hits: list[Hit] = []
        with self._operation("search memories"):
            for kind in wanted:
                for item, similarity in self._nearest(kind, vector, max(k * 3, 10)):
                    if similarity < min_similarity:
                        continue
                    age_days = max(0.0, stamp - item.updated_at) / 86400.0
                    score = similarity + recency_weight * 0.5 ** (age_days / half_life_days)
                    hits.append(Hit(item, similarity, score))
        hits.sort(key=lambda hit: hit.score, reverse=True)
        return hits[:k]

    def nearest_facts(self, text: str, k: int = 3) -> list[Hit]:
        """The facts most similar to ``text`` (score = similarity), to decide add, update or delete."""
        if k <= 0:
            return []
        vector = self._query_vector(text, None)
        if vector is None:
            return []
        with self._operation("search facts"):
            found = self._nearest("fact", vector, k)
        return [Hit(item, similarity, similarity) for item, similarity in found]

    # -- internals --------------------------------------------------------------------------

    @contextmanager
    def _operation(self, action: str) -> Iterator[None]:
        """Serialise calls; wait (boundedly) for another process's lock; turn failures into MemoryUnavailable."""
        with self._lock:
            if self._closed:
                raise MemoryUnavailable(f"the memory store at {self.where} is closed", "open it again")
            try:
                if self._probe is not None:
                    self._probe.wait(self.timeout, self.where)
                yield
            except SlmchatError:
                raise
            except Exception as exc:
                raise _unavailable(exc, self.where, server=self.url is not None, action=action) from exc

    def _get(self, id: str) -> MemoryItem | None:
        for collection in self._collections.values():
            result = collection.get(ids=[id], include=["documents", "metadatas"])
            items = _items(result["ids"], result["documents"], result["metadatas"])
            if items:
                return items[0]
        return None

    def _nearest(self, kind: Kind, vector: np.ndarray, n: int) -> list[tuple[MemoryItem, float]]:
        result = self._collections[kind].query(
            query_embeddings=[vector], n_results=n, include=["documents", "metadatas", "distances"]
        )
        ids = result["ids"][0] if result["ids"] else []
        if not ids:
            return []
        documents = (result.get("documents") or [[]])[0]
        metadatas = (result.get("metadatas") or [[]])[0]
        distances = (result.get("distances") or [[]])[0]
        items = _items(ids, documents, metadatas)
        return [(item, 1.0 - float(distance)) for item, distance in zip(items, distances, strict=True)]

    def _query_vector(self, query: str | None, embedding: Any) -> np.ndarray | None:
        if embedding is not None:
            vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
            if vector.shape != (DIMENSIONS,) or not np.all(np.isfinite(vector)):
                raise SlmchatError(
                    f"a memory search embedding must be {DIMENSIONS} finite numbers, not shape {np.shape(embedding)}"
                )
            return vector
        if not query or not query.strip():
            return None
        return np.asarray(self.embedding_function([query])[0], dtype=np.float32)

    def _kinds(self, kind: Kind | None) -> tuple[Kind, ...]:
        if kind is None:
            return KINDS
        _check_kind(kind)
        return (kind,)

    def _kinds_list(self, kinds: Iterable[Kind]) -> list[Kind]:
        if isinstance(kinds, str):
            kinds = [cast(Kind, kinds)]
        wanted = list(dict.fromkeys(kinds))
        for kind in wanted:
            _check_kind(kind)
        return wanted

    def __repr__(self) -> str:
        return f"MemoryStore({self.where!r})"


# -- helpers ----------------------------------------------------------------------------------


def _collection(client: Any, name: str, ef: SlmchatMiniLM) -> Any:
    collection = client.get_or_create_collection(
        name, embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )
    config = collection.configuration_json or {}
    space = (config.get("hnsw") or config.get("spann") or {}).get("space", "cosine")
    if space != "cosine":
        raise MemoryUnavailable(
            f"the memory collection {name} measures {space} distance, not cosine",
            f"it was not made by slmchat: use another memory.path, {_OFF}",
        )
    return collection


def _items(ids: Sequence[str], documents: Sequence[str | None] | None, metadatas: Any) -> list[MemoryItem]:
    documents = documents or [None] * len(ids)
    metadatas = metadatas or [None] * len(ids)
    return [
        MemoryItem.from_chroma(id, text or "", dict(metadata or {}))
        for id, text, metadata in zip(ids, documents, metadatas, strict=True)
    ]


def _full_metadata(item: MemoryItem) -> dict[str, Any]:
    """Metadata that replaces a stored record's whole metadata (Chroma merges, None removes a key)."""
    return {**dict.fromkeys(_OPTIONAL_KEYS), **item.metadata()}


def _check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise SlmchatError(f"a memory's kind is fact or exchange, not {kind!r}")


def _check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise SlmchatError("a memory's text must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise SlmchatError(f"a memory's text is at most {MAX_TEXT_CHARS} characters, not {len(text)}")
    return text


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validate_rows(rows: Sequence[dict[str, Any]]) -> list[MemoryItem]:
    if not isinstance(rows, list | tuple):
        raise SlmchatError("memories to import must be a list of objects", "give what export wrote")
    items: list[MemoryItem] = []
    seen: dict[str, int] = {}
    now = time.time()
    for index, row in enumerate(rows):

        def bad(problem: str, index: int = index) -> SlmchatError:
            return SlmchatError(f"memory row {index}: {problem}", "nothing was imported; fix the row and retry")

        if not isinstance(row, dict):
            raise bad(f"expected an object, got {type(row).__name__}")
        kind = row.get("kind")
        if kind not in KINDS:
            raise bad(f"kind must be fact or exchange, not {kind!r}")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad("text is missing or empty")
        if len(text) > MAX_TEXT_CHARS:
            raise bad(f"text is {len(text)} characters, more than {MAX_TEXT_CHARS}")
        id = row.get("id")
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str) or not id.strip():
            raise bad(f"id must be a non-empty string, not {id!r}")
        if id in seen:
            raise bad(f"id {id} is also in row {seen[id]}")
        seen[id] = index
        created = row.get("created_at", now)
        if not _number(created):
            raise bad(f"created_at must be a number of seconds, not {created!r}")
        updated = row.get("updated_at", created)
        if not _number(updated):
            raise bad(f"updated_at must be a number of seconds, not {updated!r}")
        conversation_id = row.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise bad(f"conversation_id must be a string, not {conversation_id!r}")
        turn_id = row.get("turn_id")
        if turn_id is not None and (not isinstance(turn_id, int) or isinstance(turn_id, bool)):
            raise bad(f"turn_id must be an integer, not {turn_id!r}")
        source = row.get("source") or "imported"
        if not isinstance(source, str):
            raise bad(f"source must be a string, not {source!r}")
        confidence = row.get("confidence")
        if confidence is not None and (not _number(confidence) or not 0 <= confidence <= 1):
            raise bad(f"confidence must be a number from 0 to 1, not {confidence!r}")
        items.append(
            MemoryItem(
                id=id,
                kind=kind,
                text=text,
                created_at=float(created),
                updated_at=float(updated),
                conversation_id=conversation_id,
                turn_id=turn_id,
                source=source,
                confidence=None if confidence is None else float(confidence),
            )
        )
    return items


def _parse_url(url: str) -> tuple[str, int, bool]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise MemoryUnavailable(f"the memory server URL {url!r} is not valid: {exc}", _SERVER_HINT) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MemoryUnavailable(
            f"the memory server URL {url!r} is not valid", f"give it as http://host:port (memory.url), {_OFF}"
        )
    ssl = parts.scheme == "https"
    return parts.hostname, port or (443 if ssl else DEFAULT_PORT), ssl


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_SERVER_HINT = f"is it running? start one with `chroma run --path DIR --port 8000`, fix memory.url, {_OFF}"

_DAMAGED = ("file is not a database", "malformed", "(code: 26)", "(code: 11)", "not a database", "corrupt")
_LOCKED = ("database is locked", "(code: 5)", "database table is locked", "(code: 6)")
_READ_ONLY = ("readonly", "read-only", "permission denied", "(code: 8)", "unable to open database")


def _unavailable(
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
            f"move the folder away to start afresh, {_OFF}",
        )
    if any(marker in lowered for marker in _LOCKED):
        return _locked(where)
    if isinstance(exc, PermissionError) or any(marker in lowered for marker in _READ_ONLY):
        return MemoryUnavailable(
            f"cannot {'open' if opening else 'write'} the memory database at {where}: {_short(detail)}",
            f"check the folder's permissions, {_OFF}",
        )
    if isinstance(exc, OSError):
        return MemoryUnavailable(
            f"cannot use the memory database at {where}: {exc.strerror or _short(detail)}", f"check the disk, {_OFF}"
        )
    if "embedding function" in lowered:
        return MemoryUnavailable(
            f"the memory database at {where} was made with another embedding model",
            f"use another memory.path, {_OFF}",
        )
    return MemoryUnavailable(
        f"the memory database at {where} failed to {action}: {_short(detail)}",
        f"if it keeps failing, move the folder away to start afresh, {_OFF}",
    )


def _locked(where: str) -> MemoryUnavailable:
    return MemoryUnavailable(
        f"the memory database at {where} is locked by another program",
        f"close the other program using it and retry, {_OFF}",
    )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:
        pass


def _forget_failed_system(identifier: str) -> None:
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


class _LockProbe:
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
    def on(cls, file: Path) -> _LockProbe | None:
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
            _quietly(lambda: os.close(fd))
