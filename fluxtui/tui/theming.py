"""Themes from .tcss palettes: each palette file becomes a Textual theme.

A palette file holds TCSS variable declarations only, one or more per line:

    $primary: #5fafff;
    $dark: true;

Textual's own colour variables go into the Theme's fields; the rest (loss-raw, panel-border,
text-muted...) become theme variables that fluxtui.tcss, the widgets and Textual use.

Where themes come from:
- built-in: the top-level themes/ of the source tree, which a wheel carries as fluxtui/themes
  (pyproject maps one onto the other); named fluxtui-<file stem>.
- yours: $XDG_CONFIG_HOME/fluxtui/themes/*.tcss, then <workspace>/themes/*.tcss; named after
  the file ("solarized.tcss" -> "solarized"). A later one of the same name wins.
A broken palette is skipped and comes back as a Problem (file and line), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rich.errors import StyleSyntaxError
from rich.style import Style
from textual.color import Color, ColorParseError
from textual.theme import Theme

from fluxtui.core.problems import Problem

from . import settings

RULES_NAME = "fluxtui.tcss"


def builtin_dir() -> Path:
    """fluxtui/themes in an installed wheel; the source tree's themes/ in a checkout or an
    editable install (which maps the package, but not its data, onto the tree)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "themes", package.parent / "themes"):
        if (candidate / RULES_NAME).is_file():
            return candidate
    return package / "themes"


THEMES_DIR = builtin_dir()
RULES_FILE = THEMES_DIR / RULES_NAME
DARK, LIGHT, HIGH_CONTRAST = "fluxtui-dark", "fluxtui-light", "fluxtui-high-contrast"

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_DECLARATION = re.compile(r"\$([A-Za-z0-9_-]+)\s*:\s*([^;]*?)\s*;")
_LINE = re.compile(r"(?:\s*\$[A-Za-z0-9_-]+\s*:\s*[^;]*;)+\s*")
_THEME_FIELDS = {
    "primary",
    "secondary",
    "accent",
    "success",
    "warning",
    "error",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
}
# Values Textual's own variables take besides colours ("text: auto 87%", "link-background: initial").
_KEYWORDS = re.compile(r"(transparent|initial|inherit|auto|ansi_default)(\s+\d+%)?")
_PERCENT = re.compile(r"\s+\d+(\.\d+)?%$")

# Defaults for fluxtui's own variables, so Textual's built-in themes work too.
VARIABLE_DEFAULTS = {
    "loss-raw": "#808080",
    "loss-smooth": "#5fafff",
    "loss-other": "#ffaf5f",
    "panel-border": "#808080",  # mid grey: visible on a dark and on a light background
}


class PaletteError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass
class LoadedThemes:
    themes: list[Theme] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # one per broken palette line or file


def _problem(path: Path, message: str, line: int | None = None) -> Problem:
    return Problem(
        message,
        file=str(path),
        line=line,
        severity="warning",
        fix="write one `$name: value;` per line with a colour such as #5fafff; the theme is skipped until then",
    )


def _value_problem(key: str, value: str) -> str | None:
    """Why `$key: value;` cannot be used, or None when it can."""
    if key == "dark":
        return None if value.lower() in ("true", "false") else "`$dark` is true or false"
    if key.endswith("-style"):  # text styles: link-style, block-cursor-text-style...
        try:
            Style.parse(value)
        except StyleSyntaxError:
            return f"`${key}: {value}` is not a text style (bold, italic, underline, none...)"
        return None
    colour = value
    if key not in _THEME_FIELDS:  # Textual's variables also take "auto 87%", "#ff0000 50%", "initial"
        if _KEYWORDS.fullmatch(value):
            return None
        colour = _PERCENT.sub("", value)
    try:
        Color.parse(colour)
        return None
    except ColorParseError:
        return f"`${key}: {value}` is not a colour (#rrggbb, rgb(r,g,b) or a colour name)"


def parse_palette(path: Path) -> dict[str, str]:
    """The palette's variables; PaletteError naming every bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PaletteError([_problem(path, f"cannot read the theme: {e}")]) from e
    # blank out comments but keep their newlines, so line numbers stay the file's own
    text = _COMMENT.sub(lambda m: "\n" * m[0].count("\n"), text)
    if "/*" in text:
        raise PaletteError(
            [_problem(path, "a comment is not closed (`/*` without `*/`)", text[: text.index("/*")].count("\n") + 1)]
        )
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not _LINE.fullmatch(line):
            problems.append(_problem(path, f"not a `$name: value;` declaration: {line.strip()[:60]}", number))
            continue
        for m in _DECLARATION.finditer(line):
            key, value = m[1], m[2]
            why = _value_problem(key, value)
            if why:
                problems.append(_problem(path, why, number))
            else:
                values[key] = value
    if not problems and "primary" not in values:
        problems.append(_problem(path, "a theme needs at least `$primary`"))
    if problems:
        raise PaletteError(problems)
    return values


def theme_from_file(path: Path, name: str | None = None) -> Theme:
    """The Theme a palette describes (named fluxtui-<stem> unless `name` says otherwise)."""
    palette = parse_palette(path)
    fields = {k: v for k, v in palette.items() if k in _THEME_FIELDS}
    extra = {k: v for k, v in palette.items() if k not in _THEME_FIELDS and k != "dark"}
    theme = Theme(
        name=name or f"fluxtui-{path.stem}",
        dark=palette.get("dark", "true").lower() != "false",
        variables=extra,
        **fields,
    )
    try:
        theme.to_color_system().generate()  # what Textual does on switching to it
    except Exception as e:  # a combination the checks above let through
        raise PaletteError([_problem(path, f"Textual cannot use this theme: {e}")]) from e
    return theme


def palette_files(folder: Path = THEMES_DIR) -> list[Path]:
    """The palettes in a folder (the built-in one also holds the app's rules: not a palette)."""
    rules = RULES_FILE if folder == THEMES_DIR else None
    return sorted(p for p in folder.glob("*.tcss") if p != rules and p.is_file())


def load_themes() -> list[Theme]:
    """The built-in themes (a broken one is a bug in fluxtui: let it raise)."""
    return [theme_from_file(p) for p in palette_files()]


def user_theme_dirs(workspace_root: Path | None = None, config_dir: Path | None = None) -> list[Path]:
    dirs = [(config_dir or settings.config_dir()) / "themes"]
    if workspace_root is not None:
        dirs.append(workspace_root / "themes")
    return dirs


def load_user_themes(folders: list[Path]) -> LoadedThemes:
    """Every palette in `folders`, named after its file; broken ones skipped and reported."""
    loaded = LoadedThemes()
    for folder in folders:
        try:
            files = palette_files(folder) if folder.is_dir() else []
        except OSError as e:
            loaded.problems.append(_problem(folder, f"cannot list the themes: {e}"))
            continue
        for path in files:
            try:
                loaded.themes.append(theme_from_file(path, name=path.stem))
            except PaletteError as e:
                loaded.problems.extend(e.problems)
    return loaded
