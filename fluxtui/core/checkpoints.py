"""Checkpoints on disk, read without torch: list them, inspect them, pick one to resume from.

A checkpoint is a folder `outputs/<run>/checkpoints/checkpoint-<step>/` holding the trainer's
state files and `fluxtui_checkpoint.json` (written last, before the folder is renamed into
place): step, epoch, data position and two hashes of the config. `resume_hash` covers only
the options a resume cannot absorb (schema: `Option.absorbed_by_resume` is False: rank,
model, resolution, datasets...), so a checkpoint is compatible with a project exactly when
the hashes match. Folders whose name starts with "." are writes in progress and never count;
they are named `.tmp-<what>-pid<pid>` (temp_name), so a step number is never read as the
writer's pid, and any other leftover whose writer is gone is removed (remove_stale_temp).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lock import pid_alive
from .schema import OPTIONS

META_FILE = "fluxtui_checkpoint.json"
CHECKPOINTS_DIR = "checkpoints"
TEMP_PREFIX = ".tmp-"
_NAME = re.compile(r"checkpoint-(\d+)")
_TEMP_PID = re.compile(r"-pid(\d+)$")


def temp_name(what: str, pid: int | None = None) -> str:
    """The name of a temp folder next to the checkpoints: `.tmp-<what>-pid<pid>`."""
    return f"{TEMP_PREFIX}{what}-pid{pid or os.getpid()}"


def temp_writer_alive(name: str) -> bool:
    """Whether the process that owns temp folder `name` still lives (and is not this one).
    Names without a `-pid<pid>` mark (older versions, or a crash mid-prune) have no owner."""
    m = _TEMP_PID.search(name)
    if m is None or int(m[1]) == os.getpid():
        return False
    return pid_alive(int(m[1]))


def remove_stale_temp(outputs_dir: str | Path) -> list[Path]:
    """Remove half-written or half-removed checkpoint folders of any run whose writer is gone."""
    removed = []
    for folder in Path(outputs_dir).glob(f"*/{CHECKPOINTS_DIR}"):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.name.startswith(TEMP_PREFIX) and not temp_writer_alive(p.name):
                shutil.rmtree(p, ignore_errors=True)
                if not p.exists():
                    removed.append(p)
    return removed


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    run_id: str
    step: int
    epoch: int
    data_position: int  # batches consumed by all processes together
    config_hash: str
    resume_hash: str
    created: float
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class ResumeChoice:
    checkpoint: CheckpointInfo | None
    reason: str  # one line for the log: why this one, or why none
    skipped: tuple[CheckpointInfo, ...] = ()  # newer checkpoints left out as incompatible


class CheckpointError(Exception):
    """An explicitly requested checkpoint cannot be used; the message says why and what to do."""


def resume_values(project: Any) -> dict[str, Any]:
    """The options a resumed run cannot absorb, with their values (project: a core.config.Project)."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.absorbed_by_resume:
            continue
        if opt.section == "datasets":
            for i, ds in enumerate(project.active_datasets):
                values[f"datasets[{i}].{opt.key}"] = getattr(ds, opt.key)
        else:
            values[opt.dotted] = project.get(opt.dotted)
    return values


def resume_hash(project: Any) -> str:
    """Hash of the options a resumed run cannot absorb (project: a core.config.Project)."""
    blob = json.dumps(resume_values(project), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def blocking_changes(info: CheckpointInfo, project: Any, limit: int = 4) -> str:
    """Which options that a resume cannot absorb differ from the checkpoint, as one phrase
    ("lora.lora_rank 16 -> 8"); generic for checkpoints that did not record their values."""
    try:
        meta = json.loads((info.path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    before = meta.get("resume_values") if isinstance(meta, dict) else None
    if not isinstance(before, dict):
        return "different model, LoRA or dataset settings"
    now = json.loads(json.dumps(resume_values(project), default=str))
    changed = [
        f"{k} {before.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    ]
    if not changed:
        return "different model, LoRA or dataset settings"
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more


def read_checkpoint(path: str | Path) -> CheckpointInfo | None:
    """The checkpoint at `path`, or None when it is not a complete fluxtui checkpoint."""
    path = Path(path)
    if path.name.startswith("."):
        return None
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        run_dir = path.parent.parent
        return CheckpointInfo(
            path=path,
            run_id=str(meta.get("run") or run_dir.name),
            step=int(meta["step"]),
            epoch=int(meta["epoch"]),
            data_position=int(meta["data_position"]),
            config_hash=str(meta["config_hash"]),
            resume_hash=str(meta["resume_hash"]),
            created=float(meta["created"]),
            world_size=int(meta.get("world_size", 1)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Complete checkpoints of one run, lowest step first."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if _NAME.fullmatch(p.name):
            info = read_checkpoint(p)
            if info is not None:
                found.append(info)
    return sorted(found, key=lambda c: c.step)


def workspace_checkpoints(workspace_root: str | Path) -> list[CheckpointInfo]:
    """Complete checkpoints of every run in the workspace, oldest first."""
    outputs = Path(workspace_root) / "outputs"
    if not outputs.is_dir():
        return []
    found = [c for run in outputs.iterdir() if run.is_dir() for c in run_checkpoints(run)]
    return sorted(found, key=lambda c: (c.created, c.step))


def pick_resume(workspace_root: str | Path, project: Any, *, requested: str | Path | None = None) -> ResumeChoice:
    """Which checkpoint a new trainer should resume from.

    requested: None or "latest" picks the newest compatible checkpoint of any run; "none"
    starts fresh; anything else is a checkpoint folder (or a run folder: its last checkpoint),
    relative to the workspace, which must be compatible: CheckpointError otherwise.
    """
    root = Path(workspace_root)
    want = resume_hash(project)
    req = None if requested is None else str(requested)
    if req == "none":
        return ResumeChoice(None, "resume_from_checkpoint = none: starting fresh")
    if req in (None, "", "latest"):
        every = workspace_checkpoints(root)
        skipped = []
        for info in reversed(every):
            if info.resume_hash == want:
                return ResumeChoice(info, f"resuming from {_rel(info.path, root)} (step {info.step})", tuple(skipped))
            skipped.append(info)
        if skipped:
            return ResumeChoice(
                None,
                f"starting fresh: {len(skipped)} checkpoint(s) were made with settings a resume cannot absorb "
                f"(newest: {blocking_changes(skipped[0], project)})",
                tuple(skipped),
            )
        return ResumeChoice(None, "starting fresh: no checkpoint yet")

    path = Path(req).expanduser()
    if not path.is_absolute():
        path = root / path
    info = read_checkpoint(path)
    if info is None and (path / CHECKPOINTS_DIR).is_dir():
        candidates = run_checkpoints(path)
        info = candidates[-1] if candidates else None
    if info is None:
        raise CheckpointError(
            f"{req} is not a complete fluxtui checkpoint (no {META_FILE}); "
            'point resume_from_checkpoint at a checkpoint-<step> folder, or use "latest"'
        )
    if info.resume_hash != want:
        raise CheckpointError(
            f"{_rel(info.path, root)} cannot be resumed with this project: {blocking_changes(info, project)} "
            "(a resume cannot absorb these: the schema marks them as needing a new run); "
            'use resume_from_checkpoint = "none" (or --fresh) to start over'
        )
    return ResumeChoice(info, f"resuming from {_rel(info.path, root)} (step {info.step})")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
