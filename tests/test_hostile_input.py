"""Arbitrary bytes and text as questions, config files and memory imports, through the real CLI.

Whatever arrives, the command ends with a defined exit code, says what went wrong in one
error line (and its fix line) when it fails, never shows a traceback, and leaves the
history database intact. Each property runs a few dozen real processes, so the number of
examples is small; ``derandomize`` makes a CI failure reproducible from its output.
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLI_SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
QUIET = {"SLMCHAT_TOOLS__ENABLED": "[]", "SLMCHAT_MEMORY__ENABLED": "false", "SLMCHAT_SMALL__MAX_TOKENS": "2"}


def run(
    args: list[bytes | str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The CLI with raw bytes in and out (argv may hold bytes that are not UTF-8, as a shell can pass)."""
    return subprocess.run(
        [sys.executable, "-m", "slmchat", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=120,
        env={**os.environ, **QUIET, **(env or {})},
    )


def assert_one_clear_outcome(result: subprocess.CompletedProcess, codes: tuple[int, ...] = (0, 1)) -> None:
    """A defined exit code; on failure exactly one `error:` line (and at most its `fix:` line); no traceback."""
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode in codes, (result.returncode, err)
    assert "Traceback" not in err and "unexpected error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if result.returncode == 1:
        assert len(errors) == 1, err
        lines = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert lines[0].startswith("error:") and len(lines) <= 2, err
        assert len(lines) == 1 or lines[1].startswith("  fix: "), err
        assert len(err) < 2000, err  # a hostile value is not repeated in full
    else:
        assert not errors, err


def history(data_dir: Path) -> list[tuple[str, str]]:
    """The stored (question, status) pairs, after checking the database is intact."""
    db = sqlite3.connect(f"file:{data_dir / 'slmchat.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return list(db.execute("SELECT user_text, status FROM turns ORDER BY id"))
    finally:
        db.close()


# argv cannot hold NUL; a pipe can
argv_bytes = st.binary(min_size=1, max_size=120).filter(lambda b: b"\0" not in b)
hostile_text = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=20)
    | st.sampled_from(["\x1b]0;t\x07", "\x1b]52;c;aGk=\x07", "\x1b[2J", "\udcff", "\n"]),
    min_size=1,
    max_size=6,
).map("".join)


@pytest.mark.timeout(600)
def test_any_bytes_as_a_question_get_an_answer_or_one_clear_error(isolated_dirs: Path) -> None:
    data = isolated_dirs / "data"
    first = run(["ask", "--route", "small", "Say hi."])
    assert_one_clear_outcome(first, (0,))

    @CLI_SETTINGS
    @given(question=argv_bytes | hostile_text, piped=st.booleans())
    def ask(question: bytes | str, piped: bool) -> None:
        stored = len(history(data))
        raw = question.encode("utf-8", "surrogateescape") if isinstance(question, str) else question
        result = run(["ask", "--route", "small"], stdin=raw) if piped else run(["ask", "--route", "small", raw])
        assert_one_clear_outcome(result)
        assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout  # the answer is data, not commands
        turns = history(data)
        assert len(turns) >= stored  # nothing already saved is lost
        if result.returncode == 0:
            assert len(turns) == stored + 1 and turns[-1][1] == "ok"
            turns[-1][0].encode("utf-8")  # stored as valid UTF-8 (undecodable bytes replaced)

    ask()


toml_keys = st.sampled_from(
    [
        "route", "system_prompt", "small.model", "small.max_tokens", "small.temperature", "small.options",
        "large.model", "large.base_url", "routing.threshold", "routing.budget_usd_per_day", "memory.enabled",
        "memory.min_similarity", "tools.enabled", "tools.approve", "tui.theme", "aliases",
    ]
)  # fmt: skip
toml_values = st.recursive(
    st.none().map(lambda _: '""')
    | st.text(max_size=40).map(json.dumps)
    | st.integers().map(str)
    | st.floats(allow_nan=False).map(repr)
    | st.booleans().map(lambda b: str(b).lower()),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]")
        | st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), inner, max_size=3).map(
            lambda d: "{ " + ", ".join(f"{k} = {v}" for k, v in d.items()) + " }"
        )
    ),
    max_leaves=5,
)


def config_text(pairs: list[tuple[str, str]]) -> str:
    tables: dict[str, list[str]] = {}
    for key, value in pairs:
        table, _, name = key.rpartition(".")
        tables.setdefault(table, []).append(f"{name} = {value}")
    top = tables.pop("", [])
    return "\n".join([*top, *(f"[{t}]\n" + "\n".join(lines) for t, lines in tables.items())]) + "\n"


@pytest.mark.timeout(600)
def test_any_config_file_is_read_or_refused_in_one_line(isolated_dirs: Path) -> None:
    config = isolated_dirs / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    assert_one_clear_outcome(run(["ask", "--route", "small", "Say hi."]), (0,))
    before = history(isolated_dirs / "data")

    @CLI_SETTINGS
    @given(
        content=st.binary(max_size=200)
        | st.lists(st.tuples(toml_keys, toml_values), min_size=1, max_size=4).map(config_text).map(str.encode)
    )
    def check(content: bytes) -> None:
        config.write_bytes(content)
        shown = run(["config", "show"])
        assert_one_clear_outcome(shown)
        listed = run(["history", "list"])
        assert_one_clear_outcome(listed)
        assert history(isolated_dirs / "data") == before  # a bad config never touches the history

    check()


memory_rows = st.lists(
    st.dictionaries(
        st.sampled_from(["id", "kind", "text", "created_at", "conversation_id", "extra"]),
        st.none()
        | st.text(max_size=30)
        | st.integers()
        | st.floats(allow_nan=False)
        | st.lists(st.integers(), max_size=2),
        max_size=5,
    ),
    max_size=4,
)


@pytest.mark.timeout(600)
@pytest.mark.memory
def test_any_file_as_a_memory_import_is_imported_whole_or_refused(isolated_dirs: Path) -> None:
    source = isolated_dirs / "import.json"
    memory_on = {"SLMCHAT_MEMORY__ENABLED": "true"}

    def count() -> int:
        listed = run(["memory", "export"], env=memory_on)
        assert listed.returncode == 0, listed.stderr
        return len(json.loads(listed.stdout))

    known = count()

    @CLI_SETTINGS
    @given(content=st.binary(max_size=300) | memory_rows.map(json.dumps).map(str.encode))
    def check(content: bytes) -> None:
        nonlocal known
        source.write_bytes(content)
        result = run(["memory", "import", str(source)], env=memory_on)
        assert_one_clear_outcome(result)
        now = count()
        if result.returncode == 1:
            assert now == known  # refused: nothing written
        known = now

    check()
