"""What the run monitor knows about one run, built from event batches. No widgets here.

The step history is kept in compact arrays (8 bytes a number) so a run with a million
steps stays small; everything else is the latest value or a short list.
"""

from __future__ import annotations

from array import array
from collections import deque
from pathlib import Path

from .messages import EventsBatch


class RunState:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.steps = array("d")
        self.loss = array("d")
        self.smooth = array("d")
        self._recent: deque[tuple[float, float]] = deque(maxlen=32)  # (t, step) for s/step
        self.last: dict | None = None  # newest step event
        self.start: dict | None = None  # run.start
        self.stage: dict | None = None
        self.end: dict | None = None  # run.end
        self.checkpoints: dict[str, dict] = {}  # path -> checkpoint event (+ size_bytes)
        self.images: dict[str, tuple[int, str]] = {}  # "<prompt>-<WxH>" -> (step, path in run)
        self.warnings: list[dict] = []
        self.memory_mb: deque[float] = deque(maxlen=120)
        self.events_seen = 0
        self.loading = True  # still reading the backlog

    def apply(self, batch: EventsBatch) -> None:
        if batch.reset:
            self.__init__(self.run_id)
        cols = batch.steps
        if len(cols):
            self.steps.extend(cols.step)
            self.loss.extend(cols.loss)
            self.smooth.extend(cols.smooth)
            # only the newest points matter for speed and the VRAM sparkline
            for t, s in zip(cols.t[-32:], cols.step[-32:]):
                self._recent.append((t, s))
            self.last = cols.last
            last = cols.last or {}
            # the sparkline shows VRAM on a GPU, the process's RAM on a CPU
            self.memory_mb.append(float(last.get("vram_alloc_mb") or last.get("rss_mb") or 0.0))
        for ev in batch.events:
            self._apply_event(ev)
        self.events_seen += len(cols) + len(batch.events)
        self.loading = batch.backlog

    def _apply_event(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "run.start":
            self.start, self.end = ev, None
        elif kind == "stage":
            self.stage = ev
        elif kind == "checkpoint":
            self.checkpoints[str(ev.get("path"))] = ev
            for gone in ev.get("removed") or ():
                self.checkpoints.pop(str(gone), None)
        elif kind == "validation":
            step = int(ev.get("step") or 0)
            for rel in ev.get("images") or ():
                key = Path(rel).stem
                if step >= self.images.get(key, (-1, ""))[0]:
                    self.images[key] = (step, rel)
        elif kind == "warning":
            self.warnings.append(ev)
            del self.warnings[:-50]
        elif kind == "run.end":
            self.end = ev

    @property
    def step(self) -> int:
        if self.last is not None:
            return int(self.last.get("step", 0))
        if self.end is not None:
            return int(self.end.get("step") or 0)
        return 0

    @property
    def seconds_per_step(self) -> float | None:
        if len(self._recent) < 2:
            return None
        (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (t1 - t0) / (s1 - s0)

    def eta_seconds(self, total: int | None) -> float | None:
        sps = self.seconds_per_step
        if not total or sps is None or self.end is not None:
            return None
        return max(0.0, (total - self.step) * sps)

    def latest_images(self) -> list[tuple[str, int, str]]:
        """(prompt-size name, step, path relative to the run folder), by name."""
        return [(name, step, rel) for name, (step, rel) in sorted(self.images.items())]

    def checkpoint_rows(self) -> list[dict]:
        return sorted(self.checkpoints.values(), key=lambda ev: ev.get("step", 0))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
