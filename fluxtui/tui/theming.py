"""Themes from themes/*.tcss: each palette file becomes a Textual theme named fluxtui-<file stem>.

A palette file holds TCSS variable declarations only ($primary: #5fafff;). Textual's own
colour variables go into the Theme's fields; the rest (loss-raw, loss-smooth...) become
theme variables that fluxtui.tcss and the widgets use.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parents[1] / "themes"  # package data: wheels carry it
RULES_FILE = THEMES_DIR / "fluxtui.tcss"
DARK, LIGHT = "fluxtui-dark", "fluxtui-light"

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_VARIABLE = re.compile(r"^\s*\$([A-Za-z0-9_-]+)\s*:\s*([^;]+);", re.M)
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

# Defaults for fluxtui's own variables, so Textual's built-in themes work too.
VARIABLE_DEFAULTS = {"loss-raw": "#808080", "loss-smooth": "#5fafff", "loss-other": "#ffaf5f"}


def read_palette(path: Path) -> dict[str, str]:
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    return {m[1]: m[2].strip() for m in _VARIABLE.finditer(text)}


def theme_from_file(path: Path) -> Theme:
    palette = read_palette(path)
    fields = {k: v for k, v in palette.items() if k in _THEME_FIELDS}
    extra = {k: v for k, v in palette.items() if k not in _THEME_FIELDS and k != "dark"}
    if "primary" not in fields:
        raise ValueError(f"{path}: a theme needs at least $primary")
    return Theme(
        name=f"fluxtui-{path.stem}",
        dark=palette.get("dark", "true").lower() != "false",
        variables=extra,
        **fields,
    )


def palette_files() -> list[Path]:
    return sorted(p for p in THEMES_DIR.glob("*.tcss") if p != RULES_FILE)


def load_themes() -> list[Theme]:
    return [theme_from_file(p) for p in palette_files()]
