"""What a run needs from the machine before it starts, checked without torch: a workspace it
can write to (a read-only mount is found here, not as an OSError halfway through starting)
and the free disk space for its checkpoints, whose size follows from the LoRA's shape.

    problems(project) -> list[Problem]       for `validate`, `run` and the TUI
    checkpoint_bytes(project) -> int         the size of one checkpoint (LoRA + AdamW moments)
    os_error_line(exc, what) -> str          one line for an OSError a person can act on
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .problems import Problem

MARGIN_BYTES = 64 << 20  # events, logs, run.json, frozen configs, a small latent cache
_STATE_BYTES = 1 << 20  # scheduler, RNG states and metadata of a checkpoint


def checkpoint_bytes(project: Any) -> int:
    """One checkpoint: the LoRA in fp32 plus two fp32 optimizer moments per parameter."""
    from .estimate_model import project_lora_size
    from .flux_arch import pipeline_for_flavour

    params, _layers, _note = project_lora_size(project, pipeline_for_flavour(project.model.model_flavour).transformer)
    return params * 4 * 3 + _STATE_BYTES


def run_bytes(project: Any) -> int:
    """The least a run needs free: a checkpoint being written next to the one kept, the
    final LoRA, and a margin for logs and caches."""
    one = checkpoint_bytes(project)
    return 2 * one + one // 3 + MARGIN_BYTES


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def writable_problem(root: Path) -> Problem | None:
    """An error when the workspace (or its outputs/cache/.fluxtui folder) cannot be written."""
    for folder in (root, root / "outputs", root / "cache", root / ".fluxtui"):
        if not folder.is_dir():
            continue
        try:
            fd, tmp = tempfile.mkstemp(prefix=".fluxtui-write-check-", dir=folder)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            ro = e.errno == errno.EROFS
            why = "it is on a read-only file system" if ro else (e.strerror or str(e))
            return Problem(
                f"cannot write to {folder}: {why}; a run writes its outputs, caches and lock there",
                fix="remount it read-write, or copy the workspace somewhere writable"
                if ro
                else "fix its permissions, or copy the workspace somewhere writable",
                file="project.toml",
            )
    return None


def space_problem(project: Any, root: Path) -> Problem | None:
    """An error when the disk holding the workspace has less free space than a run needs."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return None
    need = run_bytes(project)
    if free >= need:
        return None
    return Problem(
        f"only {size_text(free)} free on the disk holding {root}; a run needs at least {size_text(need)} "
        f"(a checkpoint is ~{size_text(checkpoint_bytes(project))}, written next to the one kept)",
        fix="free some space, or move the workspace to a bigger disk",
        file="project.toml",
    )


def problems(project: Any) -> list[Problem]:
    root = Path(project.workspace)
    found = writable_problem(root)
    if found is not None:
        return [found]
    found = space_problem(project, root)
    return [found] if found is not None else []


def os_error_line(exc: OSError, what: str) -> str:
    """`what` failed with `exc`: one line, saying what to do for a full or read-only disk."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{what}: the disk is full{where}; free some space and try again"
    if exc.errno == errno.EROFS:
        return f"{what}: the file system is read-only{where}; remount it read-write or copy the workspace"
    return f"{what}: {exc.strerror or exc}{where}"
