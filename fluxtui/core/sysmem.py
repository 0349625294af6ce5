"""The machine's memory as a process here would see it: /proc/meminfo, lowered to the cgroup's
limit inside a container (where MemTotal shows the host's). No psutil needed.

FLUXTUI_MEMINFO names a file in /proc/meminfo's format to read instead (tests, and machines
where /proc lies); the cgroup limit is then not applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
MEMINFO = Path("/proc/meminfo")
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclass(frozen=True)
class MachineRam:
    total_gib: float
    available_gib: float | None
    source: str  # where the total comes from

    def to_json(self) -> dict:
        return {
            "total_gib": round(self.total_gib, 2),
            "available_gib": None if self.available_gib is None else round(self.available_gib, 2),
            "source": self.source,
        }


def _meminfo(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def _cgroup_limit() -> int | None:
    for path in CGROUP_LIMITS:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # "max" or a huge number mean no limit
            return int(raw)
    return None


def machine_ram() -> MachineRam | None:
    """Total and available RAM in GiB; None where it cannot be read (not Linux)."""
    override = os.environ.get("FLUXTUI_MEMINFO")
    path = Path(override) if override else MEMINFO
    try:
        info = _meminfo(path)
    except OSError:
        return None
    if "MemTotal" not in info:
        return None
    total, available = info["MemTotal"], info.get("MemAvailable")
    source = str(path)
    limit = None if override else _cgroup_limit()
    if limit is not None and limit < total:
        total, source = limit, "cgroup memory limit"
        available = min(available, limit) if available is not None else None
    return MachineRam(total / GIB, None if available is None else available / GIB, source)
