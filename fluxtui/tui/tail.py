"""Following a run's files by byte offset, in batches (the way toolong does it).

Runs in a worker thread: reads only what was appended since the last poll, keeps a partial
last line for next time, and starts over when a file shrank or was replaced. The step events
are turned into columns here (with the smoothed loss), so the UI thread only appends.
"""

from __future__ import annotations

import os
from pathlib import Path

from fluxtui.core.events import EVENTS_FILE, EventReader

from .messages import StepColumns

LOG_FILE = "trainer.log"


class LogTail:
    """Tails a text log by offset. The first poll of a big file starts near its end."""

    def __init__(self, path: Path, *, max_bytes: int = 1 << 20, start_tail_bytes: int = 1 << 20):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.start_tail_bytes = start_tail_bytes
        self.offset: int | None = None  # None: not opened yet
        self._inode: int | None = None
        self._partial = b""

    def poll(self) -> tuple[list[str], bool]:
        """(new complete lines, reset): reset means the file was replaced or truncated."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False
        reset = False
        skip_first = False
        if self.offset is None:
            self.offset = max(0, st.st_size - self.start_tail_bytes)
            skip_first = self.offset > 0  # we landed mid-line; drop that fragment
        elif st.st_ino != self._inode or st.st_size < self.offset:
            self.offset, self._partial, reset = 0, b"", True
        self._inode = st.st_ino
        if st.st_size <= self.offset:
            return [], reset
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.max_bytes)
        self.offset += len(data)
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()
        if skip_first and parts:
            parts = parts[1:]
        lines = [p.decode("utf-8", "replace").rstrip("\r") for p in parts]
        return lines, reset

    @property
    def at_end(self) -> bool:
        try:
            return self.offset is not None and os.stat(self.path).st_size <= self.offset
        except FileNotFoundError:
            return True


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # pruned by the retention limit while we walked
    return total


class RunFeed:
    """Everything new in one run folder since the last poll."""

    def __init__(self, run_dir: Path, *, ema_beta: float = 0.9, max_bytes: int = 4 << 20):
        self.run_dir = Path(run_dir)
        self.events = EventReader(self.run_dir / EVENTS_FILE, max_bytes=max_bytes)
        self.log = LogTail(self.run_dir / LOG_FILE)
        self.ema_beta = ema_beta
        self._ema = 0.0
        self._n = 0
        self._inode: int | None = None

    def _events_reset(self) -> bool:
        try:
            st = os.stat(self.events.path)
        except FileNotFoundError:
            return False
        reset = self._inode is not None and (st.st_ino != self._inode or st.st_size < self.events.offset)
        self._inode = st.st_ino
        return reset

    def poll_events(self) -> tuple[StepColumns, list[dict], bool, bool]:
        """(step columns, other events, backlog: more waiting, reset)."""
        reset = self._events_reset()
        if reset:
            self._ema, self._n = 0.0, 0
        batch = self.events.poll()
        steps = StepColumns()
        others: list[dict] = []
        beta = self.ema_beta
        for ev in batch:
            if ev.get("type") == "step":
                loss = ev.get("loss")
                step = ev.get("step")
                if not isinstance(loss, (int, float)) or not isinstance(step, (int, float)):
                    continue
                self._n += 1
                self._ema = beta * self._ema + (1 - beta) * loss
                steps.step.append(float(step))
                steps.loss.append(float(loss))
                steps.smooth.append(self._ema / (1 - beta**self._n))  # debiased, as TensorBoard does
                steps.t.append(float(ev.get("t", 0.0)))
                steps.last = ev
            else:
                if ev.get("type") == "checkpoint":
                    ev = {**ev, "size_bytes": self._checkpoint_size(ev)}
                others.append(ev)
        return steps, others, not self.events.at_end, reset

    def _checkpoint_size(self, ev: dict) -> int | None:
        path = Path(str(ev.get("path", "")))
        path = path if path.is_absolute() else self.run_dir / path
        return dir_size(path) if path.is_dir() else None

    def poll_log(self) -> tuple[list[str], bool]:
        return self.log.poll()
