"""The short-term window keeps recent whole exchanges and always the question."""

from __future__ import annotations

from slmchat.engine.window import PER_MESSAGE_OVERHEAD, fit_window
from slmchat.infra.backends.base import Message


def words(text: str) -> int:
    return len(text.split())


def history(n: int) -> list[Message]:
    out = []
    for i in range(n):
        out += [Message("user", f"question {i} " + "x " * 8), Message("assistant", f"answer {i} " + "y " * 8)]
    return out


def test_everything_fits_under_a_large_budget() -> None:
    window = fit_window("be brief", history(3), "now?", 10_000, words)
    assert [m.role for m in window.messages] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2 + [
        "user"
    ]
    assert window.dropped == 0 and window.messages[-1].content == "now?"


def test_oldest_exchanges_go_first_and_whole() -> None:
    per_exchange = 2 * (10 + PER_MESSAGE_OVERHEAD)
    fixed = (2 + PER_MESSAGE_OVERHEAD) + (1 + PER_MESSAGE_OVERHEAD)
    window = fit_window("be brief", history(5), "now?", fixed + 2 * per_exchange, words)
    contents = [m.content for m in window.messages]
    assert window.dropped == 6
    assert contents[1].startswith("question 3") and contents[3].startswith("question 4")
    assert window.tokens <= fixed + 2 * per_exchange


def test_the_question_is_kept_even_when_it_alone_is_too_long() -> None:
    question = "word " * 500
    window = fit_window("sys", history(2), question, 50, words)
    assert window.messages[-1] == Message("user", question)
    assert window.dropped == 4 and window.tokens > 50


def test_an_unanswered_question_in_history_stays_with_its_exchange() -> None:
    past = [Message("user", "interrupted one"), Message("user", "q"), Message("assistant", "a")]
    window = fit_window("", past, "now", 10_000, words)
    assert [m.content for m in window.messages] == ["interrupted one", "q", "a", "now"]
