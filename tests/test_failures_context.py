"""Issue 13, case 4: a question longer than the small model's window.

It used to be routed small (the long-context signal sat at 3,000 tokens, the window is 2,048)
and fail with "unexpected error: ValueError: Requested tokens (3031) exceed context window of
2048". Now one check measures the question against each tier's window before the model call:
it goes to the large tier with the reason, or fails before anything is stored with the size,
the limit and the three ways out. Real SmolLM2 and a real llama.cpp server.

The small window here is 512 tokens (``n_ctx``), not the shipped 2,048: the checks are the
same at any size, and a quarter of the tokens to read keeps the module near 20 s instead of 100.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slmchat.engine.events import Escalated, RouteDecided, TurnDone, TurnFailed
from slmchat.engine.session import Session
from slmchat.infra import paths
from slmchat.infra.backends.llamacpp import LlamaCppBackend
from slmchat.infra.config import Config, TierConfig
from slmchat.infra.store import Store
from slmchat.tools.registry import Toolbox
from tests.helpers import chat, free_port, serve, slmchat, write_config
from tests.helpers import small_config as shipped_config

WORDS = "the river bank holds seven quiet boats while a tall gardener counts apples near old stone walls".split()
#: SmolLM2 reads each of these words as one token: ``words(n)`` is n tokens
WAYS_OUT = ("shorten the question", "raise n_ctx ([small] options = { n_ctx = ", "or configure a [large] tier")
#: the small model's window in this module
WINDOW = 512


def words(n: int) -> str:
    return " ".join(itertools.islice(itertools.cycle(WORDS), n))


def small_config(**small: Any) -> Config:
    """The shipped small model with a ``WINDOW``-token window."""
    return shipped_config(options={"n_ctx": WINDOW}, **small)


@pytest.fixture(scope="module")
def small_backend() -> LlamaCppBackend:
    """SmolLM2 loaded with a ``WINDOW``-token window (the session-wide one has 2,048)."""
    backend = LlamaCppBackend("smollm2", {"n_ctx": WINDOW})
    asyncio.run(backend.load())
    return backend


@pytest.fixture(scope="module")
def roomy_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp server with a 2,048-token window: a large tier the question fits."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "roomy"]  # fmt: skip
    log = tmp_path_factory.mktemp("roomy") / "server.log"
    with serve(command, url + "/models", log, {"HF_HUB_OFFLINE": "1"}, timeout=90):
        yield url


def with_large(url: str, **small: Any) -> Config:
    config = small_config(**small)
    large = TierConfig(model="openai:roomy", base_url=url, max_tokens=24, temperature=0.0, seed=1)
    return config.model_copy(update={"large": large})


def run_turn(config: Config, text: str, backends: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
    """One turn's events in a session of its own (closed on the loop it ran on)."""

    async def scenario() -> list[Any]:
        async with Session(config, backends=backends, **kwargs.pop("session", {})) as session:
            return [event async for event in session.turn(text, **kwargs)]

    return asyncio.run(scenario())


def refusal(config: Config, text: str, backends: dict[str, Any] | None = None, **kwargs: Any) -> tuple[str, str]:
    """The error and fix of a turn refused before it started, so before anything was stored.

    Routing raises ``ContextOverflow`` and the session yields it as the turn's only event, a
    ``TurnFailed`` with no turn id: no answer, no stored turn.
    """
    events = run_turn(config, text, backends, **kwargs)
    assert len(events) == 1 and isinstance(events[0], TurnFailed) and events[0].turn_id is None, events
    return events[0].error, events[0].hint or ""


def stored_turns() -> list[dict[str, Any]]:
    if not paths.database_file().exists():
        return []
    store = Store(paths.database_file())
    try:
        return [turn for c in store.conversations() for turn in store.turns(c.id)]
    finally:
        store.close()


# -- the question does not fit the small tier -------------------------------------------------


def test_a_question_longer_than_the_small_window_goes_to_the_large_tier_and_says_why(
    small_backend: Any, roomy_server: str
) -> None:
    events = run_turn(with_large(roomy_server), words(700) + "\nWhich word comes first?", {"small": small_backend})
    decided, done = events[0], events[-1]
    assert isinstance(decided, RouteDecided) and isinstance(done, TurnDone), events[-1]
    assert decided.decision.tier == "large"
    assert "and the small model's window is 512, so the large tier answers" in decided.decision.reason
    assert "the question is 7" in decided.decision.reason  # counted with the model's own tokenizer
    assert done.stats.answered_by == "large" and done.stats.answer


def test_a_forced_small_turn_that_cannot_fit_fails_before_anything_is_stored(
    small_backend: Any, roomy_server: str
) -> None:
    message, hint = refusal(with_large(roomy_server), words(700), {"small": small_backend}, route="small")
    assert message.startswith("the question is 7") and "the small model's window is 512" in message
    assert "(you chose the small tier)" in message and message.endswith("nothing was saved")
    assert hint == (
        "shorten the question, raise n_ctx ([small] options = { n_ctx = 8192 }), "
        "or let the large tier answer it (--route auto or --route large)"
    )
    assert stored_turns() == []


def test_without_a_large_tier_a_pasted_megabyte_is_refused_at_once_and_not_stored(small_backend: Any) -> None:
    paste = words(200_000)  # about 1.1 MB
    message, hint = refusal(small_config(), paste, {"small": small_backend})
    assert "(no large tier is configured)" in message and "nothing was saved" in message
    assert message.startswith("the question is about ")  # sized from its bytes: not even tokenized
    assert all(way in hint for way in WAYS_OUT)
    assert stored_turns() == []


def test_a_question_too_long_for_both_tiers_names_the_large_window(small_backend: Any, llama_server: str) -> None:
    config = with_large(llama_server)
    large = config.large.model_copy(update={"context_tokens": 576})  # less than the server's 2,048
    message, hint = refusal(config.model_copy(update={"large": large}), words(700), {"small": small_backend})
    assert "the large model's window is 600" in message and "small model's window is 512" in message
    assert "use a large tier with a longer window" in hint
    assert stored_turns() == []


# -- the question fits, the answer does not ---------------------------------------------------


def test_a_tight_question_without_a_large_tier_gets_a_shorter_answer_and_says_so(small_backend: Any) -> None:
    events = run_turn(small_config(max_tokens=100), words(384) + "\nWhich word comes first?", {"small": small_backend})
    decided, done = events[0], events[-1]
    assert isinstance(done, TurnDone), done
    assert "the answer is limited to 94 tokens" in decided.decision.reason  # 512 less the 418-token prompt
    assert "tokens to fit the small model's window of 512" in decided.decision.reason
    assert done.stats.usage.prompt_tokens + done.stats.usage.completion_tokens <= WINDOW


def test_a_tight_question_goes_to_the_large_tier_when_there_is_one(small_backend: Any, roomy_server: str) -> None:
    config = with_large(roomy_server, max_tokens=100)
    events = run_turn(config, words(384) + "\nWhich word comes first?", {"small": small_backend})
    decision = events[0].decision
    assert decision.tier == "large" and isinstance(events[-1], TurnDone)
    assert "with a 100-token answer it does not fit the small model's window of 512" in decision.reason


def test_the_long_context_signal_starts_where_the_small_window_ends(small_backend: Any) -> None:
    """390 tokens is short by the configured 3,000 but more than the 512 window holds with a 256-token answer."""

    async def scenario(max_tokens: int) -> float:
        async with Session(small_config(max_tokens=max_tokens), backends={"small": small_backend}) as session:
            return (await session.preview_route(words(300))).factors["long_context"]

    assert asyncio.run(scenario(256)) > 0  # 300 words estimate to 390+ tokens > 512 - 256
    assert asyncio.run(scenario(24)) == 0


def test_near_the_window_the_small_model_is_loaded_to_count_exactly() -> None:
    """Bytes cannot tell whether 384 words fit 512 tokens with a 100-token answer; the tokenizer can."""

    async def scenario() -> tuple[str, bool]:
        async with Session(small_config(max_tokens=100)) as session:  # not loaded yet
            decision = await session.preview_route(words(384) + "\nWhich word comes first?")
            return decision.reason, session.tiers.loaded("small") is not None

    reason, loaded = asyncio.run(scenario())
    assert loaded and "the answer is limited to 94 tokens" in reason


# -- the prompt as built (tools, memory) does not fit -----------------------------------------


def station(number: int) -> Any:
    def report(city: str, day: str = "today") -> str:
        return "sunny"

    report.__name__ = f"station_{number}_weather"
    report.__doc__ = f"The weather report of station {number} for a city on a given day, in degrees and words."
    return report


def test_a_prompt_that_tools_push_over_the_window_fails_with_the_clear_error(small_backend: Any) -> None:
    """The question fits at routing; forty tool descriptions added to the prompt do not."""
    tools = Toolbox().add(*[station(n) for n in range(40)])
    question = words(300) + "\nWhat is the weather in Rome?"
    events = run_turn(small_config(), question, {"small": small_backend}, tools=True, session={"tools": tools})
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and "unexpected" not in failed.error
    assert failed.error.startswith("the prompt (question, system prompt, recalled memory and tools) is 1,")
    assert "the small model's window is 512" in failed.error and "kept in the history as a failed turn" in failed.error
    assert [t["status"] for t in stored_turns()] == ["failed"]


def test_a_prompt_that_does_not_fit_the_small_window_is_answered_large(small_backend: Any, roomy_server: str) -> None:
    """Counted at the call, not at routing (the small model was not loaded yet): the turn moves large."""
    # the small tier loads from the config, after routing; digits are a token each, three times the estimate
    events = run_turn(with_large(roomy_server), "7" * 600)
    escalated = next(e for e in events if isinstance(e, Escalated))
    assert escalated.to_tier == "large" and "the small model's window is 512" in escalated.reason
    assert isinstance(events[-1], TurnDone) and events[-1].stats.answered_by == "large"


# -- the faces --------------------------------------------------------------------------------


def test_the_chat_says_what_does_not_fit_and_goes_on(small_backend: Any) -> None:
    session = Session(small_config(), backends={"small": small_backend})
    printed = chat(session, words(700) + "\nWhat is the capital of France?\n/quit\n")
    assert "error: the question is 7" in printed and "  fix: shorten the question" in printed
    assert [(t["user_text"], t["status"]) for t in stored_turns()] == [("What is the capital of France?", "ok")]


# -- the real CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", ['[small]\nmodel = "llamacpp:smollm2"\n', None], ids=["no-large", "route-small"])
def test_the_cli_says_what_does_not_fit_in_two_lines_and_stores_nothing(
    tmp_path: Path, roomy_server: str, config: str | None
) -> None:
    args = ["ask", "--new"]
    if config is None:  # a large tier, but the user chose small
        config = f'[small]\nmodel = "llamacpp:smollm2"\n[large]\nmodel = "openai:roomy"\nbase_url = "{roomy_server}"\n'
        args += ["--route", "small"]
    write_config(tmp_path, config)
    result = slmchat(*args, stdin=words(3000) + "\nSummarise this.")
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 2 and "unexpected" not in result.stderr, result.stderr
    assert lines[0].startswith("error: the question is about ") and "window is 2,048" in lines[0]
    assert lines[0].endswith("nothing was saved")
    assert lines[1].startswith("  fix: shorten the question, raise n_ctx ([small] options = { n_ctx = 8192 })")
    assert result.stdout == "" and stored_turns() == []
