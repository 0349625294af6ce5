"""`fluxtui stop DIR [--timeout S]`: stop the active run (checkpoint first), by force if need be."""

from __future__ import annotations

import sys

from fluxtui.core import runs
from fluxtui.core.workspace import Workspace

from .common import fail, paint


def main(args) -> int:
    ws = Workspace.at(args.workspace)
    if ws.missing_reason():
        return fail(ws.missing_reason())
    active = runs.active_run(ws)
    if active is None:
        print(f"no run is active in {ws.root}")
        return 0
    print(f"stopping run {active.run_id} (pid {active.pid}): the trainer saves a checkpoint first ...")

    def progress(message: str) -> None:
        print(f"{paint('note', 'yellow', sys.stderr)}: {message}", file=sys.stderr)

    info = runs.stop_run(ws, active.run_id, timeout=args.timeout, on_progress=progress)
    step = f" at step {info.step}" if info.step is not None else ""
    if info.status in ("stopped", "completed"):
        ckpt = f"; checkpoint: {info.last_checkpoint}" if info.last_checkpoint else ""
        print(f"{paint(info.status, 'green')}{step}{ckpt}")
        return 0
    if info.active:
        return fail(f"run {info.run_id} is still running after {args.timeout:.0f}s (pid {info.pid})", 1)
    detail = info.error or info.exit_detail or ""
    return fail(f"run {info.run_id} ended {info.status}{step}: {detail}", 1)
