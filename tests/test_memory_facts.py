"""Long-term facts: decide() on real MiniLM similarities, the junk guards, and extraction with the real small model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from slmchat.infra.backends.base import CancelToken, ChatBackend, GenParams, Message, StreamItem
from slmchat.infra.embedding import default_embedder
from slmchat.memory.facts import (
    FACT_SCHEMA,
    MAX_FACT_CHARS,
    clean_facts,
    extract_facts,
    has_first_person,
    third_person,
)
from slmchat.memory.reconcile import decide
from slmchat.memory.types import Hit, MemoryItem


def stored(new: str, *old_texts: str) -> list[Hit]:
    """Hits for stored facts ``old_texts``, with their real MiniLM cosine similarity to ``new``."""
    vectors = default_embedder().embed([new, *old_texts])
    hits = []
    for i, text in enumerate(old_texts, 1):
        similarity = float(vectors[0] @ vectors[i])
        hits.append(Hit(MemoryItem(f"f{i}", "fact", text, 1.0, 1.0), similarity, similarity))
    return hits


# -- decide ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "old", "action"),
    [
        # near-duplicates: the same fact said again
        ("The user has a dog called Biscuit", "The user's dog is named Biscuit", "none"),
        ("The user's dog is named Biscuit.", "The user's dog is named Biscuit", "none"),
        ("The user is called Bob", "The user's name is Bob", "none"),
        # the same attribute with a new value
        ("The user's dog is named Rex", "The user's dog is named Biscuit", "update"),
        ("The user's name is Tisha", "The user's name is Bob", "update"),
        ("The user lives in Berlin", "The user lives in Paris", "update"),
        ("The user's project deadline is 20 June", "The user's project deadline is 12 May", "update"),
        ("The user prefers imperial units", "The user prefers metric units", "update"),
        ("The user works as a teacher", "The user works as a nurse", "update"),
        ("The user drinks coffee again", "The user does not drink coffee", "update"),
        # a negation of a stored fact
        ("The user no longer has a dog", "The user's dog is named Biscuit", "delete"),
        ("The user does not like coffee anymore", "The user likes coffee", "delete"),
        ("The user no longer lives in Paris", "The user lives in Paris", "delete"),
        # a new fact, even when similar: both can be true
        ("The user likes tea", "The user lives in Paris", "add"),
        ("The user likes coffee", "The user likes tea", "add"),
        ("The user has a dog", "The user has a cat", "add"),
        ("The user speaks Spanish", "The user speaks French", "add"),
        ("The user works in Paris", "The user lives in Paris", "add"),
        ("The user's dog is 3 years old", "The user's dog is named Biscuit", "add"),
        ("The user's daughter starts school in September", "The user's daughter is named Emma", "add"),
        ("The user does not like tea", "The user likes coffee", "add"),
    ],
)
def test_decide_with_real_embeddings(new: str, old: str, action: str) -> None:
    hits = stored(new, old)
    change = decide(new, hits)
    assert change.action == action, (change, hits[0].similarity)
    assert change.fact == new
    if action in ("update", "delete"):
        assert change.item_id == "f1"
        assert change.replaced == old
    if action == "add":
        assert change.item_id is None


def test_decide_picks_the_matching_fact_among_several() -> None:
    new = "The user's dog is named Rex"
    change = decide(new, stored(new, "The user likes tea", "The user's dog is named Biscuit", "The user lives in Oslo"))
    assert (change.action, change.item_id, change.replaced) == ("update", "f2", "The user's dog is named Biscuit")


def test_decide_adds_with_nothing_stored_and_ignores_exchanges() -> None:
    assert decide("The user likes tea", []).action == "add"
    exchange = Hit(MemoryItem("x1", "exchange", "The user likes tea", 1.0, 1.0), 1.0, 1.0)
    assert decide("The user likes tea", [exchange]).action == "add"


# -- the junk guards ----------------------------------------------------------------------------------------


def reply(*facts: tuple[str, object]) -> str:
    return json.dumps({"facts": [{"fact": fact, "confidence": confidence} for fact, confidence in facts]})


def test_clean_facts_keeps_a_grounded_fact() -> None:
    assert clean_facts(reply(("The user's dog is named Biscuit", 0.9)), "My dog's name is Biscuit.") == [
        ("The user's dog is named Biscuit", 0.9)
    ]


def test_junk_guards_drop_each_kind_of_junk() -> None:
    text = "I'm a nurse in Leeds and my dog's name is Biscuit."
    raw = reply(
        ("The user is a nurse", 0.9),  # kept
        ("The user works in Leeds", 0.3),  # confidence too low
        ("The user lives in Leeds " + "and likes Leeds " * 10, 0.9),  # too long
        ("Does the user have a dog?", 0.9),  # a question
        ("The user works as a dog trainer", 0.9),  # mostly invented ("trainer", "work" are not in the text)
        ("The user has a cat called Luna", 0.9),  # copied from the prompt's example
        ("The user wants a dog named Biscuit", 0.9),  # a request, not a fact
        ("The user's name is Biscuit", 0.9),  # the dog's name, not the user's
        ("The user is a nurse.", 0.95),  # a duplicate
        ("The user's dog", "high"),  # confidence not a number
    )
    assert clean_facts(raw, text) == [("The user is a nurse", 0.9)]


def test_junk_guards_rewrite_first_person_and_names() -> None:
    raw = reply(("I live in Lisbon", 0.9), ("My favourite language is Rust", 0.8), ("The user is Priya", 0.9))
    assert clean_facts(raw, "My name is Priya, I live in Lisbon and my favourite language is Rust.") == [
        ("The user lives in Lisbon", 0.9),
        ("The user's favourite language is Rust", 0.8),
        ("The user's name is Priya", 0.9),
    ]


def test_junk_guards_survive_broken_replies() -> None:
    text = "I live in Lisbon."
    cut_off = '{"facts": [{"fact": "The user lives in Lisbon", "confidence": 0.9}, {"fact": "The us'
    assert clean_facts(cut_off, text) == [("The user lives in Lisbon", 0.9)]
    for junk in ("", "not json at all", "[1, 2]", '{"facts": "none"}', '{"facts": [3, null]}'):
        assert clean_facts(junk, text) == []


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        ("I like tea", "The user likes tea"),
        ("I'm vegetarian", "The user is vegetarian"),
        ("I have two cats", "The user has two cats"),
        ("I no longer drink coffee", "The user no longer drinks coffee"),
        ("I watch films on Sundays", "The user watches films on Sundays"),
        ("My dog is named Rex", "The user's dog is named Rex"),
        ("user prefers metric units", "The user prefers metric units"),
        ("The user lives in Oslo", "The user lives in Oslo"),
    ],
)
def test_third_person(fact: str, expected: str) -> None:
    assert third_person(fact) == expected


def test_first_person_prefilter() -> None:
    for text in ("My dog's name is Biscuit.", "I'm Jim.", "we use Django", "Call me Al, our team is small"):
        assert has_first_person(text), text
    for text in ("What is 2+2?", "yes", "Thanks, that helped!", "Crystal Minh", "Is it going to rain in Berlin?"):
        assert not has_first_person(text), text


def test_fact_schema() -> None:
    good = {"facts": [{"fact": "The user likes tea", "confidence": 0.8}]}
    jsonschema.validate(good, FACT_SCHEMA)
    too_many = {"facts": [{"fact": "x", "confidence": 1}] * 4}
    too_long = {"facts": [{"fact": "x" * (MAX_FACT_CHARS + 1), "confidence": 1}]}
    out_of_range = {"facts": [{"fact": "x", "confidence": 1.5}]}
    for bad in (too_many, too_long, out_of_range, {"facts": [{"fact": "x"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, FACT_SCHEMA)


# -- extraction with the real small model ---------------------------------------------------------------------


class Counting(ChatBackend):
    """Passes calls to the real model and counts them."""

    name = "counting"

    def __init__(self, inner: ChatBackend) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.calls: list[GenParams] = []

    async def stream(
        self, messages: list[Message], params: GenParams, cancel: CancelToken
    ) -> AsyncIterator[StreamItem]:
        self.calls.append(params)
        async for item in self.inner.stream(messages, params, cancel):
            yield item


def test_extracts_a_clear_fact(small_backend: ChatBackend) -> None:
    backend = Counting(small_backend)
    facts = asyncio.run(extract_facts(backend, "My dog's name is Biscuit."))
    assert len(backend.calls) == 1
    assert backend.calls[0].json_schema == FACT_SCHEMA
    assert (backend.calls[0].temperature, backend.calls[0].seed) == (0.0, 0)
    assert any("Biscuit" in fact for fact, _ in facts), facts
    assert all(fact.startswith("The user") and 0.0 <= confidence <= 1.0 for fact, confidence in facts)


def test_extracts_facts_from_a_longer_statement(small_backend: ChatBackend) -> None:
    facts = asyncio.run(extract_facts(small_backend, "I live in Lisbon and mostly write code in Rust."))
    assert facts and all("Rust" in fact or "Lisbon" in fact for fact, _ in facts), facts


def test_a_plain_question_gives_nothing_without_a_model_call(small_backend: ChatBackend) -> None:
    backend = Counting(small_backend)
    assert asyncio.run(extract_facts(backend, "What is 2+2?")) == []
    assert asyncio.run(extract_facts(backend, "   ")) == []
    assert backend.calls == []
