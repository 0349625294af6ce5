"""Peak memory per stage of a run: torch's CUDA counters, NVML's view of the device, and the
process's peak RSS. Each `stage` event carries the peaks of its stage so far, so `fluxtui probe`
and bench/gpu.py can hold the estimate to each stage (core/estimate_stages.py).

A stage's counters start when it begins (torch's peak stats reset, the kernel's VmHWM reset
through /proc/self/clear_refs, NVML's maximum restarted) and its figures are kept across
returns to it (train -> validate -> train), so the train stage's figure covers every step.
"""

from __future__ import annotations

import threading
from typing import Any

NVML_INTERVAL_S = 0.05


class StageMeter:
    def __init__(self, device: Any = None):
        self.device = device
        self.stage: str | None = None
        self.peaks: dict[str, dict[str, float]] = {}  # stage -> figure -> MiB
        self._nvml_max = 0.0
        self._nvml_index = _nvml_index(device)
        self._stop = threading.Event()
        self._thread = None
        if self._nvml_index is not None:
            self._thread = threading.Thread(target=self._sample_nvml, name="nvml-peaks", daemon=True)
            self._thread.start()

    @property
    def cuda(self) -> bool:
        return getattr(self.device, "type", None) == "cuda"

    def enter(self, stage: str) -> None:
        """Start counting for ``stage`` (no-op when it is already the current one)."""
        if stage == self.stage:
            return
        if self.stage is not None:
            self._keep(self.stage, self._now())
        self.stage = stage
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        _reset_hwm()
        self._nvml_max = 0.0

    def figures(self, stage: str | None = None) -> dict[str, float]:
        """Peaks of ``stage`` (default the current one) in MiB: vram_peak_mb (allocated),
        vram_reserved_peak_mb, nvml_peak_mb (device-wide, context included), rss_peak_mb."""
        stage = stage or self.stage
        now = self._now() if stage == self.stage else {}
        kept = self.peaks.get(stage or "", {})
        return {k: round(max(now.get(k, 0.0), kept.get(k, 0.0)), 1) for k in (*now, *kept)}

    def run_peak_vram_mb(self) -> float:
        """Torch's peak allocation over the whole run so far."""
        now = self._now().get("vram_peak_mb", 0.0)
        return round(max([now, *(p.get("vram_peak_mb", 0.0) for p in self.peaks.values())]), 1)

    def close(self) -> None:
        self._stop.set()

    def _keep(self, stage: str, figures: dict[str, float]) -> None:
        kept = self.peaks.setdefault(stage, {})
        for k, v in figures.items():
            kept[k] = max(kept.get(k, 0.0), v)

    def _now(self) -> dict[str, float]:
        out = {"rss_peak_mb": peak_rss_mb()}
        if self.cuda:
            import torch

            out["vram_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            out["vram_reserved_peak_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
        if self._nvml_index is not None:
            out["nvml_peak_mb"] = max(self._nvml_max, _nvml_used(self._nvml_index))
        return out

    def _sample_nvml(self) -> None:
        while not self._stop.wait(NVML_INTERVAL_S):
            self._nvml_max = max(self._nvml_max, _nvml_used(self._nvml_index))


def peak_rss_mb() -> float:
    """VmHWM: the process's peak resident memory since start or since the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> None:
    # "5" resets the peak RSS counter (Linux >= 4.0); elsewhere the peak is since start.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _nvml_index(device: Any) -> int | None:
    if getattr(device, "type", None) != "cuda":
        return None
    from fluxtui.core import gpu

    visible = gpu.visible_indices()
    ordinal = device.index or 0
    index = visible[ordinal] if visible and ordinal < len(visible) else ordinal
    if index < 0 or not gpu.sample([index]):
        return None
    return index


def _nvml_used(index: int | None) -> float:
    from fluxtui.core import gpu

    samples = gpu.sample([index]) if index is not None else []
    return float(samples[0].used_mb) if samples else 0.0
