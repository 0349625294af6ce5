"""What the trainer tells the world: events.jsonl (rank 0 only) and human log lines.

stdout is the human log (the runner sends it to trainer.log); lines are flushed at once so
`fluxtui logs -f` and a crash leave nothing behind in a buffer.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from fluxtui.core.events import EVENTS_FILE, EventWriter

# Anything shaped like a hub token never reaches a log or an event.
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def scrub(text: str) -> str:
    return _TOKEN.sub("hf_***", text)


class Telemetry:
    def __init__(self, run_dir: Path, run_id: str, *, main: bool, rank: int = 0):
        self.main = main
        self.rank = rank
        self.run_id = run_id
        self.writer = EventWriter(Path(run_dir) / EVENTS_FILE, run_id) if main else None
        self._last_stage: dict[str, float] = {}
        self.started = False  # run.start emitted
        self.lost_events = 0  # events that could not be written (disk full)
        self.meter: Any = None  # memory.StageMeter once the device is known (watch_memory)

    # -- human log ------------------------------------------------------------------------

    def log(self, message: str, *, all_ranks: bool = False) -> None:
        if not (self.main or all_ranks):
            return
        prefix = "" if self.main else f"[rank {self.rank}] "
        try:
            sys.stdout.write(f"{time.strftime('%H:%M:%S')} {prefix}{scrub(message)}\n")
            sys.stdout.flush()
        except OSError:  # a full disk under trainer.log: the line is lost, the run goes on to say why
            pass

    # -- events ---------------------------------------------------------------------------

    def emit(self, type_: str, **fields: Any) -> None:
        self.started = self.started or type_ == "run.start"
        if self.writer is not None:
            try:
                self.writer.emit(type_, **fields)
            except OSError:
                # A full disk: the event is lost (the supervisor then records an exit without
                # run.end and says the disk is full); never a second traceback on top.
                self.lost_events += 1

    def watch_memory(self, device: Any) -> None:
        """Count peak VRAM and RSS per stage from now on (stage events carry them)."""
        from .memory import StageMeter

        self.meter = StageMeter(device)

    def stage(
        self, name: str, done: int, total: int, *, resident: list[str] | None = None, every_s: float = 0.5
    ) -> None:
        """Progress of a stage; intermediate updates are rate-limited, the first and last are not.

        ``resident``: the big model components on the accelerator now. With ``watch_memory``
        on, the event also carries the stage's memory peaks so far (memory.StageMeter)."""
        if self.meter is not None:
            self.meter.enter(name)
        now = time.monotonic()
        if 0 < done < total and now - self._last_stage.get(name, 0.0) < every_s:
            return
        self._last_stage[name] = now
        extra: dict[str, Any] = {} if resident is None else {"resident": list(resident)}
        if self.meter is not None:
            extra |= self.meter.figures(name)
        self.emit("stage", name=name, done=done, total=total, **extra)

    def vram_mb(self, device: Any) -> tuple[float, float]:
        """(allocated now, peak allocated over the run): what step events report."""
        alloc, peak = vram_mb(device)
        if self.meter is not None and peak:
            peak = max(peak, self.meter.run_peak_vram_mb())
        return alloc, peak

    def warning(self, message: str, key: str | None = None) -> None:
        message = scrub(message)
        self.emit("warning", message=message, key=key)
        self.log(f"warning: {message}" + (f" [{key}]" if key else ""))

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- resource numbers ---------------------------------------------------------------------


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def vram_mb(device: Any) -> tuple[float, float]:
    """(allocated, peak allocated) by torch on a CUDA device; zeros elsewhere."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return 0.0, 0.0
    return (
        round(torch.cuda.memory_allocated(device) / 2**20, 1),
        round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
    )


# -- summaries for the human log ---------------------------------------------------------------


def log_step(tel: Telemetry, progress: Any, total: int, loss: float, lr: float, seconds: float) -> None:
    now = time.monotonic()
    last = getattr(tel, "_last_step_log", 0.0)
    if progress.step in (1, total) or now - last >= 2.0 or seconds >= 1.0:
        tel._last_step_log = now  # type: ignore[attr-defined]
        tel.log(
            f"step {progress.step}/{total} epoch {progress.epoch} loss {loss:.4f} lr {lr:.2e} {seconds * 1000:.0f} ms"
        )


def log_loss_summary(tel: Telemetry, losses: list[float]) -> None:
    if len(losses) < 2:
        return
    n = max(1, min(10, len(losses) // 4))
    first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
    change = (last - first) / first * 100 if first else 0.0
    tel.log(f"loss: first {n} steps average {first:.4f}, last {n} average {last:.4f} ({change:+.1f}%)")


def lora_digest(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].float().numpy().tobytes())
    return h.hexdigest()[:16]
