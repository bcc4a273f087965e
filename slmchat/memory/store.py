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

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from slmchat.infra import paths
from slmchat.infra.embedding import DIMENSIONS
from slmchat.infra.errors import SlmchatError
from slmchat.memory.chroma_guard import (
    LockProbe,
    quietly,
    unavailable,
)
from slmchat.memory.connect import SQLITE_FILE, connect_embedded, connect_server
from slmchat.memory.embedding_function import SlmchatMiniLM
from slmchat.memory.rows import KINDS, check_kind, check_text, exchange_id, fact_id, full_metadata, items_from_chroma
from slmchat.memory.store_writes import BulkWrites
from slmchat.memory.types import Hit, Kind, MemoryItem, MemoryUnavailable

#: seconds to wait for another process's database lock, or for a server to answer a connection
DEFAULT_TIMEOUT = 5.0
#: rows written per Chroma call on import: embedding them takes a few seconds, so Ctrl-C is answered soon
#: and memory stays small (the ONNX model embeds them 32 at a time)
#: metadata keys that may be absent; written as None on replace so Chroma drops an old value

T = TypeVar("T")


class MemoryStore(BulkWrites):
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
        lock_probe: LockProbe | None = None,
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
        self._file = _identity(path / SQLITE_FILE) if path is not None else None

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
            client, collections = connect_server(url, ef, timeout)
            return cls(client, collections, ef, where=url, url=url, timeout=timeout)
        folder = (Path(path).expanduser() if path is not None else paths.data_dir() / "memory").resolve()
        client, collections, probe = connect_embedded(folder, ef, timeout)
        return cls(client, collections, ef, where=str(folder), path=folder, lock_probe=probe, timeout=timeout)

    def close(self) -> None:
        """Release the database (idempotent). The store cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            quietly(self._client.close)
            if self._probe is not None:
                self._probe.close()  # after Chroma's connections are gone: see LockProbe

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
        """Store a new fact or exchange.

        An exchange's id comes from its turn (``exchange_id``; a fresh uuid4 hex without one), a fact's
        from its text (``fact_id``). Both are written with upsert: a turn remembered twice (work
        resumed after an interruption) and a fact two processes both found new are stored once.
        """
        check_kind(kind)
        stamp = _stamp(now)
        text = check_text(text)
        item = MemoryItem(
            id=fact_id(text) if kind == "fact" else exchange_id(conversation_id, turn_id) or uuid.uuid4().hex,
            kind=kind,
            text=text,
            created_at=stamp,
            updated_at=stamp,
            conversation_id=conversation_id,
            turn_id=turn_id,
            source=source,
            confidence=confidence,
        )
        with self._operation("store a memory"):
            if kind == "fact":
                held = self._collections[kind].get(ids=[item.id], include=["documents"])
                if held["ids"] and fact_id((held["documents"] or [""])[0] or "") != item.id:
                    item = replace(item, id=uuid.uuid4().hex)  # that record was updated to another text: keep it
                self._collections[kind].upsert(ids=[item.id], documents=[item.text], metadatas=[full_metadata(item)])
            else:
                self._collections[kind].upsert(ids=[item.id], documents=[item.text], metadatas=[item.metadata()])
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
        text = check_text(text)
        with self._operation("update a memory"):
            old = self._get(id)
            if old is None:
                raise SlmchatError(f"no memory has the id {id}", "list memories to see their ids")
            item = MemoryItem(
                id=old.id,
                kind=old.kind,
                text=text,
                created_at=old.created_at,
                updated_at=_stamp(now),
                conversation_id=old.conversation_id if conversation_id is None else conversation_id,
                turn_id=old.turn_id if turn_id is None else turn_id,
                source=old.source if source is None else source,
                confidence=old.confidence if confidence is None else confidence,
            )
            self._collections[item.kind].update(ids=[item.id], documents=[item.text], metadatas=[full_metadata(item)])
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
                found.extend(items_from_chroma(result["ids"], result["documents"], result["metadatas"]))
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
        skip: Callable[[MemoryItem], bool] | None = None,
    ) -> list[Hit]:
        """The ``k`` best items by similarity plus a recency bonus that halves every ``half_life_days``.

        Items for which ``skip`` says True are left out (the candidates are three times ``k``).

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
        stamp = _stamp(now)
        hits: list[Hit] = []
        with self._operation("search memories"):
            for kind in wanted:
                for item, similarity in self._nearest(kind, vector, max(k * 3, 10)):
                    if similarity < min_similarity or (skip is not None and skip(item)):
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
            self._check_still_there()
            try:
                if self._probe is not None:
                    self._probe.wait(self.timeout, self.where)
                yield
            except SlmchatError:
                raise
            except Exception as exc:
                self._check_still_there()
                raise unavailable(exc, self.where, server=self.url is not None, action=action) from exc

    def _check_still_there(self) -> None:
        """MemoryUnavailable when the database file this store opened was deleted or replaced.

        Chroma keeps using a deleted file's open handle: reads go on, writes fail with "attempt to
        write a readonly database". Saying that the folder went away tells the user what happened.
        """
        if self._file is None or self.path is None:
            return
        if _identity(self.path / SQLITE_FILE) != self._file:
            raise MemoryUnavailable(
                f"the memory folder {self.path} was deleted while slmchat ran: memory is off for this session",
                "nothing to do: it starts fresh the next time slmchat starts",
            )

    def _get(self, id: str) -> MemoryItem | None:
        for collection in self._collections.values():
            result = collection.get(ids=[id], include=["documents", "metadatas"])
            items = items_from_chroma(result["ids"], result["documents"], result["metadatas"])
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
        items = items_from_chroma(ids, documents, metadatas)
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
        check_kind(kind)
        return (kind,)

    def _kinds_list(self, kinds: Iterable[Kind]) -> list[Kind]:
        if isinstance(kinds, str):
            kinds = [cast(Kind, kinds)]
        wanted = list(dict.fromkeys(kinds))
        for kind in wanted:
            check_kind(kind)
        return wanted

    def __repr__(self) -> str:
        return f"MemoryStore({self.where!r})"


# -- helpers ----------------------------------------------------------------------------------


def _identity(file: Path) -> tuple[int, int] | None:
    """The file's device and inode: a file deleted and made again is another file."""
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _stamp(now: float | None) -> float:
    """A timestamp in whole milliseconds: a Chroma server returns longer floats one digit off."""
    return round(time.time() if now is None else float(now), 3)
