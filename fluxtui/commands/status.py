"""`fluxtui status DIR [--json]`: the runs of a workspace, reconciled with the process table."""

from __future__ import annotations

import json
import time

from fluxtui.core import gpu, lock, runs
from fluxtui.core.workspace import Workspace

from .common import fail, paint

_COLOURS = {
    "running": "cyan",
    "starting": "cyan",
    "completed": "green",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
}


def main(args) -> int:
    ws = Workspace.at(args.workspace)
    if ws.missing_reason():
        return fail(ws.missing_reason())
    infos = runs.list_runs(ws)
    active = runs.active_run(ws)
    holder = lock.holder(ws.lock_file)
    if args.json:
        payload = {
            "workspace": str(ws.root),
            "active": active.run_id if active else None,
            "lock": vars(holder) if holder else None,
            "runs": [i.to_json() for i in infos],
            "gpus": [g.to_json() for g in gpu.sample()],
        }
        print(json.dumps(payload, indent=2, default=str))
        return 0
    if not infos:
        print(f"no runs yet in {ws.root}; start one with `fluxtui run {args.workspace}`")
        return 0
    print(f"{'RUN':<20} {'STATUS':<10} {'STEP':>11} {'LOSS':>8}  {'STARTED':<16} DETAIL")
    for info in infos:
        step = "" if info.step is None else str(info.step)
        if info.total_steps:
            step = f"{step or 0}/{info.total_steps}"
        loss = "" if info.last_loss is None else f"{info.last_loss:.4f}"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started)) if info.started else ""
        status = paint(f"{info.status:<10}", _COLOURS.get(info.status, "dim"))
        print(f"{info.run_id:<20} {status} {step:>11} {loss:>8}  {started:<16} {_detail(info)}")
    if active is not None:
        print()
        print(f"active: {active.run_id} (pid {active.pid}, {active.stage or 'starting'})")
    for g in gpu.sample():
        util = f", {g.util_pct}% busy" if g.util_pct is not None else ""
        print(f"GPU{g.index} {g.name}: {g.used_mb}/{g.total_mb} MiB{util}")
    return 0


def _detail(info: runs.RunInfo) -> str:
    if info.status in ("running", "starting"):
        parts = [f"pid {info.pid}" if info.pid else "launching"]
        if info.stage and info.stage != "train":
            parts.append(info.stage)
        if info.resumed_from is not None:
            parts.append(f"resumed from {info.resumed_from}")
        return ", ".join(parts)
    if info.status == "failed":
        return info.error or ""
    if info.status == "crashed":
        return info.exit_detail or ""
    if info.resumed_from is not None:
        return f"resumed from {info.resumed_from}"
    return ""
