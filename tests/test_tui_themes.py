"""The terminal app's themes: the shipped ones, the user's own files, the saved choice, NO_COLOR, the wheel."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import Theme
from textual.widgets import Footer, Static

from slmchat.faces.tui.themes import (
    COLOUR_FIELDS,
    DEFAULT_THEME,
    builtin_themes,
    load_themes,
    pick_theme,
    register_themes,
    save_theme_choice,
    user_themes_dir,
)
from slmchat.infra import paths
from slmchat.infra.config import load_config, write_template
from slmchat.infra.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
BUILTIN_NAMES = ["slmchat-dark", "slmchat-high-contrast", "slmchat-light"]


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of an opaque colour."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    parsed = Color.parse(colour)
    return 0.2126 * linear(parsed.r) + 0.7152 * linear(parsed.g) + 0.0722 * linear(parsed.b)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2.x contrast ratio, 1 (none) to 21 (black on white)."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def builtin(name: str) -> Theme:
    return next(theme for theme in builtin_themes() if theme.name == name)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class Host(App[None]):
    """The smallest app that shows theme colours: coloured text on a coloured block, and a footer."""

    CSS = "#block { color: $text-accent; background: $primary; height: 3; }"
    BINDINGS: ClassVar = [("ctrl+q", "quit", "Quit")]

    def __init__(self, user_dir: Path | None = None) -> None:
        super().__init__()
        self.user_dir = user_dir
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("routed to the small model", id="block")
        yield Footer()

    def on_mount(self) -> None:
        self.problems = register_themes(self, self.user_dir)
        self.theme, _warning = pick_theme(DEFAULT_THEME, list(self.available_themes))


# -- the built-ins ---------------------------------------------------------------------------------


def test_the_builtin_themes_load_from_the_package_and_differ() -> None:
    themes = builtin_themes()
    assert sorted(theme.name for theme in themes) == BUILTIN_NAMES
    palettes = {tuple(getattr(theme, field) for field in COLOUR_FIELDS) for theme in themes}
    assert len(palettes) == 3
    assert builtin("slmchat-dark").dark and builtin("slmchat-high-contrast").dark
    assert not builtin("slmchat-light").dark


def test_contrast_ratio_gives_the_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the well-known AA near miss
    assert contrast_ratio("#3b82f6", "#3b82f6") == 1


@pytest.mark.parametrize(("name", "minimum"), [("slmchat-dark", 4.5), ("slmchat-light", 4.5)])
def test_dark_and_light_text_is_readable_on_every_surface(name: str, minimum: float) -> None:
    theme = builtin(name)
    for ground in (theme.background, theme.surface, theme.panel):
        assert contrast_ratio(theme.foreground, ground) >= minimum, (theme.foreground, ground)
    for colour in ("primary", "secondary", "accent", "success", "warning", "error"):
        assert contrast_ratio(getattr(theme, colour), theme.background) >= 4.5, colour  # also used as text


def test_high_contrast_is_black_and_white_and_every_colour_reaches_aaa() -> None:
    theme = builtin("slmchat-high-contrast")
    assert {theme.background, theme.surface, theme.panel} == {"#000000"} and theme.foreground == "#ffffff"
    for colour in ("foreground", "primary", "secondary", "accent", "success", "warning", "error"):
        assert contrast_ratio(getattr(theme, colour), theme.background) >= 7, colour
    assert contrast_ratio(theme.variables["block-cursor-foreground"], theme.variables["block-cursor-background"]) >= 7


# -- the user's own themes ---------------------------------------------------------------------------


def test_the_user_themes_folder_is_in_the_config_dir() -> None:
    assert user_themes_dir() == paths.config_dir() / "themes"


def test_no_user_folder_gives_the_builtins_and_no_problem(tmp_path: Path) -> None:
    themes, problems = load_themes(tmp_path / "absent")
    assert [theme.name for theme in themes] == BUILTIN_NAMES
    assert problems == []


def test_a_user_theme_is_added_and_one_with_a_builtin_name_replaces_it() -> None:
    folder = user_themes_dir()
    write(folder, "solar.toml", 'name = "solar"\nprimary = "#b58900"\nbackground = "#002b36"\n')
    write(folder, "my-dark.toml", 'name = "slmchat-dark"\nprimary = "orange"\n[variables]\nborder = "#ff8800 50%"\n')
    write(folder, "unnamed.toml", 'primary = "#123456"\n')  # the name comes from the file

    themes, problems = load_themes()

    assert problems == []
    by_name = {theme.name: theme for theme in themes}
    assert sorted(by_name) == [*BUILTIN_NAMES, "solar", "unnamed"]
    assert by_name["solar"].background == "#002b36"
    assert by_name["slmchat-dark"].primary == "orange"
    assert by_name["slmchat-dark"].variables == {"border": "#ff8800 50%"}


def test_bad_user_files_are_reported_in_one_line_each_and_the_others_still_load(tmp_path: Path) -> None:
    folder = tmp_path / "themes"
    write(folder, "broken.toml", 'name = "broken"\nprimary = "#ff0000\n')
    write(folder, "typo.toml", 'name = "typo"\nprimry = "#ff0000"\n')
    write(folder, "colour.toml", 'name = "colour"\nprimary = "#12"\n')
    write(folder, "no-primary.toml", 'name = "no-primary"\nbackground = "#000000"\n')
    write(folder, "flag.toml", 'name = "flag"\nprimary = "red"\ndark = "yes"\n')
    write(folder, "variable.toml", 'name = "variable"\nprimary = "red"\n[variables]\nborder = "$accent"\n')
    write(folder, "style.toml", 'name = "style"\nprimary = "red"\n[variables]\nblock-cursor-text-style = "purple"\n')
    write(folder, "fine.toml", 'name = "fine"\nprimary = "#00aa00"\n')

    themes, problems = load_themes(folder)

    assert [theme.name for theme in themes] == [*BUILTIN_NAMES, "fine"]
    assert len(problems) == 7
    assert all("\n" not in line for line in problems)
    reasons = {Path(line.split(": ", 1)[0]).name: line.split(": ", 1)[1] for line in problems}
    assert reasons["broken.toml"].startswith("not valid TOML: ")
    assert reasons["typo.toml"].startswith("unknown field 'primry' (the fields are: name, primary,")
    assert reasons["colour.toml"] == "'primary' = '#12' is not a colour (#rrggbb or a colour name)"
    assert reasons["no-primary.toml"] == "'primary' is missing (a colour: #rrggbb or a colour name)"
    assert reasons["flag.toml"] == "'dark' must be true or false"
    assert reasons["variable.toml"] == "variable 'border' = '$accent' is not a colour (#rrggbb or a colour name)"
    assert reasons["style.toml"].startswith("variable 'block-cursor-text-style' = 'purple' is not a text style")
    assert problems[0].startswith(str(folder / "broken.toml"))  # the full path: the user can open it


def test_a_file_where_the_themes_folder_should_be_is_reported(tmp_path: Path) -> None:
    themes, problems = load_themes(write(tmp_path, "themes", "not a folder"))
    assert [theme.name for theme in themes] == BUILTIN_NAMES
    assert problems == [f"{tmp_path / 'themes'}: is not a folder (theme files go in a folder of that name)"]


# -- in a running app ----------------------------------------------------------------------------------


def test_registered_themes_switch_in_a_running_app(tmp_path: Path) -> None:
    folder = tmp_path / "themes"
    write(folder, "mine.toml", 'name = "mine"\nprimary = "#b58900"\nbackground = "#002b36"\n')
    write(folder, "bad.toml", 'name = "bad"\nprimary = "red"\n[variables]\nblock-cursor-background = "notacolour"\n')

    async def scenario() -> None:
        app = Host(folder)
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.theme == "slmchat-dark"
            assert app.screen.styles.background == Color.parse(builtin("slmchat-dark").background)
            for name in (*BUILTIN_NAMES, "mine"):
                app.theme = name
                await pilot.pause()
                assert app.current_theme.name == name
            assert app.screen.styles.background == Color.parse("#002b36")
            assert "bad" not in app.available_themes
            assert len(app.problems) == 1 and "bad.toml: variable 'block-cursor-background'" in app.problems[0]

    asyncio.run(scenario())


def test_an_unknown_configured_theme_falls_back_with_a_one_line_fix() -> None:
    available = ["textual-dark", *BUILTIN_NAMES]
    assert pick_theme("slmchat-light", available) == ("slmchat-light", None)

    name, warning = pick_theme("solarised", available)

    assert name == DEFAULT_THEME
    assert warning is not None and "\n" not in warning
    assert warning.startswith("theme 'solarised' is unknown, showing 'slmchat-dark': set [tui] theme in ")
    assert f"in {paths.config_file()} " in warning and warning.endswith(f"add solarised.toml to {user_themes_dir()}")
    assert pick_theme("solarised", ["textual-dark"])[0] == "textual-dark"  # themes not registered: still a real one


# -- remembering the choice ---------------------------------------------------------------------------


def test_saving_the_choice_keeps_the_config_comments_and_keys_and_the_config_reads_it() -> None:
    config = write_template()
    before = config.read_text(encoding="utf-8")
    assert load_config().tui.theme == "slmchat-dark"

    save_theme_choice("slmchat-high-contrast")

    after = config.read_text(encoding="utf-8")
    assert after == before.replace('theme = "slmchat-dark"', 'theme = "slmchat-high-contrast"')
    assert load_config().tui.theme == "slmchat-high-contrast"


def test_saving_the_choice_creates_a_missing_config(tmp_path: Path) -> None:
    config = tmp_path / "new" / "config.toml"

    save_theme_choice("slmchat-light", config)

    assert config.read_text(encoding="utf-8") == '[tui]\ntheme = "slmchat-light"\n'
    assert load_config(config).tui.theme == "slmchat-light"


def test_saving_the_choice_next_to_only_remapped_keys() -> None:
    config = paths.config_file()
    write(config.parent, config.name, '# my keys\n[tui.keys]\nforce_large = "ctrl+l"\n')

    save_theme_choice("slmchat-light")

    loaded = load_config().tui
    assert (loaded.theme, loaded.keys) == ("slmchat-light", {"force_large": "ctrl+l"})
    assert config.read_text(encoding="utf-8").startswith("# my keys\n")


def test_saving_the_choice_into_a_broken_config_says_so_and_leaves_it_alone() -> None:
    config = paths.config_file()
    write(config.parent, config.name, "[tui\ntheme = 1\n")

    with pytest.raises(ConfigError, match=r"cannot save the theme: .*config.toml is not valid TOML") as caught:
        save_theme_choice("slmchat-light")

    assert caught.value.hint == "fix the file"
    assert config.read_text(encoding="utf-8") == "[tui\ntheme = 1\n"


# -- NO_COLOR -------------------------------------------------------------------------------------------


def screen_colours(svg: str) -> set[str]:
    """The colours on the terminal's cells in an exported screenshot: cell backgrounds and drawn text.

    Leaves out the window frame Rich draws around the screen (its title and coloured buttons).
    """
    backgrounds = re.findall(r'<rect fill="(#[0-9a-f]{6})"[^>]*shape-rendering="crispEdges"', svg)
    fills = dict(re.findall(r"\.(terminal-\d+-r\d+) \{[^}]*?fill: (#[0-9a-f]{6})", svg))
    drawn = re.findall(r'<text class="(terminal-\d+-r\d+)"[^>]*>([^<]*)</text>', svg)
    text = {fills[style] for style, content in drawn if html.unescape(content).strip()}
    return set(backgrounds) | text


def is_grey(colour: str) -> bool:
    parsed = Color.parse(colour)
    return parsed.r == parsed.g == parsed.b


def screenshot() -> tuple[bool, str]:
    async def scenario() -> tuple[bool, str]:
        app = Host()
        async with app.run_test(size=(60, 8)) as pilot:
            await pilot.pause()
            return app.no_color, app.export_screenshot()

    return asyncio.run(scenario())


def test_without_no_color_the_theme_colours_reach_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    no_color, svg = screenshot()
    colours = screen_colours(svg)
    assert not no_color
    assert builtin("slmchat-dark").primary in colours  # the block's background
    assert not all(is_grey(colour) for colour in colours)


def test_textual_turns_the_screen_grey_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    no_color, svg = screenshot()
    colours = screen_colours(svg)
    assert no_color
    assert len(colours) >= 3  # the block, its text, the screen: still told apart by lightness
    assert all(is_grey(colour) for colour in colours), sorted(colours)


# -- the wheel ---------------------------------------------------------------------------------------------


def test_the_wheel_ships_every_package_and_the_themes_load_from_it(tmp_path: Path) -> None:
    """Built from a copy of the source; the themes then load from the zipped wheel through importlib.resources."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("slmchat", "themes"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-wdist", "."],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (source / "dist").glob("slmchat-*.whl")

    shipped = set(zipfile.ZipFile(wheel).namelist())
    python_files = {path.relative_to(source).as_posix() for path in (source / "slmchat").rglob("*.py")}
    missing = python_files - shipped
    assert not missing, f"add their packages to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert {f"slmchat/themes/{name}.toml" for name in BUILTIN_NAMES} <= shipped
    assert "slmchat/faces/tui/app.tcss" in shipped

    probe = "import slmchat.faces.tui.themes as t; print(t.__file__); print(*(x.name for x in t.builtin_themes()))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # not the repository, whose slmchat/ would be imported instead
        env={**os.environ, "PYTHONPATH": str(wheel)},
    )
    assert loaded.returncode == 0, loaded.stderr
    module_file, names = loaded.stdout.splitlines()
    assert module_file.startswith(str(wheel))
    assert names.split() == BUILTIN_NAMES
