"""The docs cannot drift from the program: the command reference is the CLI's own help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
