"""The memory recall set (tests/data/memory_recall.jsonl): its cases are well formed, each dialog fact is
really stated by the customer in the turn it cites, and recall finds the right fact (no model involved).

The dialogs are Taskmaster-4 (Google, CC BY 4.0) and ABCD (ASAPP, MIT) from ../shared/data/dialogs;
tests/bench/bench_memory.py measures the same recall and the small model's answers with and without memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench.bench_memory import (
    DATA,
    dialog_exchanges,
    dialog_turns,
    fact_rows,
    fill_store,
    keyword_hit,
    load_cases,
    parse_source,
    recall_figures,
    recall_variants,
)

DIALOGS = Path(__file__).parents[2] / "shared" / "data" / "dialogs"
FIELDS = {"id", "source", "fact", "question", "answer_keywords"}
needs_dialogs = pytest.mark.skipif(not DIALOGS.is_dir(), reason=f"the shared dialogs are not at {DIALOGS}")


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return load_cases(DATA)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9%'-]+", text.lower())


def test_the_set_is_well_formed(cases: list[dict[str, Any]]) -> None:
    assert len(cases) >= 60
    assert len({case["id"] for case in cases}) == len(cases), "ids are unique"
    assert len({case["fact"] for case in cases}) == len(cases), "facts are unique"
    from_dialogs = [case for case in cases if case["source"] != "hand"]
    assert len(from_dialogs) >= 40 and len(cases) - len(from_dialogs) >= 15
    for case in cases:
        assert FIELDS <= case.keys() <= FIELDS | {"evidence"}, case["id"]
        assert all(isinstance(case[key], str) and case[key].strip() for key in FIELDS - {"answer_keywords"})
        keywords = case["answer_keywords"]
        assert isinstance(keywords, list) and keywords, case["id"]
        assert all(isinstance(k, str) and k.strip() for k in keywords), case["id"]
        assert case["question"].endswith("?"), case["id"]
        assert any(keyword_hit(k, case["fact"]) for k in keywords), f"{case['id']}: the fact states the answer"
        assert not any(keyword_hit(k, case["question"]) for k in keywords), f"{case['id']}: the question gives it"
        # a paraphrase: no run of four words in common with the fact
        fact, question = words(case["fact"]), words(case["question"])
        shared = {tuple(fact[i : i + 4]) for i in range(len(fact) - 3)} & {
            tuple(question[i : i + 4]) for i in range(len(question) - 3)
        }
        assert not shared, f"{case['id']}: the question repeats {shared}"
        parsed = parse_source(case["source"])
        if parsed is None:
            assert "evidence" not in case
        else:
            assert parsed[0] in ("taskmaster4/data_07.json", "abcd_sample/abcd_sample.json"), case["id"]
            assert case.get("evidence", "").strip(), f"{case['id']}: a dialog case quotes the customer"


@needs_dialogs
def test_each_dialog_fact_is_stated_by_the_customer_in_the_cited_turn(cases: list[dict[str, Any]]) -> None:
    dialogs = dialog_turns(DIALOGS)
    for case in cases:
        parsed = parse_source(case["source"])
        if parsed is None:
            continue
        file, conversation, turn = parsed
        turns = dialogs.get((file, conversation))
        assert turns is not None, f"{case['id']}: no conversation {conversation} in {file}"
        assert turn < len(turns), f"{case['id']}: {conversation} has no turn {turn}"
        speaker, text = turns[turn]
        assert speaker == "user", f"{case['id']}: turn {turn} is the {speaker}'s, not the customer's"
        assert case["evidence"] in text, f"{case['id']}: {case['evidence']!r} is not in {text!r}"
        assert any(keyword_hit(k, case["evidence"]) for k in case["answer_keywords"]), case["id"]


@needs_dialogs
def test_exchange_distractors_leave_out_the_cited_turns(cases: list[dict[str, Any]]) -> None:
    dialogs = dialog_turns(DIALOGS)
    cited = set()
    for case in cases:
        if (parsed := parse_source(case["source"])) is not None:
            file, conversation, turn = parsed
            cited.add((conversation, f"User: {dialogs[(file, conversation)][turn][1]}\n"))
    exchanges = dialog_exchanges(cases, DIALOGS)
    assert len(exchanges) >= 300 and all(row["kind"] == "exchange" for row in exchanges)
    for row in exchanges:
        assert not any(cid == row["conversation_id"] and row["text"].startswith(start) for cid, start in cited)


@pytest.fixture(scope="module")
def recall_store(cases: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A temp embedded store with every fact of the set and, when the dialogs are here, their exchanges."""
    from slmchat.memory.store import MemoryStore

    exchanges = dialog_exchanges(cases, DIALOGS) if DIALOGS.is_dir() else []
    store = MemoryStore.open(tmp_path_factory.mktemp("recall") / "memory", timeout=5.0)
    fill_store(store, fact_rows(cases) + exchanges)
    yield store
    store.close()


def test_recall_at_5_meets_the_target(cases: list[dict[str, Any]], recall_store: Any) -> None:
    """The engine's recall (fact slots, then exchanges), with the dialog exchanges as distractors."""
    figures = recall_figures(recall_store, cases, recall_variants()["engine"])
    missed = [miss["id"] for miss in figures["misses"] if miss["rank"] is None]
    assert figures["recall_at_5"] >= 0.9, f"Recall@5 {figures['recall_at_5']:.3f}, missed {missed}"


def test_recall_at_5_among_the_facts_alone(cases: list[dict[str, Any]], recall_store: Any) -> None:
    """The other 75 facts as the only distractors (what a fact-only recall would see)."""
    figures = recall_figures(recall_store, cases, recall_variants()["facts_only"])
    missed = [miss["id"] for miss in figures["misses"] if miss["rank"] is None]
    assert figures["recall_at_5"] >= 0.9, f"Recall@5 {figures['recall_at_5']:.3f}, missed {missed}"
