"""Output helpers shared by the subcommands: colour that honours NO_COLOR, problem lists."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fluxtui.core import config
from fluxtui.core.problems import Problem

_CODES = {"red": "31", "yellow": "33", "green": "32", "dim": "2", "bold": "1", "cyan": "36"}


def use_colour(stream=sys.stdout) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, colour: str, stream=sys.stdout) -> str:
    return f"\033[{_CODES[colour]}m{text}\033[0m" if use_colour(stream) else text


def print_problems(problems: list[Problem], stream=sys.stdout) -> None:
    for p in sorted(problems, key=lambda p: (not p.is_error, p.line or 0)):
        label = paint("error", "red", stream) if p.is_error else paint("warning", "yellow", stream)
        print(f"{label}: {p}", file=stream)


def load_project(workspace: Path) -> tuple[config.Project | None, list[Problem]]:
    return config.load(Path(workspace) / config.PROJECT_FILE)


def fail(message: str, code: int = 2) -> int:
    print(f"{paint('error', 'red', sys.stderr)}: {message}", file=sys.stderr)
    return code
