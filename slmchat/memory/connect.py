"""Connecting to Chroma: the embedded database or a server, and slmchat's two collections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmchat.infra.errors import SlmchatError
from slmchat.memory.chroma_guard import (
    OFF_HINT,
    LockProbe,
    forget_failed_system,
    netloc,
    parse_url,
    quietly,
    unavailable,
)
from slmchat.memory.embedding_function import SlmchatMiniLM
from slmchat.memory.types import Kind, MemoryUnavailable

COLLECTIONS: dict[Kind, str] = {"fact": "slmchat_facts", "exchange": "slmchat_exchanges"}
#: seconds a server may take to answer a request once connected
SERVER_READ_TIMEOUT = 30.0
SQLITE_FILE = "chroma.sqlite3"


def connect_embedded(folder: Path, ef: SlmchatMiniLM, timeout: float) -> tuple[Any, dict[Kind, Any], LockProbe | None]:
    """A PersistentClient on ``folder`` and its collections; the lock probe watches its file."""
    import chromadb
    from chromadb.config import Settings

    where = str(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MemoryUnavailable(
            f"cannot create the memory folder {folder}: {exc.strerror or exc}",
            f"check memory.path and its permissions, {OFF_HINT}",
        ) from exc
    probe: LockProbe | None = None
    client = None
    try:
        if (folder / SQLITE_FILE).exists():
            probe = LockProbe.on(folder / SQLITE_FILE)
            if probe is not None:
                probe.wait(timeout, where)
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        client = chromadb.PersistentClient(path=where, settings=settings)
        if probe is None:
            probe = LockProbe.on(folder / SQLITE_FILE)
        collections = {kind: collection(client, name, ef) for kind, name in COLLECTIONS.items()}
    except BaseException as exc:
        if client is not None:
            quietly(client.close)
        else:
            forget_failed_system(where)
        if probe is not None:
            probe.close()
        if isinstance(exc, SlmchatError):
            raise
        if isinstance(exc, Exception):
            raise unavailable(exc, where, server=False, opening=True) from exc
        raise
    return client, collections, probe


def connect_server(url: str, ef: SlmchatMiniLM, timeout: float) -> tuple[Any, dict[Kind, Any]]:
    """An HttpClient on ``url`` (after a heartbeat within ``timeout``) and its collections."""
    import chromadb
    import httpx
    from chromadb.config import Settings

    host, port, ssl = parse_url(url)
    base = f"{'https' if ssl else 'http'}://{netloc(host)}:{port}"
    client = None
    try:
        # Chroma's HTTP client has no timeout: see that the server answers before trusting it
        response = httpx.get(f"{base}/api/v2/heartbeat", timeout=timeout)
        response.raise_for_status()
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=Settings(anonymized_telemetry=False))
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(max(SERVER_READ_TIMEOUT, timeout), connect=timeout)
        collections = {kind: collection(client, name, ef) for kind, name in COLLECTIONS.items()}
    except SlmchatError:
        if client is not None:
            quietly(client.close)
        raise
    except Exception as exc:
        if client is not None:
            quietly(client.close)
        raise unavailable(exc, url, server=True, opening=True) from exc
    return client, collections


def collection(client: Any, name: str, ef: SlmchatMiniLM) -> Any:
    """The collection ``name`` in cosine space; one made otherwise is refused."""
    collection = client.get_or_create_collection(
        name, embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )
    config = collection.configuration_json or {}
    space = (config.get("hnsw") or config.get("spann") or {}).get("space", "cosine")
    if space != "cosine":
        raise MemoryUnavailable(
            f"the memory collection {name} measures {space} distance, not cosine",
            f"it was not made by slmchat: use another memory.path, {OFF_HINT}",
        )
    return collection
