"""The terminal app's themes: built-ins shipped as TOML data, plus the user's own files.

A theme file holds the fields of ``textual.theme.Theme``. The built-ins live in the package
``slmchat.themes`` (the repository's ``themes/`` folder); a user file in :func:`user_themes_dir` adds a
theme or, under a built-in's name, replaces it. A bad user file is skipped and reported in one line:
a typo in one theme must never stop the app.

``NO_COLOR`` needs nothing from slmchat: Textual 8 reads it when the ``App`` is built (any value, even
empty), sets ``app.no_color`` and passes every rendered line through a monochrome filter (each colour
becomes the grey of the same luminance, so a theme's contrast survives; a native-ANSI theme loses its
colours altogether). Stylesheets can match ``:nocolor``. The variable must be set before the app is built.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from textual.app import App
from textual.color import Color, ColorParseError
from textual.css.stylesheet import Stylesheet, StylesheetParseError
from textual.css.tokenizer import TokenError
from textual.theme import Theme

from slmchat.infra import paths
from slmchat.infra.errors import ConfigError

DEFAULT_THEME = "slmchat-dark"
BUILTIN_PACKAGE = "slmchat.themes"

COLOUR_FIELDS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "warning",
    "error",
    "success",
)
_FLAG_FIELDS = ("dark", "ansi")
_NUMBER_FIELDS = ("luminosity_spread", "text_alpha")
FIELDS = ("name", *COLOUR_FIELDS, *_FLAG_FIELDS, *_NUMBER_FIELDS, "variables")

_COLOUR_HINT = "#rrggbb or a colour name"
_STYLE_HINT = "bold, italic, underline, reverse, none, ..."
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class ThemeFileError(ValueError):
    """Why a theme file cannot be used, in one line."""


def builtin_themes() -> list[Theme]:
    """The themes shipped with slmchat, read from the package data (a broken one is a bug: it raises)."""
    folder = resources.files(BUILTIN_PACKAGE)
    files = sorted((item for item in folder.iterdir() if item.name.endswith(".toml")), key=lambda item: item.name)
    themes = []
    for item in files:
        try:
            themes.append(parse_theme(item.read_text(encoding="utf-8"), default_name=item.name.removesuffix(".toml")))
        except ThemeFileError as exc:
            raise RuntimeError(f"built-in theme {item.name}: {exc}") from None
    return themes


def user_themes_dir() -> Path:
    """Where the user's own theme files go: ``themes/`` in the slmchat config dir."""
    return paths.config_dir() / "themes"


def load_themes(user_dir: Path | None = None) -> tuple[list[Theme], list[str]]:
    """The built-ins plus every ``*.toml`` in ``user_dir`` (default :func:`user_themes_dir`), and the problems.

    A user theme with a built-in's name replaces it. Each unusable user file gives one line in the problems
    and is skipped; the others still load.
    """
    user_dir = user_themes_dir() if user_dir is None else user_dir
    themes = {theme.name: theme for theme in builtin_themes()}
    problems: list[str] = []
    if user_dir.exists() and not user_dir.is_dir():
        return list(themes.values()), [f"{user_dir}: is not a folder (theme files go in a folder of that name)"]
    for path in sorted(user_dir.glob("*.toml")) if user_dir.is_dir() else []:
        try:
            theme = parse_theme(path.read_text(encoding="utf-8"), default_name=path.stem)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})")
            continue
        except ThemeFileError as exc:
            problems.append(f"{path}: {exc}")
            continue
        themes[theme.name] = theme
    return list(themes.values()), problems


def register_themes(app: App[Any], user_dir: Path | None = None) -> list[str]:
    """Register the built-in and user themes on ``app``; return the problems of the skipped user files."""
    themes, problems = load_themes(user_dir)
    for theme in themes:
        app.register_theme(theme)
    return problems


def pick_theme(configured: str, available: list[str]) -> tuple[str, str | None]:
    """The theme to show for the configured name, and a one-line warning with the fix when it is unknown."""
    if configured in available:
        return configured, None
    fallback = DEFAULT_THEME if DEFAULT_THEME in available or not available else available[0]
    return fallback, (
        f"theme {configured!r} is unknown, showing {fallback!r}: set [tui] theme in {paths.config_file()} "
        f"to a theme the palette's Theme command lists, or add {configured}.toml to {user_themes_dir()}"
    )


def save_theme_choice(name: str, path: Path | None = None) -> None:
    """Set ``[tui] theme`` in the config file, keeping its comments, other keys and layout; create it if missing."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    path = paths.config_file() if path is None else path
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except TOMLKitError as exc:
        raise ConfigError(f"cannot save the theme: {path} is not valid TOML ({exc})", "fix the file") from None
    tui = document.get("tui")
    if tui is None:
        tui = tomlkit.table()
        document["tui"] = tui
    elif not isinstance(tui, dict):
        raise ConfigError(f"cannot save the theme: 'tui' in {path} is not a table", "make it a [tui] section")
    tui["theme"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = tomlkit.dumps(document)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def parse_theme(text: str, default_name: str) -> Theme:
    """A ``Theme`` from a theme file's text, checked the way Textual would use it; else :class:`ThemeFileError`.

    ``name`` defaults to ``default_name`` (the file's stem); ``primary`` is required.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(f"not valid TOML: {exc}") from None
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        raise ThemeFileError(f"unknown field {unknown[0]!r} (the fields are: {', '.join(FIELDS)})")
    name = data.setdefault("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError("'name' must be a non-empty string")
    if "primary" not in data:
        raise ThemeFileError(f"'primary' is missing (a colour: {_COLOUR_HINT})")
    for key in COLOUR_FIELDS:
        if key in data and not _is_colour(data[key]):
            raise ThemeFileError(f"{key!r} = {data[key]!r} is not a colour ({_COLOUR_HINT})")
    for key in _FLAG_FIELDS:
        if key in data and not isinstance(data[key], bool):
            raise ThemeFileError(f"{key!r} must be true or false")
    for key in _NUMBER_FIELDS:
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int | float)):
            raise ThemeFileError(f"{key!r} must be a number")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeFileError("'variables' must be a table ([variables] with name = \"value\" lines)")
    for variable, value in variables.items():
        _check_variable(variable, value)
    return Theme(**data)


def _is_colour(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        Color.parse(value)
    except ColorParseError:
        return False
    return True


def _check_variable(name: str, value: object) -> None:
    """Check a CSS variable as Textual's stylesheet will read it: a bad one would stop the app at theme switch.

    A variable with ``style`` in its name is a text style (``block-cursor-text-style``); any other is a colour.
    """
    if not _VARIABLE_NAME.fullmatch(name):
        raise ThemeFileError(f"variable {name!r}: a name is letters, digits, '-' and '_'")
    text_style = "style" in name.split("-")
    expected = f"a text style ({_STYLE_HINT})" if text_style else f"a colour ({_COLOUR_HINT})"
    if not isinstance(value, str):
        raise ThemeFileError(f"variable {name!r} must be a string: {expected}")
    sheet = Stylesheet(variables={name: value})
    sheet.add_source(f"Screen {{ {'text-style' if text_style else 'color'}: ${name}; }}", read_from=("theme", name))
    try:
        sheet.parse()
    except (StylesheetParseError, TokenError):
        raise ThemeFileError(f"variable {name!r} = {value!r} is not {expected}") from None
