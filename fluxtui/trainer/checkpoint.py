"""Resumable checkpoints: written to a temp folder and renamed, pruned to a limit, restored.

A checkpoint holds the LoRA (diffusers format, so it is usable as-is), the optimizer and
lr-scheduler states, the RNG states of rank 0 (python, numpy, torch, cuda) and
`fluxtui_checkpoint.json` with step, epoch, data position and the config hashes, which
core/checkpoints.py reads without torch. The metadata file is written last and the folder
renamed only after every file is flushed, so a folder named checkpoint-<step> is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fluxtui.core.checkpoints import CHECKPOINTS_DIR, META_FILE, run_checkpoints, temp_name
from fluxtui.core.checkpoints import remove_stale_temp as remove_stale_temp

LORA_FILE = "pytorch_lora_weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
EMA_FILE = "ema.safetensors"  # the EMA's shadow weights, with use_ema

# Tests set this to a step number (or "*": every one): that checkpoint is held half-written for a minute, long
# enough to kill the process in the middle of the write.
_PAUSE_ENV = "FLUXTUI_TEST_PAUSE_CHECKPOINT_AT"
# ... and this one holds a pruned checkpoint renamed but not yet deleted (a crash mid-prune).
_PAUSE_PRUNE_ENV = "FLUXTUI_TEST_PAUSE_PRUNE"


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(
    run_dir: Path,
    *,
    step: int,
    lora_state: dict[str, torch.Tensor],
    optimizer: Any,
    lr_scheduler: Any,
    meta: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint-<step> atomically and return its path. meta: epoch, data_position, hashes...
    RunFailed, before anything is written, when the disk has less room than the checkpoint."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    optimizer_state = optimizer.state_dict()
    _check_space(folder, step, _tensor_bytes(lora_state) + _tensor_bytes(optimizer_state))
    final = folder / f"checkpoint-{step}"
    tmp = folder / temp_name(f"checkpoint-{step}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_file({k: v.detach().contiguous().cpu() for k, v in lora_state.items()}, tmp / LORA_FILE)
    torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    torch.save(lr_scheduler.state_dict(), tmp / SCHEDULER_FILE)
    torch.save(rng_states(), tmp / RNG_FILE)
    if ema_state is not None:
        save_file(ema_state, tmp / EMA_FILE)
    if os.environ.get(_PAUSE_ENV) in (str(step), "*"):
        time.sleep(60)
    info = {"step": step, "created": time.time(), **meta}
    (tmp / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    _fsync_tree(tmp)

    if final.exists():  # the same step saved again (a resumed run stopped at once): replace it
        old = folder / temp_name(f"old-checkpoint-{step}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(folder)
    return final


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _check_space(folder: Path, step: int, tensor_bytes: int) -> None:
    """A checkpoint's size is known before it is written: refuse with the numbers rather than
    fail halfway through with a serialiser's error."""
    from fluxtui.core.preflight import size_text

    from .setup import RunFailed

    need = int(tensor_bytes * 1.05) + (1 << 20)  # + scheduler, RNG states, metadata, file headers
    free = shutil.disk_usage(folder).free
    if free < need:
        raise RunFailed(
            f"not enough disk space for checkpoint-{step}: it needs ~{size_text(need)}, only {size_text(free)} "
            f"free on the disk holding {folder}; free some space, then resume (earlier checkpoints are kept)"
        )


def prune(run_dir: Path, limit: int) -> list[Path]:
    """Remove this run's oldest checkpoints beyond `limit` (0 keeps all). Returns what went."""
    if limit <= 0:
        return []
    existing = run_checkpoints(run_dir)
    removed = []
    for info in existing[: max(0, len(existing) - limit)]:
        # rename first so a crash mid-delete never leaves a half folder under a complete name
        trash = info.path.with_name(temp_name(f"removed-{info.path.name}"))
        os.rename(info.path, trash)
        if os.environ.get(_PAUSE_PRUNE_ENV):
            time.sleep(60)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(info.path)
    return removed


def load(path: Path, *, optimizer: Any, lr_scheduler: Any | None, restore_rng: bool) -> tuple[dict, dict]:
    """Restore optimizer, scheduler (unless None) and rank 0's RNG; returns (lora_state, meta)."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    lora_state = load_file(path / LORA_FILE)
    # Our own files: they hold numpy RNG state and optimizer extras, not only tensors.
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=False))
    if lr_scheduler is not None:
        lr_scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, map_location="cpu", weights_only=False))
    if restore_rng:
        set_rng_states(torch.load(path / RNG_FILE, map_location="cpu", weights_only=False))
    return lora_state, meta


def restore(
    path: Path, *, optimizer: Any, lr_scheduler: Any, project: Any, total_steps: int, restore_rng: bool, tel: Any
) -> tuple[dict, dict, Any]:
    """Resume from a checkpoint with the project's current settings: the optimizer's moments
    come from the checkpoint, its hyperparameters (lr, betas, eps, weight decay) from the
    config, and the lr schedule is rebuilt for the current settings at the resumed step.
    Each change is logged and sent as a warning event. Returns (lora_state, meta, lr_scheduler)."""
    from . import optim

    raw = lr_scheduler.optimizer  # the optimizer the schedule drives (under accelerate's wrapper)
    wanted = optim.settings_of(raw)
    lora_state, meta = load(path, optimizer=optimizer, lr_scheduler=None, restore_rng=restore_rng)
    step = int(meta["step"])
    changes = optim.apply_settings(raw, wanted)
    before = meta.get("schedule") or {}
    now = optim.schedule_settings(project, total_steps)
    changes += [(k, before[k], v) for k, v in now.items() if k in before and before[k] != v]
    for key, old, new in changes:
        name = "total steps" if key == "total_steps" else key.rsplit(".", 1)[-1]
        tel.warning(
            f"resumed with a changed setting: {name} {_shown(old)} -> {_shown(new)} from step {step}",
            "training.max_train_steps" if key == "total_steps" else key,
        )
    return lora_state, meta, optim.build_lr_scheduler(raw, project, total_steps, step=step)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_ema(path: Path) -> dict[str, torch.Tensor] | None:
    """The EMA state saved with a checkpoint, or None (saved without use_ema)."""
    file = Path(path) / EMA_FILE
    return load_file(file) if file.exists() else None


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
