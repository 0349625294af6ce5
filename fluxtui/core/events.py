"""events.jsonl: the trainer's machine-readable progress, and an incremental reader.

The trainer (rank 0 only) appends one JSON object per line and flushes. Readers keep a byte
offset and read only what was appended since; a partial last line waits for the next poll.
A file that shrank or was replaced (new inode) is read again from the start.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"

# type -> fields every event of that type carries (besides t, type, run)
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "run.start": ("pid", "world_size", "config_hash", "resumed_from", "fluxtui_version"),
    "stage": ("name", "done", "total"),
    "step": (
        "step",
        "epoch",
        "loss",
        "lr",
        "grad_norm",
        "samples_per_s",
        "vram_alloc_mb",
        "vram_peak_mb",
        "rss_mb",
    ),
    "validation": ("step", "images", "seconds"),
    "checkpoint": ("step", "path", "seconds", "removed"),
    "warning": ("message", "key"),
    "run.end": ("status", "step", "error", "traceback_tail"),
}
STAGES = ("load_models", "cache_latents", "cache_text", "train", "validate", "save")
# Optional fields of `stage` events (readers must not require them): `resident`, the big model
# components on the accelerator at that moment (text_encoder, text_encoder_2, vae, transformer);
# and the stage's memory peaks so far in MiB: `rss_peak_mb`, and on CUDA `vram_peak_mb`,
# `vram_reserved_peak_mb`, `nvml_peak_mb` (trainer/memory.py). A run goes through the stages in
# the order cache_text, cache_latents, load_models, train (validate and save in between).
STAGE_OPTIONAL_FIELDS = ("resident", "rss_peak_mb", "vram_peak_mb", "vram_reserved_peak_mb", "nvml_peak_mb")
END_STATUSES = ("completed", "stopped", "failed")


class EventWriter:
    """Appends events; used by the trainer's rank 0."""

    def __init__(self, path: Path, run_id: str):
        self.path = Path(path)
        self.run_id = run_id
        self._f: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the run

    def emit(self, type_: str, **fields: Any) -> dict:
        missing = [f for f in EVENT_FIELDS[type_] if f not in fields]
        if missing:
            raise ValueError(f"event {type_} lacks {missing}")
        event = {"t": round(time.time(), 3), "type": type_, "run": self.run_id, **fields}
        self._f.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        self._f.flush()
        return event

    def close(self) -> None:
        self._f.close()


@dataclass
class EventReader:
    """Tails events.jsonl by byte offset. `poll()` returns the new complete events."""

    path: Path
    offset: int = 0
    _inode: int | None = None
    _partial: bytes = b""
    bad_lines: int = 0
    max_bytes: int = 8 << 20  # per poll, so a huge backlog arrives in batches
    _buf: list[dict] = field(default_factory=list)

    def poll(self) -> list[dict]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
            self.offset, self._partial = 0, b""  # replaced or truncated: start over
        self._inode = st.st_ino
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.max_bytes)
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict) and "type" in event:
                events.append(event)
        return events

    @property
    def at_end(self) -> bool:
        try:
            return os.stat(self.path).st_size == self.offset
        except FileNotFoundError:
            return True


def read_all(path: Path) -> list[dict]:
    reader = EventReader(Path(path))
    events: list[dict] = []
    while batch := reader.poll():
        events += batch
    return events
