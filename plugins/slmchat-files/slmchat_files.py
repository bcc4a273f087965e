"""Text search confined to one folder the user chose (``FILES_TOOL_ROOT``).

The tool never reads outside that folder: patterns that climb out are refused, symlinks are
resolved and skipped when they point elsewhere, and binary or large files are ignored.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from slmchat.tools import ToolUnavailable, tool

ROOT_VARIABLE = "FILES_TOOL_ROOT"
MAX_RESULTS = 50
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 20_000  # files looked at per search, so a huge folder cannot stall the chat
LINE_CHARS = 200


@tool(requires_approval=True)
def search_files(query: str, pattern: str = "*.txt", max_results: int = 10) -> list[dict[str, str | int]]:
    """Search the user's notes and text files for a word or phrase, and return the matching lines.

    Looks in the one folder the user allowed, case-insensitively. Returns a list of {"path", "line", "text"};
    pattern picks files, like "*.md" or "notes/*.txt".

    ``pattern`` without "/" matches file names in every subfolder; with "/" it matches paths from the folder's top.
    ``max_results`` is capped at 50; paths are relative to the folder named by ``FILES_TOOL_ROOT``.
    """
    root = allowed_root()
    needle = query.strip().lower()
    if not needle:
        raise ValueError("query is empty; give the text to look for")
    glob = _checked_pattern(pattern)
    if max_results < 1:
        raise ValueError("max_results must be at least 1")
    limit = min(max_results, MAX_RESULTS)
    matches: list[dict[str, str | int]] = []
    for path, relative in _candidates(root, glob):
        for number, line in _matching_lines(path, needle):
            matches.append({"path": relative, "line": number, "text": _excerpt(line, needle)})
            if len(matches) >= limit:
                return matches
    return matches


def allowed_root() -> Path:
    """The folder named by ``FILES_TOOL_ROOT``, resolved; ``ToolUnavailable`` when unset or missing."""
    value = os.environ.get(ROOT_VARIABLE, "").strip()
    if not value:
        raise ToolUnavailable(f"no folder is allowed: the user must set {ROOT_VARIABLE} to the folder to search")
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise ToolUnavailable(f"{ROOT_VARIABLE} names {value!r}, which is not a folder; the user must fix it")
    return root


def _checked_pattern(pattern: str) -> str:
    text = pattern.strip().replace("\\", "/") or "*"
    if text.startswith(("/", "~")) or PureWindowsPath(pattern.strip()).anchor or PurePosixPath(text).is_absolute():
        raise ValueError(f"pattern {pattern!r} is absolute; give a file-name pattern relative to the allowed folder")
    if ".." in text.split("/"):
        raise ValueError(f"pattern {pattern!r} leaves the allowed folder; '..' is not allowed")
    while text.startswith("**/"):
        text = text[3:]
    return text.lower()


def _candidates(root: Path, glob: str) -> list[tuple[Path, str]]:
    """(real path, path relative to ``root``) of matching files whose real location is inside ``root``."""
    found: list[tuple[Path, str]] = []
    seen = 0
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES:
                return found
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if not fnmatch.fnmatchcase((relative if "/" in glob else name).lower(), glob):
                continue
            real = _real_inside(path, root)
            if real is not None:
                found.append((real, relative))
    return found


def _real_inside(path: Path, root: Path) -> Path | None:
    """Where ``path`` really is (symlinks resolved), or None when that is not a file inside ``root``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # broken or looping symlink
        return None
    return real if real.is_relative_to(root) and real.is_file() else None


def _matching_lines(path: Path, needle: str) -> list[tuple[int, str]]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        data = path.read_bytes()
    except OSError:
        return []
    if b"\0" in data:  # binary
        return []
    text = data.decode("utf-8", errors="replace")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if needle in line.lower()]


def _excerpt(line: str, needle: str) -> str:
    """The line, stripped; when longer than 200 characters, the part around the match."""
    line = line.strip()
    if len(line) <= LINE_CHARS:
        return line
    at = max(line.lower().find(needle), 0)
    start = max(0, min(at - LINE_CHARS // 3, len(line) - LINE_CHARS))
    piece = line[start : start + LINE_CHARS]
    if start > 0:
        piece = "…" + piece[1:]
    if start + LINE_CHARS < len(line):
        piece = piece[:-1] + "…"
    return piece
