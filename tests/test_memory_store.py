"""Long-term memory in real Chroma: embedded and server, the registered embedding function, failures."""

from __future__ import annotations

import ipaddress
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from slmchat.infra.embedding import DIMENSIONS, MiniLMEmbedder, default_embedder
from slmchat.infra.errors import ModelNotFound, SlmchatError
from slmchat.memory.embedding_function import NAME, SlmchatMiniLM, shared_embedder
from slmchat.memory.store import MemoryStore
from slmchat.memory.types import MemoryUnavailable
from tests.helpers import LOCK_HOLDER, free_port

DAY = 86400.0
FACTS = [
    "The user's favourite programming language is Rust",
    "The user lives in Lisbon",
    "The user has two cats named Miso and Tofu",
    "The user drinks green tea every morning",
    "The user is training for a marathon in April",
    "The user works as a nurse on night shifts",
    "The user is allergic to peanuts",
    "The user plays the cello in an amateur orchestra",
]
LANGUAGE_QUESTION = "Which programming language should I use for my new command-line tool?"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    opened = MemoryStore.open(tmp_path / "memory", timeout=1.0)
    yield opened
    opened.close()


# -- the embedding function -----------------------------------------------------------------


def test_embedding_function_is_registered_and_rebuilds_from_its_config() -> None:
    from chromadb.utils.embedding_functions import config_to_embedding_function, known_embedding_functions

    assert known_embedding_functions[NAME] is SlmchatMiniLM
    ef = SlmchatMiniLM()
    assert ef.name() == NAME and ef.default_space() == "cosine" and "cosine" in ef.supported_spaces()
    assert not ef.is_legacy()
    config = ef.get_config()
    assert config["max_tokens"] == 128
    rebuilt = config_to_embedding_function({"name": NAME, "config": config})
    assert isinstance(rebuilt, SlmchatMiniLM) and rebuilt.embedder is ef.embedder  # one model per process

    vectors = ef(["a short sentence", "another one"])
    assert len(vectors) == 2
    assert all(v.dtype == np.float32 and v.shape == (DIMENSIONS,) for v in vectors)
    assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-4)

    assert SlmchatMiniLM(max_tokens=default_embedder().max_tokens).embedder is default_embedder()
    assert shared_embedder(128) is ef.embedder
    with pytest.raises(ValueError, match="max_tokens"):
        SlmchatMiniLM.validate_config({"max_tokens": 9999})
    with pytest.raises(ValueError, match="embeds with"):
        SlmchatMiniLM.build_from_config({"model": "some-other-model"})
    with pytest.raises(SlmchatError, match="max_tokens"):
        SlmchatMiniLM(max_tokens=2)


def test_embedder_errors_propagate_through_the_store(tmp_path: Path) -> None:
    broken = SlmchatMiniLM(embedder=MiniLMEmbedder(model_path=tmp_path / "missing.onnx"))
    with MemoryStore.open(tmp_path / "memory", embedding_function=broken) as store:
        with pytest.raises(ModelNotFound):
            store.add("The user likes tea", "fact")
        with pytest.raises(ModelNotFound):
            store.search("tea")
        assert store.count() == 0


# -- the embedded store ---------------------------------------------------------------------


def test_default_path_is_memory_in_the_data_dir(isolated_dirs: Path) -> None:
    with MemoryStore.open() as store:
        assert store.path == (isolated_dirs / "data" / "memory").resolve()
        assert (store.path / "chroma.sqlite3").is_file()


def test_add_get_update_delete_items_count_export_import(store: MemoryStore, tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    fact = store.add("The user prefers metric units", "fact", conversation_id="c1", turn_id=3, confidence=0.9, now=t0)
    exchange = store.add("User: what is 2+2?\nAssistant: 4", "exchange", conversation_id="c1", turn_id=4, now=t0 + 10)
    other = store.add("The user has a dog called Rex", "fact", source="user", now=t0 + 20)
    assert len(fact.id) == 32 and fact.created_at == fact.updated_at == t0
    assert store.get(fact.id) == fact
    assert store.get(exchange.id) == exchange
    assert store.get("no-such-id") is None
    assert (store.count(), store.count("fact"), store.count("exchange")) == (3, 2, 1)

    updated = store.update(fact.id, "The user prefers imperial units", confidence=0.7, now=t0 + 30)
    assert updated.text == "The user prefers imperial units" and updated.confidence == 0.7
    assert (updated.created_at, updated.updated_at) == (t0, t0 + 30)
    assert (updated.conversation_id, updated.turn_id, updated.source) == ("c1", 3, "extracted")
    assert store.get(fact.id) == updated
    assert store.nearest_facts("imperial units")[0].item.id == fact.id  # re-embedded
    with pytest.raises(SlmchatError, match="no memory has the id"):
        store.update("no-such-id", "text")
    with pytest.raises(SlmchatError, match="kind"):
        store.add("text", "opinion")  # type: ignore[arg-type]
    with pytest.raises(SlmchatError, match="empty"):
        store.add("  ", "fact")

    assert [item.id for item in store.items()] == [fact.id, other.id, exchange.id]  # most recently updated first
    assert [item.id for item in store.items("fact")] == [fact.id, other.id]
    assert [item.id for item in store.items(limit=1)] == [fact.id]

    exported = store.export()
    assert exported == [item.to_dict() for item in store.items()]
    with MemoryStore.open(tmp_path / "copy") as copy:
        assert copy.import_items(json.loads(json.dumps(exported))) == 3
        assert copy.export() == exported  # ids, timestamps and provenance kept
        assert copy.import_items(exported) == 3  # again: replaced, not doubled
        assert copy.count() == 3

    assert store.delete([other.id, exchange.id, "no-such-id"]) == 2
    assert store.delete([other.id]) == 0
    assert store.delete([]) == 0
    assert (store.count(), store.get(other.id)) == (1, None)
    everything = store.search("a dog called Rex", k=10, min_similarity=-1.0)
    assert [hit.item.id for hit in everything] == [fact.id]

    path = store.path
    store.close()
    with pytest.raises(MemoryUnavailable, match="closed"):
        store.count()
    with MemoryStore.open(path) as reopened:
        assert reopened.count() == 1
        assert reopened.get(other.id) is None
        assert [h.item.id for h in reopened.search("a dog called Rex", k=10, min_similarity=-1.0)] == [fact.id]


def test_search_ranks_the_relevant_fact_first(store: MemoryStore) -> None:
    for text in FACTS:
        store.add(text, "fact")
    store.add("User: how do I boil an egg?\nAssistant: Eight minutes in boiling water.", "exchange")
    hits = store.search(LANGUAGE_QUESTION, k=3)
    assert hits[0].item.text == FACTS[0]
    assert hits[0].similarity > hits[1].similarity + 0.2
    assert store.search("Where do I live?", k=1)[0].item.text == "The user lives in Lisbon"
    assert store.search("Any tips for my pets?", kinds=("fact",), k=1)[0].item.text.startswith("The user has two cats")
    assert store.search("how long to boil an egg", kinds=("exchange",), k=5)[0].item.kind == "exchange"
    assert all(hit.similarity >= 0.3 for hit in store.search(LANGUAGE_QUESTION, min_similarity=0.3))
    assert [h.score for h in store.nearest_facts(LANGUAGE_QUESTION)] == [
        h.similarity for h in store.nearest_facts(LANGUAGE_QUESTION)
    ]
    assert store.search("", k=3) == [] and store.search(None) == []


def test_recency_breaks_ties_in_favour_of_the_newer_memory(store: MemoryStore) -> None:
    now = 1_800_000_000.0  # two exchanges with one text (the same fact twice is one record: its id is its text)
    old = store.add("The user is learning Japanese", "exchange", now=now - 60 * DAY)
    new = store.add("The user is learning Japanese", "exchange", now=now - 1 * DAY)
    hits = store.search("Which language am I learning?", k=2, now=now, recency_weight=0.1, half_life_days=30)
    assert [hit.item.id for hit in hits] == [new.id, old.id]
    assert hits[0].similarity == pytest.approx(hits[1].similarity, abs=1e-5)
    expected = 0.1 * (0.5 ** (1 / 30) - 0.5 ** (60 / 30))
    assert hits[0].score - hits[1].score == pytest.approx(expected, abs=1e-4)
    flat = store.search("Which language am I learning?", k=2, now=now, recency_weight=0.0)
    assert flat[0].score == pytest.approx(flat[1].score, abs=1e-5)


def test_search_by_embedding_reuses_it_and_matches_search_by_text(store: MemoryStore) -> None:
    for text in FACTS:
        store.add(text, "fact")
    question = "Is there any food I must avoid?"
    # the turn's embedding, as the router would have it (another embedder instance, same model and length)
    vector = MiniLMEmbedder(max_tokens=store.embedding_function.max_tokens, cache_size=0).embed_one(question)
    embedder = store.embedding_function.embedder
    runs = embedder.runs
    by_embedding = store.search(None, embedding=vector, k=3)
    assert embedder.runs == runs  # nothing embedded again
    by_text = store.search(question, k=3)
    assert embedder.runs == runs + 1
    assert [h.item.id for h in by_embedding] == [h.item.id for h in by_text]
    assert [h.similarity for h in by_embedding] == pytest.approx([h.similarity for h in by_text], abs=1e-5)
    assert by_embedding[0].item.text == "The user is allergic to peanuts"
    with pytest.raises(SlmchatError, match="384"):
        store.search(embedding=np.zeros(10, dtype=np.float32))


REOPEN_SCRIPT = textwrap.dedent(
    """
    import ipaddress, json, socket, sys

    real_connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and address[0] not in ("localhost", ""):
            if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
                raise RuntimeError(f"tried to reach the network: {address!r}")
        return real_connect(self, address)

    socket.socket.connect = guarded

    import chromadb

    client = chromadb.PersistentClient(path=sys.argv[1])
    collection = client.get_collection("slmchat_facts")
    try:
        collection.query(query_texts=[sys.argv[2]], n_results=1)
        before = "worked"
    except ValueError as exc:
        before = str(exc)

    import slmchat.memory.embedding_function  # registers slmchat-minilm-int8

    collection = client.get_collection("slmchat_facts")  # no embedding function given
    result = collection.query(query_texts=[sys.argv[2]], n_results=1, include=["documents", "distances"])
    ef = collection.configuration["embedding_function"]
    print(json.dumps({
        "before": before,
        "document": result["documents"][0][0],
        "distance": result["distances"][0][0],
        "ef": type(ef).__name__,
        "space": collection.configuration_json["hnsw"]["space"],
    }))
    """
)


def test_registered_embedding_function_survives_a_reopen_in_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "memory"
    with MemoryStore.open(path) as store:
        for text in FACTS:
            store.add(text, "fact")
        expected = store.search(LANGUAGE_QUESTION, kinds=("fact",), k=1)[0]
    script = tmp_path / "reopen.py"
    script.write_text(REOPEN_SCRIPT)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(script), str(path), LANGUAGE_QUESTION],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "slmchat-minilm-int8 not found" in answer["before"]  # plain chromadb cannot embed without it
    assert answer["ef"] == "SlmchatMiniLM" and answer["space"] == "cosine"
    assert answer["document"] == expected.item.text == FACTS[0]
    assert 1.0 - answer["distance"] == pytest.approx(expected.similarity, abs=1e-4)


# -- server mode ------------------------------------------------------------------------------


def _sockets(pid: int) -> list[tuple[str, int, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The process's TCP and UDP sockets as (table, local port, remote address), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        file = Path(f"/proc/{pid}/net/{table}")
        if not file.exists():
            continue
        for line in file.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                local_port = int(fields[1].split(":")[1], 16)
                found.append((table, local_port, _proc_address(fields[2].split(":")[0])))
    return found


def _proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # /proc prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def test_server_mode_add_search_delete(chroma_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = chroma_server
    with MemoryStore.open(url=url) as store:
        assert store.where == url and store.count() == 0
        items = [store.add(text, "fact") for text in FACTS]
        exchange = store.add("User: how do I boil an egg?\nAssistant: Eight minutes.", "exchange")
        assert store.search(LANGUAGE_QUESTION, k=1)[0].item.id == items[0].id
        updated = store.update(items[1].id, "The user moved to Porto")
        assert store.get(items[1].id) == updated
        assert store.delete([items[0].id, exchange.id]) == 2
        assert items[0].id not in [h.item.id for h in store.search(LANGUAGE_QUESTION, k=10, min_similarity=-1)]
        exported = store.export()
    if sys.platform.startswith("linux"):  # the server has reached nothing beyond loopback
        sockets = _sockets(proc.pid)
        assert any(port == int(url.rsplit(":", 1)[1]) for _, port, _ in sockets)  # its listener is seen
        assert [s for s in sockets if not (s[2].is_loopback or s[2].is_unspecified)] == []
    with MemoryStore.open(url=url + "/") as again:  # another client sees the same data
        assert again.count() == len(FACTS) - 1
        assert again.export() == exported
        proc.terminate()  # the server goes away mid-session
        proc.wait(10)
        started = time.monotonic()
        with pytest.raises(MemoryUnavailable, match=f"cannot reach the memory server at {url}/"):
            again.search(LANGUAGE_QUESTION)
        assert time.monotonic() - started < 5


def test_unreachable_server_fails_fast_and_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(MemoryUnavailable) as caught:
        MemoryStore.open(url=url, timeout=2.0)
    assert time.monotonic() - started < 5
    assert caught.value.message == f"cannot reach the memory server at {url}"
    assert "chroma run" in (caught.value.hint or "")
    with pytest.raises(MemoryUnavailable, match="not valid"):
        MemoryStore.open(url="ftp://127.0.0.1:8000")


# -- damaged and locked databases, bad imports -------------------------------------------------


def test_corrupt_database_is_reported_and_can_be_moved_away(tmp_path: Path) -> None:
    path = tmp_path / "memory"
    path.mkdir()
    (path / "chroma.sqlite3").write_bytes(os.urandom(8192))
    with pytest.raises(MemoryUnavailable) as caught:
        MemoryStore.open(path)
    assert caught.value.message == f"the memory database at {path} is damaged"
    assert "move the folder away" in (caught.value.hint or "")
    (path / "chroma.sqlite3").unlink()  # after moving it away, the same path opens afresh in this process
    with MemoryStore.open(path) as store:
        assert store.count() == 0


def test_locked_database_fails_within_the_timeout_instead_of_hanging(store: MemoryStore) -> None:
    """Chroma's engine waits forever for another process's lock, holding the GIL; the store does not.

    (The lock must come from another process: POSIX locks do not conflict within one.)
    """
    kept = store.add("The user likes jazz", "fact")
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(store.path / "chroma.sqlite3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for call in (lambda: store.add("The user likes blues", "fact"), store.count, lambda: store.search("music")):
            started = time.monotonic()
            with pytest.raises(MemoryUnavailable) as caught:
                call()
            assert time.monotonic() - started < 3
            assert caught.value.message == f"the memory database at {store.path} is locked by another program"
        with pytest.raises(MemoryUnavailable, match="locked"):
            MemoryStore.open(store.path, timeout=0.5)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert store.count() == 1  # usable again once the lock is gone
    assert store.search("music", k=1)[0].item.id == kept.id


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"kind": "opinion", "text": "x"}, "kind must be fact or exchange"),
        ({"kind": "fact", "text": "   "}, "text is missing or empty"),
        ({"kind": "fact"}, "text is missing or empty"),
        ({"kind": "fact", "text": "x" * 2001}, "more than 2000"),
        ({"kind": "fact", "text": "x", "created_at": "yesterday"}, "created_at must be a number"),
        ({"kind": "fact", "text": "x", "id": "dup"}, "id dup is also in row 0"),
        ({"kind": "fact", "text": "x", "confidence": 2}, "confidence must be a number from 0 to 1"),
        ("not an object", "expected an object"),
    ],
)
def test_import_rejects_a_malformed_row_and_writes_nothing(store: MemoryStore, row: object, problem: str) -> None:
    rows = [
        {"id": "dup", "kind": "fact", "text": "The user likes tea", "created_at": 1.0, "updated_at": 2.0},
        {"kind": "exchange", "text": "User: hi\nAssistant: hello"},
        row,
    ]
    with pytest.raises(SlmchatError) as caught:
        store.import_items(rows)  # type: ignore[arg-type]
    assert not isinstance(caught.value, MemoryUnavailable)
    assert caught.value.message.startswith("memory row 2: ") and problem in caught.value.message
    assert store.count() == 0


# -- speed --------------------------------------------------------------------------------------


def test_search_latency_with_a_thousand_items(store: MemoryStore) -> None:
    """Prints the p50 search time over ~1,000 stored items (measured, not asserted)."""
    subjects = ["Rust", "Lisbon", "cats", "green tea", "marathons", "night shifts", "peanuts", "the cello", "chess"]
    verbs = ["likes", "asked about", "is learning", "wrote about", "dislikes", "often mentions", "read a book on"]
    rows = [
        {"kind": "fact" if i % 4 else "exchange", "text": f"The user {verbs[i % 7]} {subjects[i % 9]} (note {i})"}
        for i in range(1000)
    ]
    started = time.perf_counter()
    assert store.import_items(rows) == 1000
    import_s = time.perf_counter() - started
    questions = [f"What does the user think about {subjects[i % 9]}? ({i})" for i in range(40)]
    vectors = store.embedding_function.embedder.embed(questions)
    by_embedding, by_text = [], []
    for vector in vectors:
        t = time.perf_counter()
        hits = store.search(None, embedding=vector, k=5)
        by_embedding.append(time.perf_counter() - t)
        assert len(hits) == 5
    store.embedding_function.embedder.clear_cache()
    for question in questions[:20]:
        t = time.perf_counter()
        store.search(question, k=5)
        by_text.append(time.perf_counter() - t)
    print(
        f"\nmemory search over {store.count()} items: p50 {statistics.median(by_embedding) * 1000:.1f} ms "
        f"with the turn's embedding, {statistics.median(by_text) * 1000:.1f} ms embedding the text; "
        f"import of 1000 took {import_s:.1f} s"
    )
