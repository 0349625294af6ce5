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

from fluxtui.core.checkpoints import CHECKPOINTS_DIR, META_FILE, run_checkpoints

LORA_FILE = "pytorch_lora_weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
EMA_FILE = "ema.safetensors"  # the EMA's shadow weights, with use_ema
TEMP_PREFIX = ".tmp-"

# Tests set this to a step number: that checkpoint is held half-written for a minute, long
# enough to kill the process in the middle of the write.
_PAUSE_ENV = "FLUXTUI_TEST_PAUSE_CHECKPOINT_AT"


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
    """Write checkpoint-<step> atomically and return its path. meta: epoch, data_position, hashes..."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"checkpoint-{step}"
    tmp = folder / f"{TEMP_PREFIX}checkpoint-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_file({k: v.detach().contiguous().cpu() for k, v in lora_state.items()}, tmp / LORA_FILE)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save(lr_scheduler.state_dict(), tmp / SCHEDULER_FILE)
    torch.save(rng_states(), tmp / RNG_FILE)
    if ema_state is not None:
        save_file(ema_state, tmp / EMA_FILE)
    if os.environ.get(_PAUSE_ENV) == str(step):
        time.sleep(60)
    info = {"step": step, "created": time.time(), **meta}
    (tmp / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    _fsync_tree(tmp)

    if final.exists():  # the same step saved again (a resumed run stopped at once): replace it
        old = folder / f"{TEMP_PREFIX}old-{step}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(folder)
    return final


def prune(run_dir: Path, limit: int) -> list[Path]:
    """Remove this run's oldest checkpoints beyond `limit` (0 keeps all). Returns what went."""
    if limit <= 0:
        return []
    existing = run_checkpoints(run_dir)
    removed = []
    for info in existing[: max(0, len(existing) - limit)]:
        # rename first so a crash mid-delete never leaves a half folder under a complete name
        trash = info.path.with_name(f"{TEMP_PREFIX}removed-{info.path.name}")
        os.rename(info.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(info.path)
    return removed


def remove_stale_temp(outputs_dir: Path) -> list[Path]:
    """Half-written checkpoint folders of any run whose writer is gone (killed mid-write)."""
    removed = []
    for folder in Path(outputs_dir).glob(f"*/{CHECKPOINTS_DIR}"):
        for p in folder.iterdir():
            if p.name.startswith(TEMP_PREFIX) and not _writer_alive(p.name):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def _writer_alive(name: str) -> bool:
    pid = name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(path: Path, *, optimizer: Any, lr_scheduler: Any, restore_rng: bool) -> tuple[dict, dict]:
    """Restore optimizer, scheduler (and rank 0's RNG); returns (lora_state, meta)."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    lora_state = load_file(path / LORA_FILE)
    # Our own files: they hold numpy RNG state and optimizer extras, not only tensors.
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=False))
    lr_scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, map_location="cpu", weights_only=False))
    if restore_rng:
        set_rng_states(torch.load(path / RNG_FILE, map_location="cpu", weights_only=False))
    return lora_state, meta


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
