"""The start-up path of `slmchat ask` stays light (issue 14): what loading the CLI imports, and when.

Each check runs in a fresh interpreter, so modules other tests imported do not hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: heavy modules no command needs just to be parsed; each costs from 50 ms (onnxruntime) to 0.8 s (chromadb)
HEAVY = ("chromadb", "numpy", "onnxruntime", "llama_cpp", "tokenizers", "openai", "ollama", "httpx", "textual")


def _imported_after(code: str) -> set[str]:
    """The top-level packages in ``sys.modules`` after running ``code`` in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", ["import slmchat", "import slmchat.faces.cli.main", "import slmchat.__main__"])
def test_loading_the_cli_imports_no_heavy_module(code: str) -> None:
    assert not _imported_after(code) & set(HEAVY)


def test_the_cli_imports_only_the_command_that_runs() -> None:
    modules = _modules_after("import slmchat.faces.cli.main")
    commands = {m for m in modules if m.startswith("slmchat.faces.cli.")}
    assert commands == {"slmchat.faces.cli.main", "slmchat.faces.cli.ask", "slmchat.faces.cli.session_options"}


def test_every_command_is_still_listed_and_loads() -> None:
    """The lazy commands are all there: help lists them and each resolves to a click command."""
    code = (
        "import click, sys\n"
        "import slmchat.faces.cli.main\n"
        "main = sys.modules['slmchat.faces.cli.main'].main\n"
        "ctx = click.Context(main)\n"
        "names = main.list_commands(ctx)\n"
        "assert all(isinstance(main.get_command(ctx, n), click.Command) for n in names), names\n"
        "print(' '.join(names))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    expected = "ask config doctor eval feedback history keys memory models repl route stats tools"
    assert done.stdout.split() == expected.split()


def test_quick_load_is_only_for_ask_and_shares_one_onnx_session() -> None:
    """`ask` loads the embedding model unoptimised; the router's and memory's embedders share its session."""
    from slmchat.infra import embedding

    assert embedding._optimize  # the default, for chats and libraries
    short = embedding.MiniLMEmbedder(max_tokens=64)
    long = embedding.MiniLMEmbedder(max_tokens=128)
    short.load()
    long.load()
    assert short._session is long._session
    embedding.prefer_quick_load()
    try:
        quick = embedding.MiniLMEmbedder()
        quick.load()
        assert quick._session is not short._session
        text = "What is the capital of France?"
        assert abs(quick.embed_one(text) - short.embed_one(text)).max() < 1e-5
    finally:
        embedding.prefer_quick_load(False)
    assert embedding._optimize


@pytest.mark.parametrize(("route", "preloaded"), [(None, ["small"]), ("small", ["small"]), ("large", [])])
def test_ask_starts_loading_before_the_turn(route: str | None, preloaded: list[str]) -> None:
    """`ask` loads the small model beside routing and recall, not after them; a forced large turn does not."""
    import asyncio

    from slmchat.faces.cli.ask import run_turn
    from slmchat.testing import scripted_session

    session = scripted_session(["Paris."], ["Paris."])
    seen: list[str] = []
    start_loading, turn = session.start_loading, session.turn

    def spy_loading(tier: str = "small") -> object:
        seen.append(tier)
        return start_loading(tier)  # type: ignore[arg-type]

    def spy_turn(*args: object, **kwargs: object) -> object:
        seen.append("turn")
        return turn(*args, **kwargs)  # type: ignore[arg-type]

    session.start_loading, session.turn = spy_loading, spy_turn  # type: ignore[method-assign]
    assert asyncio.run(run_turn(session, "What is the capital of France?", route, True)) == 0
    assert seen == [*preloaded, "turn"]
