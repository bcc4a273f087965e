"""The prompt-toolkit chat, driven by typed input, on the real model."""

from __future__ import annotations

import asyncio
import io

from prompt_toolkit import PromptSession
from prompt_toolkit.output import DummyOutput

from slmchat.engine.session import Session
from slmchat.faces.repl import Repl
from tests.helpers import chat, small_config


def test_a_conversation_with_commands(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    store_path = session.store.path
    printed = chat(session, "/help\nWhat is the capital of France?\n/model\n/route large\nHi\n/new\nHello\n/quit\n")

    assert "/model [NAME]" in printed  # the help text
    assert "small: llamacpp:smollm2\nlarge: (not configured)" in printed
    assert "route: large" in printed
    assert "[you chose the large tier (the router would have chosen small: score " in printed
    assert "; no large tier is configured, so it ran on the small tier]" in printed
    assert "new conversation" in printed

    from slmchat.infra.store import Store

    store = Store(store_path)
    conversations = store.conversations()
    assert [c.turns for c in conversations] == [1, 2]  # newest first: after /new, one turn
    first = store.turns(conversations[1].id)
    assert first[0]["user_text"] == "What is the capital of France?" and first[0]["answer"] in printed
    assert first[1]["route_reason"].startswith("you chose the large tier")


def test_a_tier_prefix_applies_to_one_turn(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    store_path = session.store.path
    printed = chat(session, "/large What is 2 + 2?\n/small Say hi.\nSay bye.\n/quit\n")
    assert printed.count("[you chose the large tier") == 1

    from slmchat.infra.store import Store

    store = Store(store_path)
    rows = store.turns(store.latest_conversation() or "")
    assert [r["user_text"] for r in rows] == ["What is 2 + 2?", "Say hi.", "Say bye."]
    overrides = [store.events(r["id"])[0]["decision"]["override"] for r in rows]
    assert overrides == ["large", "small", None]  # recorded with each turn; the prefix did not stick


def test_multi_line_input_and_end_of_input(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    store_path = session.store.path
    chat(session, "First line\x1b\rsecond line\r\x04")  # Esc-Enter adds a line; Ctrl-D leaves

    from slmchat.infra.store import Store

    rows = Store(store_path).turns(Store(store_path).latest_conversation() or "")
    assert rows[0]["user_text"] == "First line\nsecond line"


def test_bad_commands_and_models_do_not_end_the_chat(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    printed = chat(session, "/frobnicate\n/route sideways\n/model gpt4\n/model\n/quit\n")
    assert "unknown command /frobnicate" in printed
    assert "route is one of auto, small, large" in printed
    assert "error: model name 'gpt4' has no backend" in printed
    assert "small: llamacpp:smollm2" in printed  # the bad name changed nothing


def test_the_toolbar_shows_the_last_turns_figures(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    repl = Repl(session, PromptSession(output=DummyOutput()), io.StringIO())
    asyncio.run(repl.answer("Say hi."))
    bar = repl.toolbar()
    assert bar.startswith(" small · llamacpp:smollm2 · ") and "tok/s" in bar and "ttft" in bar


def test_judging_answers_in_the_chat(small_backend) -> None:  # type: ignore[no-untyped-def]
    session = Session(small_config(), backends={"small": small_backend})
    store_path = session.store.path
    printed = chat(session, "/good\nSay hi.\n/bad\n/quit\n")
    assert "error: there is no answer to judge yet" in printed and "noted: turn 1 was bad" in printed

    from slmchat.infra.store import Store

    assert [t["good"] for t in Store(store_path).routed_turns()] == [False]


def test_an_answer_replaced_by_the_tool_loop_ends_with_the_stored_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The tool loop may settle on other text than what streamed (here JSON with the key twice, the
    last one wins): the screen ends with the answer that was stored."""
    from slmchat.testing import scripted_session
    from slmchat.tools import Toolbox
    from tests.helpers import calculate

    reply = '{"answer": "It is 3366.", "answer": "It is 3367."}'
    session = scripted_session([reply], data_dir=tmp_path, tools=Toolbox().add(calculate))
    out = io.StringIO()
    asyncio.run(Repl(session, PromptSession(output=DummyOutput()), out).answer("What is 37 * 91?"))
    assert out.getvalue().startswith("It is 3366.\nIt is 3367.")
    assert session.history[-1].content == "It is 3367."
    session.close()


def test_after_its_first_answer_the_chat_keeps_loaded_objects_out_of_the_gc_scans(small_backend) -> None:  # type: ignore[no-untyped-def]
    """A full collection over everything loaded blocks the loop for ~50 ms (bench_loop_lag.py --freeze-gc)."""
    import gc

    gc.unfreeze()
    session = Session(small_config(), backends={"small": small_backend})
    chat(session, "/help\n/quit\n")
    assert gc.get_freeze_count() == 0  # no answer yet: nothing frozen
    chat(Session(small_config(), backends={"small": small_backend}), "Hi\n/quit\n")
    assert gc.get_freeze_count() > 1000
    gc.unfreeze()
