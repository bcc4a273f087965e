"""What went wrong with the history database's file, in words, with the fix that fits it.

The disk, not the data, is at fault in each of these: full, read-only, no permission, damaged,
a folder in the file's place, or held by another process.
"""

from __future__ import annotations

import os
from pathlib import Path

from slmchat.infra import paths
from slmchat.infra.errors import SlmchatError


class StorageError(SlmchatError):
    """The history database could not be opened or written: the disk, not the data, is at fault.

    ``kind`` is one of "full", "read-only filesystem", "read-only", "permission", "damaged",
    "folder", "busy", "other"; a face may word its own fix from it.
    """

    def __init__(self, kind: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.kind = kind


def storage_error(exc: BaseException, path: Path, consequence: str) -> StorageError:
    """What went wrong with the history database at ``path``, and the fix that fits it.

    ``consequence`` says what the user lost ("this turn was not saved", "cannot open the history").
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    move = "or set SLMCHAT_DATA_DIR to another folder"
    if (
        name.startswith("SQLITE_FULL")
        or "disk is full" in text
        or (name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) and paths.disk_full(path))
    ):
        return StorageError(
            "full", f"the disk holding {path} is full: {consequence}", "free some space, then try again"
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return StorageError(
            "damaged",
            f"the history database {path} is damaged or not a database ({text})",
            "move the file aside to start a new one (nothing else is touched)",
        )
    if paths.exists(path) and path.is_dir():
        return StorageError(
            "folder", f"{path} is a folder, but slmchat keeps its history in a file there", f"move it aside, {move}"
        )
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return StorageError("busy", f"the history database {path} is busy: {consequence}", "try again in a moment")
    if isinstance(exc, OSError) and not name:
        problem = paths.os_problem(exc, path, consequence)
        kind = "full" if "is full" in problem.message else "other"
        return StorageError(kind, problem.message, problem.hint or "")
    if paths.read_only_fs(path):
        return StorageError(
            "read-only filesystem",
            f"{path} is on a read-only filesystem: {consequence}",
            f"remount it read-write, {move} on a writable disk",
        )
    folder = path.parent
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_CANTOPEN")):
        if paths.exists(path) and not os.access(path, os.R_OK | os.W_OK):
            return StorageError(
                "read-only", f"{path} is read-only: {consequence}", f"make it writable (chmod u+rw {path}), {move}"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            return StorageError(
                "permission",
                f"no permission to use {folder}: {consequence}",
                f"fix the folder's owner or permissions, {move}",
            )
    return StorageError(
        "other", f"the history database {path} failed: {text}: {consequence}", f"check the disk and the file, {move}"
    )
