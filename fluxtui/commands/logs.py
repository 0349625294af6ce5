"""`fluxtui logs DIR [RUN] [-f]`: print a run's trainer.log; -f follows it until the run ends."""

from __future__ import annotations

import os
import sys
import time

from fluxtui.core import runs
from fluxtui.core.workspace import Workspace

from .common import fail

POLL_S = 0.2


def main(args) -> int:
    ws = Workspace.at(args.workspace)
    if ws.missing_reason():
        return fail(ws.missing_reason())
    run_id = args.run
    if run_id is None:
        infos = runs.list_runs(ws)
        if not infos:
            return fail(f"no runs yet in {ws.root}")
        run_id = infos[-1].run_id
    elif not ws.run_dir(run_id).is_dir():
        known = ", ".join(i.run_id for i in runs.list_runs(ws)[-5:]) or "none"
        return fail(f"no run {run_id} in {ws.outputs_dir} (latest: {known})")
    info = runs.get_run(ws, run_id)
    out = sys.stdout.buffer
    offset = _copy(info.log_path, 0, out)
    if not args.follow:
        return 0
    while True:
        active = runs.get_run(ws, run_id).active
        offset = _copy(info.log_path, offset, out)
        if not active:
            # the run ended before this read: everything it wrote is printed
            info = runs.get_run(ws, run_id)
            if info.status in ("failed", "crashed"):
                return 1
            return 0
        time.sleep(POLL_S)


def _copy(path, offset: int, out) -> int:
    """Write what was appended since `offset`; returns the new offset."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return offset
    if size < offset:  # truncated or replaced
        offset = 0
    if size == offset:
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 16):
            out.write(chunk)
            offset += len(chunk)
    out.flush()
    return offset
