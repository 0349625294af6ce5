"""GPU telemetry through NVML (nvidia-ml-py): VRAM and utilisation per GPU.

Everything here degrades to "no GPU" instead of raising: a machine without NVIDIA drivers,
without the nvidia-ml-py package, or inside a container without /dev/nvidia* gets `[]`
from `sample()` and 0 from `visible_count()`. No torch import (the core stays light).

API (used by the runner and the TUI):
    sample(indices=None) -> list[GpuSample]   # one per GPU, in NVML index order
    visible_count() -> int                     # GPUs a child process would see
    visible_indices() -> list[int] | None      # CUDA_VISIBLE_DEVICES as NVML indices
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    used_mb: int
    total_mb: int
    util_pct: int | None  # None when the driver does not report it (some vGPUs, MIG)

    @property
    def used_fraction(self) -> float:
        return self.used_mb / self.total_mb if self.total_mb else 0.0

    def to_json(self) -> dict:
        return asdict(self)


_lock = threading.Lock()
_nvml = None  # the pynvml module once initialised; False after a failed attempt


def _init():
    """Initialise NVML once per process; None when it is not there."""
    global _nvml
    with _lock:
        if _nvml is None:
            try:
                import pynvml  # from nvidia-ml-py; light, pure ctypes

                pynvml.nvmlInit()
                _nvml = pynvml
            except Exception:  # no package, no driver, no device: all mean "no GPU"
                _nvml = False
        return _nvml or None


def _device_count() -> int:
    nvml = _init()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def sample(indices: list[int] | None = None) -> list[GpuSample]:
    """Used/total VRAM (MiB) and utilisation for each GPU (or the given NVML indices).

    Returns [] without a GPU or NVML; a GPU that fails to answer is left out. Never raises.
    """
    nvml = _init()
    if nvml is None:
        return []
    out: list[GpuSample] = []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    for i in range(count) if indices is None else indices:
        if not 0 <= i < count:
            continue
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:
                util = None
            out.append(GpuSample(i, str(name), int(mem.used) >> 20, int(mem.total) >> 20, util))
        except Exception:
            continue
    return out


def visible_indices(env: dict[str, str] | None = None) -> list[int] | None:
    """The GPUs CUDA_VISIBLE_DEVICES allows, as integers; None when it is unset.

    UUID or MIG entries cannot be mapped to indices here; they count, but as -1.
    """
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            out.append(-1)
            continue
        if value < 0:  # CUDA stops at the first invalid id
            break
        out.append(value)
    return out


def visible_count(env: dict[str, str] | None = None) -> int:
    """How many GPUs a child process started with this environment would see."""
    count = _device_count()
    allowed = visible_indices(env)
    if allowed is None:
        return count
    return sum(1 for i in allowed if i < count)
