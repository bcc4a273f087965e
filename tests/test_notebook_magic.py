"""``%%slm`` and ``%slm`` in IPython's ``InteractiveShell``, on scripted streams through the real engine.

The real kernel (ipykernel driven by nbclient) is in ``tests/test_notebook_kernel.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from slmchat.faces.notebook.cell_options import fill_in, parse_cell_line
from slmchat.faces.notebook.magics import SlmMagics
from slmchat.infra.errors import SlmchatError
from slmchat.testing import scripted_session

ANSWER = "Paris is the capital of France.\n\n```python\nprint('Bonjour')\n```"


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "slmchat")
    yield shell
    magics(shell).close()
    shell.user_ns.pop("ans", None)


def magics(shell: InteractiveShell) -> SlmMagics:
    return shell.magics_manager.registry["SlmMagics"]  # type: ignore[return-value]


def run(shell: InteractiveShell, source: str) -> Any:
    with capture_output() as captured:
        shell.run_cell(source)
    return captured


def test_a_cell_is_a_turn_with_the_answer_and_a_footer_and_its_stats_in_the_metadata(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magics(shell).use(scripted_session([ANSWER], data_dir=tmp_path))
    captured = run(shell, "%%slm\nWhat is the capital of France?")
    last = captured.outputs[-1]
    text = last.data["text/markdown"]
    assert text.startswith(ANSWER)
    assert "small · scripted:small" in text and "tok/s" in text and " · stays on this machine · " in text
    assert "$?" in text  # a scripted model has no price: unknown, never $0
    stats = last.metadata["slmchat"]
    assert stats["route"]["tier"] == "small" and stats["usage"]["completion_tokens"] > 0
    assert magics(shell).session.store.turns(magics(shell).session.conversation_id)[0]["answer"] == ANSWER


def test_options_code_output_route_and_history(shell: InteractiveShell, tmp_path: Path) -> None:
    session = scripted_session([ANSWER, "Second."], ["From the large tier."], data_dir=tmp_path)
    magics(shell).use(session)
    run(shell, "%%slm -f code -o ans\nWrite hello in French")
    assert shell.user_ns["ans"] == ANSWER
    assert shell.rl_next_input == "print('Bonjour')"  # the next cell's source (a kernel sends it as a payload)
    captured = run(shell, "%%slm -r large\nAnd again")
    assert captured.outputs[-1].metadata["slmchat"]["route"]["override"] == "large"
    large = session.tiers.loaded("large")
    assert [m.content for m in large.seen[0][1:3]] == ["Write hello in French", ANSWER]  # the first cell's history
    run(shell, "%%slm --no-history\nAlone")
    small = session.tiers.loaded("small")
    assert [m.role for m in small.seen[-1]] == ["system", "user"]
    assert len(session.history) == 4  # the --no-history cell is not history for the next cells


def test_variables_are_filled_in_and_unknown_names_and_escaped_braces_stay(shell: InteractiveShell) -> None:
    assert fill_in("Capital of {country}? {unknown} {{x}} {'a': 1}", {"country": "France"}) == (
        "Capital of France? {unknown} {x} {'a': 1}",
        ["country"],
    )


def test_the_cell_line_is_parsed_like_a_shell_line() -> None:
    options = parse_cell_line("'ollama/llama3.2:3b'   -r large  -f json -o result --no-memory --yes")
    assert not isinstance(options, str)
    assert (options.model, options.route, options.format, options.output) == ("ollama/llama3.2:3b", "large", "json",
                                                                               "result")  # fmt: skip
    assert options.memory is False and options.yes is True
    assert "--dry-run" in str(parse_cell_line("--help"))
    with pytest.raises(SlmchatError, match="'huge' is not one of"):
        parse_cell_line("-r huge")
    with pytest.raises(SlmchatError, match="close the quotes"):
        parse_cell_line("-m 'open")


def test_bad_input_is_one_line_with_the_fix_and_fix_shows_the_traceback(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    magics(shell).use(scripted_session(["ok"], data_dir=tmp_path))
    captured = run(shell, "%%slm -r huge\nx")
    assert (
        captured.stdout.startswith("error: Invalid value for '-r' / '--route'") and "Traceback" not in captured.stdout
    )
    assert run(shell, "%%slm\n   ").stdout == "error: the cell is empty\n  fix: write the question under %%slm\n"
    assert run(shell, "%slm bogus").stdout == "error: unknown %slm command 'bogus'\n  fix: %slm help lists them\n"
    assert "Traceback (most recent call last)" in run(shell, "%slm fix").stdout


def test_a_failed_turn_keeps_its_partial_answer_and_says_the_fix(shell: InteractiveShell, tmp_path: Path) -> None:
    from slmchat.infra.errors import BackendUnavailable

    broken = ["Half an ", "answer", BackendUnavailable("the server went away", "start it again")]
    magics(shell).use(scripted_session([broken], data_dir=tmp_path))
    captured = run(shell, "%%slm\nTell me")
    assert captured.outputs[-1].data["text/markdown"] == "Half an answer"
    assert captured.stdout == "error: the server went away\n  fix: start it again\n"


def test_dry_run_routes_and_prices_without_a_model_call(shell: InteractiveShell, tmp_path: Path) -> None:
    session = scripted_session(["never"], data_dir=tmp_path)
    magics(shell).use(session)
    out = run(shell, "%%slm --dry-run\nhello").stdout
    assert out.startswith("would run on the small tier: scripted:small") and "price: unknown" in out
    assert session.tiers.loaded("small").seen == []  # type: ignore[union-attr]


def test_line_commands_go_through_the_command_layer(shell: InteractiveShell, tmp_path: Path) -> None:
    session = scripted_session(["one", "two"], ["big"], data_dir=tmp_path)
    magics(shell).use(session)
    assert run(shell, "%slm route large").stdout == "route: large\n"
    assert session.route.value == "large"
    run(shell, "%%slm\nfirst")
    table = run(shell, "%slm stats").outputs[-1].data["text/markdown"]
    assert "| 1 | large |" in table and "1 turns, spent $0.0000" not in table and "without a known price" in table
    old = session.conversation_id
    assert run(shell, "%slm reset").stdout.startswith("new conversation ")
    assert session.conversation_id != old
    assert "alias NAME MODEL" in run(shell, "%slm help").stdout
    assert run(shell, "%slm alias fast ollama/llama3.2:3b").stdout == "fast = ollama:llama3.2:3b (for this kernel)\n"


def test_turn_stats_render_themselves_in_a_notebook(tmp_path: Path) -> None:
    with scripted_session(["Paris."], data_dir=tmp_path) as session:
        stats = session.ask("Capital of France?")
    shown = stats._repr_markdown_()
    assert shown.startswith("Paris.\n\n<sub>small · scripted:small") and "</sub>" in shown


def test_json_format_parses_the_answer_into_a_variable(shell: InteractiveShell, tmp_path: Path) -> None:
    magics(shell).use(scripted_session(['{"city": "Paris", "country": "France",'], data_dir=tmp_path))
    captured = run(shell, "%%slm -f json -o ans\nCapital of France as JSON")
    assert shell.user_ns["ans"] == {"city": "Paris", "country": "France"}  # the cut-off JSON repaired
    assert captured.outputs[-1].data["application/json"] == {"city": "Paris", "country": "France"}


def test_a_tool_that_needs_approval_runs_only_with_yes(shell: InteractiveShell, tmp_path: Path) -> None:
    from slmchat.tools import Toolbox, tool

    deleted: list[str] = []

    @tool(requires_approval=True)
    def delete_note(name: str) -> str:
        """Delete the user's saved note with this name."""
        deleted.append(name)
        return f"deleted {name}"

    call = '{"tool": "delete_note", "arguments": {"name": "old"}}'
    magics(shell).use(scripted_session([call, "Done."], data_dir=tmp_path, tools=Toolbox().add(delete_note)))
    text = run(shell, "%%slm\nDelete my old note").outputs[-1].data["text/markdown"]
    assert deleted == [] and "asks for approval: rerun the cell with --yes" in text
    magics(shell).use(scripted_session([call, "Done."], data_dir=tmp_path, tools=Toolbox().add(delete_note)))
    run(shell, "%%slm --yes\nDelete my old note")
    assert deleted == ["old"]


def test_code_format_takes_the_tagged_blocks_or_the_whole_answer(shell: InteractiveShell, tmp_path: Path) -> None:
    with_output = "Here:\n```python\nprint('hi')\n```\nOutput:\n```\nhi\n```"
    magics(shell).use(scripted_session([with_output, "def add(a, b):\n    return a + b"], data_dir=tmp_path))
    run(shell, "%%slm -f code\nPrint hi in Python")
    assert shell.rl_next_input == "print('hi')"  # not the untagged output block
    run(shell, "%%slm -f code\nAn add function")
    assert shell.rl_next_input == "def add(a, b):\n    return a + b"  # no fences: the answer is the code


def test_keys_says_where_keys_come_from_never_the_key(
    shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-abcdefghijklmnop1234"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    magics(shell).use(scripted_session(["ok"], data_dir=tmp_path))
    out = run(shell, "%slm keys").stdout
    assert "openai" in out and "key store:" in out
    assert secret not in out and secret[-6:] not in out.replace("…", "")


def test_unloading_the_extension_closes_the_kernels_session(tmp_path: Path) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "slmchat")
    session = scripted_session(["ok"], data_dir=tmp_path)
    magics(shell).use(session)
    shell.run_line_magic("unload_ext", "slmchat")
    with pytest.raises(SlmchatError, match="closed"):
        session.ask("again")
