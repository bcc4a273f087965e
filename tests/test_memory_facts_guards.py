"""The precision guards of fact extraction (issue 15): whole sentences, statements only, bare answers."""

from __future__ import annotations

import json

import pytest

from slmchat.memory.facts import answer_fact, clean_facts, has_first_person, is_whole_sentence, statement_text


def reply(*facts: str) -> str:
    return json.dumps({"facts": [{"fact": fact, "confidence": 0.9} for fact in facts]})


def test_the_biscuit_fragment_is_not_stored() -> None:
    # issue 16: "My dog's name is Biscuit." stored "The user's dog's name is" (cut off)
    text = "My dog's name is Biscuit."
    assert clean_facts(reply("The user's dog's name is"), text) == []
    assert clean_facts(reply("The user's dog's name is Biscuit"), text) == [("The user's dog's name is Biscuit", 0.9)]


@pytest.mark.parametrize(
    "fact",
    ["The user's dog's name is", "The user has a", "The user's", "The user lives in", "The user's dog", "The user"],
)
def test_cut_off_facts_are_not_whole_sentences(fact: str) -> None:
    assert not is_whole_sentence(fact)


@pytest.mark.parametrize(
    "fact", ["The user is vegan", "The user's dog is named Biscuit", "The user lives in Oslo", "The user has a cat"]
)
def test_whole_sentences(fact: str) -> None:
    assert is_whole_sentence(fact)


@pytest.mark.parametrize(
    ("text", "statement"),
    [
        ("I would like a latte and my name is Tisha", "my name is Tisha"),
        ("Hi, I would like a nice hot Cappuccino. My name is Bob.", "My name is Bob"),
        ("I'm James, and I want a mocha.", "I'm James"),
        ("I live in Oslo.", "I live in Oslo"),
        ("Can you recommend a book for my son?", ""),
        ("Get me a large latte.", ""),
        ("I'll have a flat white with oat milk.", ""),
        ("I'm going to the gym later.", ""),
        ("I changed my mind and I want that to be decaf instead.", ""),
    ],
)
def test_statement_text_keeps_statements_only(text: str, statement: str) -> None:
    assert statement_text(text) == statement


def test_orders_and_questions_have_no_first_person_statement() -> None:
    for text in ("I'd like two mochas, please.", "Can I add vanilla syrup to my latte?", "Order me a pizza."):
        assert not has_first_person(statement_text(text)), text


def test_facts_must_come_from_the_statement_not_the_order() -> None:
    text = "I would like a latte and my name is Tisha"
    kept = clean_facts(reply("The user likes lattes", "The user's name is Tisha"), text)
    assert kept == [("The user's name is Tisha", 0.9)]


@pytest.mark.parametrize(
    ("question", "answer", "fact"),
    [
        ("What's your name?", "Sam.", "The user's name is Sam"),
        ("sure, may I have your name please?", "Crystal Minh", "The user's name is Crystal Minh"),
        ("What's your cat called?", "Luna", "The user's cat is named Luna"),
        ("Where do you live?", "Berlin.", "The user lives in Berlin"),
        ("What is your favourite film?", "Alien", "The user's favourite film is Alien"),
    ],
)
def test_a_bare_answer_to_a_question_about_the_user_is_a_fact(question: str, answer: str, fact: str) -> None:
    assert answer_fact(question, answer) == fact


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Is everything correct?", "Yes"),  # yes/no
        ("What's your name?", "no worries"),  # not a name
        ("Would you give me your full name or account ID?", "Alessandro Phoenix"),  # which one?
        ("What's your order?", "A latte"),  # this turn, not the user
        ("How many paragraphs should the essay have?", "Three."),  # not about the user
        ("Where do you live?", "I moved to Oslo last year and love it there"),  # a sentence: for the model
        (None, "Blue."),  # no question: a bare word is nothing
    ],
)
def test_other_answers_give_no_fact(question: str | None, answer: str) -> None:
    assert answer_fact(question, answer) is None
