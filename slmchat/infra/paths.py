"""Where slmchat keeps its files: platformdirs, overridable for tests and portable installs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import platformdirs

from slmchat.infra.errors import SlmchatError

APP = "slmchat"

#: the environment variable that moves each folder, named in fixes
_OVERRIDE = {"data": "SLMCHAT_DATA_DIR", "config": "SLMCHAT_CONFIG_DIR"}


def config_dir() -> Path:
    """``SLMCHAT_CONFIG_DIR`` or the platform's user config dir."""
    return Path(os.environ.get("SLMCHAT_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    """``SLMCHAT_DATA_DIR`` or the platform's user data dir."""
    return Path(os.environ.get("SLMCHAT_DATA_DIR") or platformdirs.user_data_dir(APP))


def config_file() -> Path:
    """``SLMCHAT_CONFIG`` (a file path) or ``config.toml`` in the config dir."""
    explicit = os.environ.get("SLMCHAT_CONFIG")
    return Path(explicit) if explicit else config_dir() / "config.toml"


def database_file() -> Path:
    return data_dir() / "slmchat.db"


def ensure_dir(path: Path, what: str = "data") -> Path:
    """Create the folder ``path`` (and its parents) for slmchat's ``what`` ("data" or "config").

    A file where the folder should be, a full or read-only disk, or a missing permission is a
    ``SlmchatError`` that says which and how to fix it, never an ``OSError`` traceback.
    """
    check_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # made a file by someone else just now
        check_dir(path, what)
        raise
    except OSError as exc:
        raise os_problem(exc, path, f"cannot create the {what} folder", what) from exc
    return path


def check_dir(path: Path, what: str = "data") -> None:
    """Refuse a file where the folder ``path`` (or one of its parents) should be; creates nothing."""
    blocker = next((p for p in (path, *path.parents) if exists(p) and not p.is_dir()), None)
    if blocker is not None:
        raise SlmchatError(
            f"{blocker} is a file, but slmchat keeps its {what} in a folder there",
            f"move the file aside, or set {_OVERRIDE.get(what, 'SLMCHAT_DATA_DIR')} to another folder",
        )


def exists(path: Path) -> bool:
    """``path.exists()``, but False where a folder on the way may not be entered (no PermissionError)."""
    try:
        return path.exists()
    except OSError:
        return False


def read_only_fs(path: Path) -> bool:
    """True when ``path`` (or its nearest existing parent) is on a filesystem mounted read-only."""
    existing = next((p for p in (path, *path.parents) if exists(p)), None)
    try:
        return existing is not None and bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def disk_full(path: Path) -> bool:
    """True when the filesystem holding ``path`` has no free block left for an ordinary user."""
    existing = next((p for p in (path, *path.parents) if exists(p)), None)
    try:
        return existing is not None and os.statvfs(existing).f_bavail == 0
    except OSError:
        return False


def os_problem(exc: OSError, path: Path, consequence: str, what: str = "data") -> SlmchatError:
    """An ``OSError`` met while using ``path`` as a ``SlmchatError``: what is wrong and its fix."""
    move = _OVERRIDE.get(what, "SLMCHAT_DATA_DIR")
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return SlmchatError(f"the disk holding {path} is full: {consequence}", "free some space, then try again")
    if exc.errno == errno.EROFS or read_only_fs(path):
        return SlmchatError(
            f"{path} is on a read-only filesystem: {consequence}",
            f"remount it read-write, or set {move} to a folder on a writable disk",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SlmchatError(
            f"no permission to use {path}: {consequence}",
            f"fix the owner or permissions of {path} (or its folder), or set {move} to another folder",
        )
    return SlmchatError(f"{path}: {exc.strerror or exc}: {consequence}", f"check the disk, or set {move}")
