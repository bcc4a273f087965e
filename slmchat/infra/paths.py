"""Where slmchat keeps its files: platformdirs, overridable for tests and portable installs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "slmchat"


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
