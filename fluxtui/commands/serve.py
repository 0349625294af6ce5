"""`fluxtui serve [DIR]`: the same TUI in a browser, through textual-serve.

Each browser tab gets its own `fluxtui tui DIR` process. Bound to 127.0.0.1 unless --host
says otherwise: whoever reaches the port can start and stop training, so the URL printed at
start carries a random token that the page and the websocket require (fluxtui/tui/serve.py).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fluxtui.core.workspace import Workspace

from .common import fail, paint

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def command_for(ws: Workspace) -> str:
    return shlex.join([sys.executable, "-m", "fluxtui.cli", "tui", str(ws.root)])


def main(args) -> int:
    ws = Workspace.at(Path(args.workspace))
    if not ws.exists():
        return fail(f"no project.toml in {args.workspace}. Create a workspace with `fluxtui init DIR`.")
    from fluxtui.tui.serve import GuardedServer

    if args.host not in LOOPBACK:
        print(
            paint("warning", "yellow", sys.stderr)
            + f": serving on {args.host}: anyone who reaches port {args.port} can start and stop training",
            file=sys.stderr,
        )
    server = GuardedServer(command_for(ws), host=args.host, port=args.port, title=f"fluxtui · {ws.root.name}")
    try:
        server.serve()
    except OSError as e:  # port taken, address not available
        return fail(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}", 1)
    return 0
