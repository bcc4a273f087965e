"""Memory as the engine sees it: recall before a turn, remember after it, and the user's own controls.

Storage problems never stop the chat: the first one turns memory off for the session, and
each turn says so in its stats (``memory.note``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmchat.infra.config import MemoryConfig
from slmchat.infra.errors import SlmchatError
from slmchat.memory.types import FactChange, Hit, MemoryItem, MemoryUnavailable, Recalled

if TYPE_CHECKING:  # only annotations: numpy loads when the router or the embedder first needs it
    import numpy as np

    from slmchat.infra.backends.base import CancelToken

RECALL_HEADER = "What you know from earlier conversations with the user (use it when it is relevant):"
EXCHANGE_CHARS = 600  # a stored exchange is cut to this many characters


def with_recall(block: str, question: str) -> str:
    """The user message as sent: the recalled block (if any), a blank line, then the question.

    Recall goes next to the question, not into the system prompt: the system prompt and the
    earlier messages stay byte-identical from turn to turn, so a backend's prompt cache (llama.cpp's
    KV cache, a server's prefix cache) reuses them instead of evaluating the whole prompt again.
    """
    return f"{block}\n\n{question}" if block else question


def question_of(content: str) -> str:
    """The user's own words in a user message built by ``with_recall`` (the block has no blank line)."""
    if content.startswith(RECALL_HEADER) and "\n\n" in content:
        return content.split("\n\n", 1)[1]
    return content


class Memory:
    """Long-term memory for one session: a store opened on first use, recall, extraction."""

    def __init__(self, config: MemoryConfig, opener: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._opener = opener
        self._store: Any = None
        self._opening = threading.Lock()  # a warm-up thread and the first turn may both ask for it
        self.unavailable: str | None = None  # why memory is off, after a failure
        self.hint: str | None = None

    # -- the store ------------------------------------------------------------------------

    def store(self) -> Any:
        """The open store, or None when memory is unavailable (the reason is in ``unavailable``)."""
        with self._opening:
            if self._store is None and self.unavailable is None:
                try:
                    self._store = self._opener() if self._opener else self._open_default()
                except MemoryUnavailable as exc:
                    self._fail(exc)
            return self._store

    def nothing_stored(self) -> bool:
        """True when the embedded database does not exist yet and could be made: nothing to recall.

        A first turn then needs neither Chroma (0.8 s to import) nor the database opened before its
        first token. A folder that could not be made goes through the normal open, which says why.
        """
        if self._store is not None or self._opener is not None or self.config.url or self.unavailable:
            return False
        from slmchat.infra import paths

        folder = Path(self.config.path).expanduser() if self.config.path else paths.data_dir() / "memory"
        if paths.exists(folder / "chroma.sqlite3"):
            return False
        nearest = next((p for p in (folder, *folder.parents) if paths.exists(p)), None)
        return nearest is not None and nearest.is_dir() and os.access(nearest, os.W_OK | os.X_OK)

    def close(self) -> None:
        """Close the store if it was opened; the next use opens it again."""
        with self._opening:
            store, self._store = self._store, None
        if store is not None and hasattr(store, "close"):
            store.close()

    def _open_default(self) -> Any:
        from slmchat.memory.store import MemoryStore

        return MemoryStore.open(self.config.path, self.config.url)

    def _fail(self, exc: MemoryUnavailable) -> None:
        self.unavailable, self.hint = exc.message, exc.hint
        self._store = None

    def _use(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a store method; a storage failure turns memory off instead of failing the turn."""
        store = self.store()
        if store is None:
            raise MemoryUnavailable(self.unavailable or "memory is unavailable", self.hint)
        try:
            return getattr(store, method)(*args, **kwargs)
        except MemoryUnavailable as exc:
            self._fail(exc)
            raise

    # -- recall ---------------------------------------------------------------------------

    async def recall(
        self,
        text: str,
        embedding: np.ndarray | None,
        count: Callable[[str], int],
        skip: Callable[[MemoryItem], bool] | None = None,
    ) -> Recalled:
        """The facts and exchanges most relevant to ``text`` that fit ``recall_tokens``.

        ``skip`` leaves out items the model already has in front of it (from the turns still in the
        conversation's window, or recalled there before): repeating them costs prompt tokens and
        changes nothing.
        """
        started = time.perf_counter()
        if self.nothing_stored():
            return Recalled(ms=(time.perf_counter() - started) * 1000)
        try:
            hits = await asyncio.to_thread(self.recall_hits, text, embedding, skip)
        except MemoryUnavailable as exc:
            return Recalled(note=f"memory off: {exc.message}")
        chosen, used = [], count(RECALL_HEADER)
        for hit in hits:
            cost = count(item_line(hit.item))
            if used + cost > self.config.recall_tokens:
                continue
            chosen.append(hit)
            used += cost
        return Recalled(chosen, used if chosen else 0, (time.perf_counter() - started) * 1000)

    def recall_hits(
        self, text: str, embedding: np.ndarray | None = None, skip: Callable[[MemoryItem], bool] | None = None
    ) -> list[Hit]:
        """Up to ``recall_facts`` facts, then past exchanges, to ``recall_k`` items (blocking).

        Facts get their own slots: searched together, the many raw exchanges crowded them out
        (Recall@5 of the right fact 0.855 merged, 0.961 with 3 fact slots, on the recall set).
        Exchanges have a higher floor (``min_exchange_similarity``): at 0.2, "Hi there" recalled
        "Say hello." and every coffee order recalled other coffee orders (bench_recall_floor.py).
        """
        config = self.config
        settings = {"recency_weight": config.recency_weight, "half_life_days": config.half_life_days,
                    "min_similarity": config.min_similarity, "skip": skip}  # fmt: skip
        query = None if embedding is not None else text
        facts = self._use("search", query, embedding=embedding, kinds=("fact",),
                          k=min(config.recall_facts, config.recall_k), **settings)  # fmt: skip
        if len(facts) >= config.recall_k:
            return facts
        settings["min_similarity"] = max(config.min_similarity, config.min_exchange_similarity)
        exchanges = self._use("search", query, embedding=embedding, kinds=("exchange",),
                              k=config.recall_k - len(facts), **settings)  # fmt: skip
        return facts + exchanges

    @staticmethod
    def prompt_block(recalled: Recalled) -> str:
        """The text put before the question (empty when nothing was recalled): see ``with_recall``."""
        if not recalled.hits:
            return ""
        return "\n".join([RECALL_HEADER, *(item_line(hit.item) for hit in recalled.hits)])

    # -- remembering ----------------------------------------------------------------------

    async def remember_turn(
        self,
        backend: Any,
        user_text: str,
        answer: str,
        conversation_id: str,
        turn_id: int | None,
        cancel: CancelToken | None = None,
        asked: str | None = None,
    ) -> list[FactChange] | None:
        """After an answer: store the exchange, extract facts from the user's words, reconcile them.

        ``asked`` is the assistant's message just before the user's: a short reply ("Sam.") to a
        question about the user ("What's your name?") is a fact only with it.

        None when ``cancel`` stopped the extraction before any fact was stored: run it again later
        (the exchange's id comes from its turn, so storing it again keeps one copy).
        """
        from slmchat.memory.facts import extract_facts

        changes: list[FactChange] = []
        try:
            if self.config.store_exchanges and answer:
                exchange = f"User: {user_text}\nAssistant: {answer}"[:EXCHANGE_CHARS]
                await asyncio.to_thread(
                    self._use, "add", exchange, "exchange", conversation_id=conversation_id, turn_id=turn_id
                )
            if self.config.extract:
                if cancel is not None and cancel.cancelled:
                    return None  # a turn started while the exchange was stored: not a moment on the model
                found = await extract_facts(backend, user_text, question=asked, cancel=cancel)
                if cancel is not None and cancel.cancelled:
                    return None
                for fact, confidence in found:
                    changes.append(
                        await asyncio.to_thread(
                            self._store_fact, fact, confidence, conversation_id, turn_id, "extracted"
                        )
                    )
        except MemoryUnavailable:
            pass  # reported by the next turn's recall
        return changes

    def _store_fact(
        self, fact: str, confidence: float | None, conversation_id: str | None, turn_id: int | None, source: str
    ) -> FactChange:
        from slmchat.memory.reconcile import decide

        change = decide(fact, self._use("nearest_facts", fact))
        if change.action == "add":
            item = self._use("add", fact, "fact", conversation_id=conversation_id, turn_id=turn_id, source=source,
                             confidence=confidence)  # fmt: skip
            change = FactChange("add", fact, item.id, reason=change.reason)
        elif change.action == "update" and change.item_id:
            self._use("update", change.item_id, fact, confidence=confidence, source=source)
        elif change.action == "delete" and change.item_id:
            self._use("delete", [change.item_id])
        return change

    def remember(self, text: str, conversation_id: str | None = None) -> FactChange:
        """``/remember TEXT``: the user's own words become a fact (reconciled like any other)."""
        text = " ".join(text.split())
        if not text:
            raise SlmchatError("nothing to remember", "give the fact: /remember I prefer metric units")
        return self._store_fact(text, 1.0, conversation_id, None, "user")

    def facts(self, limit: int = 20) -> list[Any]:
        """The most recently updated facts."""
        return self._use("items", "fact", limit)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self._use("search", query, k=k, recency_weight=0.0)

    def forget(self, ids: list[str]) -> int:
        return self._use("delete", ids)


def item_line(item: MemoryItem) -> str:
    """The line an item takes in the recalled block (one line: its whitespace is folded)."""
    text = " ".join(item.text.split())
    return f"- {text}" if item.kind == "fact" else f"- Earlier exchange: {text}"


def recalled_lines(content: str) -> set[str]:
    """The item lines of the recalled block a user message starts with (none without one)."""
    if not content.startswith(RECALL_HEADER):
        return set()
    return set(content.split("\n\n", 1)[0].splitlines()[1:])
