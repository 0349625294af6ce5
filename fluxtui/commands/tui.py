"""`fluxtui tui [DIR]` and plain `fluxtui`: the full-screen app on a workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fluxtui.core.workspace import Workspace

from .common import fail


def main(args) -> int:
    ws = Workspace.at(Path(args.workspace))
    if ws.project_file.is_dir():
        return fail(ws.missing_reason())
    if not ws.exists():
        where = "here" if str(args.workspace) == "." else str(args.workspace)
        return fail(
            f"no project.toml {where if where == 'here' else 'in ' + where}. "
            f"Create a workspace with `fluxtui init DIR` (or `fluxtui init DIR --demo`)."
        )
    served = bool(os.environ.get("TEXTUAL_DRIVER"))  # textual-serve runs us with its web driver
    if not served and not sys.stdout.isatty() and not sys.stdin.isatty():
        return fail("the TUI needs a terminal; use `fluxtui run` or `fluxtui status` in scripts")
    # textual-image asks the terminal what it can draw; that only works before Textual owns it.
    import textual_image.widget  # noqa: F401

    from fluxtui.tui.app import make_app

    app = make_app(ws)
    return app.run() or 0
