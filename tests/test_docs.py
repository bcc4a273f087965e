"""The docs cannot drift from the program: the command reference is the CLI's own help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]


def test_the_command_reference_is_the_clis_own_help() -> None:
    """docs/cli.md is written by cog from `slmchat … --help`; regenerate it with `cog -r docs/cli.md`."""
    check = [sys.executable, "-m", "cogapp", "--check", "docs/cli.md"]
    done = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docs/cli.md is out of date: run `cog -r docs/cli.md`\n{done.stdout}{done.stderr}"


def test_every_command_has_its_section() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in ("ask", "repl", "history show", "memory forget", "route calibrate", "eval tools", "eval routing"):
        assert f"## `slmchat {command}`" in text


# -- runnable examples ------------------------------------------------------------------------------

#: put this line right before a ```sh block in docs/ or the README to have the test run it
RUNNABLE = "<!-- runnable -->"
_FENCE = re.compile(r"```(\w*)[^\n]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Example:
    """A runnable shell block, and the output documented right after it (json or text), if any."""

    where: str  # file:line, the test's id
    commands: tuple[str, ...]
    output_kind: str | None = None
    output: str = ""


def runnable_examples() -> list[Example]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for marker in re.finditer(re.escape(RUNNABLE) + r"\s*\n", text):
            block = _FENCE.match(text, marker.end())
            assert block and block.group(1) == "sh", f"{page.name}: {RUNNABLE} must come right before a ```sh block"
            lines = [line for line in block.group(2).splitlines() if line.strip() and not line.startswith("#")]
            rest = text[block.end() :]
            after = _FENCE.match(text, block.end() + len(rest) - len(rest.lstrip()))  # the next block, if adjacent
            kind = after.group(1) if after and after.group(1) in ("json", "text") else None
            where = f"{page.relative_to(ROOT)}:{text[: marker.start()].count(chr(10)) + 1}"
            found.append(Example(where, tuple(lines), kind, after.group(2) if kind and after else ""))
    return found


EXAMPLES = runnable_examples()


def test_the_docs_have_runnable_examples() -> None:
    assert len(EXAMPLES) >= 8, [e.where for e in EXAMPLES]


@pytest.mark.memory
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_a_runnable_example_works_as_shown(example: Example, tmp_path: Path) -> None:
    """In fresh dirs, with the real embedded model: every command exits 0 without a traceback, and the
    last one prints the documented output's shape (its JSON keys, or its text lines with numbers and
    `…` free), not the model's exact words."""
    work = tmp_path / "work"
    (work / ".venv" / "bin").mkdir(parents=True)  # the README writes .venv/bin/slmchat
    program = Path(sys.executable).parent / "slmchat"
    (work / ".venv" / "bin" / "slmchat").symlink_to(program)
    env = {**os.environ, "PATH": f"{program.parent}{os.pathsep}{os.environ['PATH']}"}
    printed = ""
    for command in example.commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=150,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, f"{example.where}: `{command}` exited {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{example.where}: `{command}`\n{done.stderr}"
        printed = done.stdout
    if example.output_kind == "json":
        assert _shape(_json_values(printed)) == _shape(_json_values(example.output)), printed
    elif example.output_kind == "text":
        _assert_lines_in_order(example.output, printed)


def _json_values(text: str) -> list[Any]:
    """One JSON document, or JSON lines."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _shape(value: Any) -> Any:
    """Keys all the way down (values are the model's or the clock's): lists by their first item."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _assert_lines_in_order(documented: str, printed: str) -> None:
    """Each documented line matches a printed line, in order; `…` matches anything, a number any number."""
    lines = iter(printed.splitlines())
    for line in documented.strip().splitlines():
        parts = [re.sub(r"\d+", r"\\d+", re.escape(part)) for part in line.rstrip().split("…")]
        pattern = re.compile(".*".join(parts))
        assert any(pattern.fullmatch(out.rstrip()) for out in lines), f"no printed line like {line!r}:\n{printed}"
