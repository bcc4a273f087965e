"""Tests for the confined file search."""

from pathlib import Path

import pytest
from slmchat_files import MAX_RESULTS, ROOT_VARIABLE, search_files

from slmchat.tools import ToolUnavailable, tool_from_function


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "root"
    (folder / "notes").mkdir(parents=True)
    (folder / "todo.txt").write_text("buy milk\nCall Alice about the Budget\n")
    (folder / "notes" / "meeting.txt").write_text("budget review on Monday\nnothing else\n")
    (folder / "notes" / "ideas.md").write_text("a budget app\n")
    monkeypatch.setenv(ROOT_VARIABLE, str(folder))
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("budget password hunter2\n")
    return folder


def test_finds_lines_case_insensitively(root: Path) -> None:
    assert search_files("BUDGET") == [
        {"path": "todo.txt", "line": 2, "text": "Call Alice about the Budget"},
        {"path": "notes/meeting.txt", "line": 1, "text": "budget review on Monday"},
    ]


def test_pattern_by_name_searches_subfolders(root: Path) -> None:
    assert [m["path"] for m in search_files("budget", pattern="*.md")] == ["notes/ideas.md"]
    assert [m["path"] for m in search_files("budget", pattern="**/*.MD")] == ["notes/ideas.md"]


def test_pattern_with_folder(root: Path) -> None:
    assert [m["path"] for m in search_files("budget", pattern="notes/*")] == ["notes/ideas.md", "notes/meeting.txt"]


def test_no_match_is_empty(root: Path) -> None:
    assert search_files("zebra") == []


def test_unset_root_asks_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_VARIABLE, raising=False)
    with pytest.raises(ToolUnavailable, match=ROOT_VARIABLE):
        search_files("x")


def test_root_that_is_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ToolUnavailable, match="not a folder"):
        search_files("x")


@pytest.mark.parametrize("pattern", ["../*.txt", "../outside/*.txt", "notes/../../*.txt", "..\\*.txt"])
def test_refuses_climbing_out(root: Path, outside: Path, pattern: str) -> None:
    with pytest.raises(ValueError, match=r"\.\."):
        search_files("password", pattern=pattern)


@pytest.mark.parametrize("pattern", ["/etc/*", "~/*.txt", "C:\\Windows\\*.txt", "C:*.txt"])
def test_refuses_absolute_patterns(root: Path, pattern: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        search_files("root", pattern=pattern)


def test_symlinked_file_outside_is_skipped(root: Path, outside: Path) -> None:
    (root / "link.txt").symlink_to(outside / "secret.txt")
    assert search_files("password") == []


def test_symlinked_folder_outside_is_skipped(root: Path, outside: Path) -> None:
    (root / "linked").symlink_to(outside, target_is_directory=True)
    assert search_files("password", pattern="*") == []
    assert search_files("password", pattern="linked/*") == []


def test_symlink_inside_root_is_followed(root: Path) -> None:
    (root / "alias.txt").symlink_to(root / "todo.txt")
    assert [m["path"] for m in search_files("milk")] == ["alias.txt", "todo.txt"]


def test_root_given_through_a_symlink(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shortcut").symlink_to(root, target_is_directory=True)
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "shortcut"))
    assert [m["path"] for m in search_files("milk")] == ["todo.txt"]


def test_skips_binary_and_large_files(root: Path) -> None:
    (root / "data.txt").write_bytes(b"budget\x00\x01\x02")
    (root / "big.txt").write_text("budget\n" + "x" * 1_100_000)
    assert {m["path"] for m in search_files("budget")} == {"notes/meeting.txt", "todo.txt"}


def test_skips_hidden_folders(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("budget\n")
    assert ".git/config.txt" not in {m["path"] for m in search_files("budget")}


def test_long_lines_are_trimmed_around_the_match(root: Path) -> None:
    (root / "long.txt").write_text("a" * 500 + " needle " + "b" * 500 + "\n")
    [match] = search_files("needle")
    assert len(match["text"]) == 200
    assert "needle" in match["text"]


def test_max_results_is_respected_and_capped(root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * 80)
    assert len(search_files("hit", max_results=3)) == 3
    assert len(search_files("hit", max_results=1000)) == MAX_RESULTS


@pytest.mark.parametrize(("query", "max_results"), [("", 10), ("   ", 10), ("x", 0)])
def test_bad_arguments(root: Path, query: str, max_results: int) -> None:
    with pytest.raises(ValueError):
        search_files(query, max_results=max_results)


def test_unreadable_file_is_skipped(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_bytes = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self.name == "todo.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert [m["path"] for m in search_files("budget")] == ["notes/meeting.txt"]


def test_tool_requires_approval() -> None:
    made = tool_from_function(search_files)
    assert made.spec.requires_approval
    assert made.spec.required == ["query"]
