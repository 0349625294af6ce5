"""What the TUI remembers between sessions, in $XDG_CONFIG_HOME/fluxtui/tui.json:

    {"theme": "fluxtui-light", "keymap": {"run.start": "f5", "nav.monitor": "m"}}

The theme is saved when it changes; the keymap (binding id -> keys) is yours to write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fluxtui.core.config import atomic_write_text

SETTINGS_FILE = "tui.json"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fluxtui"


def load(folder: Path | None = None) -> dict:
    path = (folder or config_dir()) / SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or hand-mangled: start from defaults rather than refuse to open
    return data if isinstance(data, dict) else {}


def save(values: dict, folder: Path | None = None) -> None:
    folder = folder or config_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        merged = {**load(folder), **values}
        atomic_write_text(folder / SETTINGS_FILE, json.dumps(merged, indent=2) + "\n")
    except OSError:
        pass  # a read-only home must not break the UI; the setting is just not remembered
