"""One trainer per workspace: the lock at `.fluxtui/lock`, and process liveness checks.

The lock is a small JSON file naming its holder: the pid that supervises the run (the
foreground `fluxtui run`, or the detached supervisor), the trainer's pid and the run id.
It counts as held while either process lives. A lock whose processes are all gone (a
crash, a power cut, `kill -9` of everything) is stale and is taken over, with a message.
Pids are stored with their start time, so a recycled pid does not keep a lock alive.

Taking and taking over happen under an flock on a side file, so two `fluxtui run` racing
for a stale lock cannot both win.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import atomic_write_text


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (jiffies since boot), or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces or parentheses; fields resume after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] in ("Z", "X")


def pid_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether the process lives (a zombie does not); `start` guards against pid reuse."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError as e:
        return e.errno != errno.ESRCH
    if _is_zombie(pid):
        return False
    if start is not None:
        now = process_start_time(pid)
        if now is not None and now != start:
            return False
    return True


@dataclass
class LockInfo:
    pid: int  # the supervising process (foreground runner or detached supervisor)
    run_id: str | None
    trainer_pid: int | None = None
    pid_start: str | None = None
    trainer_pid_start: str | None = None
    host: str = ""
    since: float = 0.0

    def alive(self) -> bool:
        # Pids are checked on this machine even when `host` differs: containers get a new
        # hostname on every start, and a lock that could never go stale is worse.
        return pid_alive(self.pid, self.pid_start) or pid_alive(self.trainer_pid, self.trainer_pid_start)

    def describe(self) -> str:
        who = f"pid {self.pid}"
        if self.trainer_pid and self.trainer_pid != self.pid:
            who = f"trainer pid {self.trainer_pid}, supervised by pid {self.pid}"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"run {self.run_id or '(starting)'} ({who}{where})"


class LockHeld(Exception):
    """Another live run holds the workspace. `.holder` is its LockInfo."""

    def __init__(self, holder: LockInfo, lock_file: Path):
        self.holder = holder
        self.lock_file = lock_file
        super().__init__(
            f"another run is active in this workspace: {holder.describe()} holds {lock_file}. "
            f"Watch it with `fluxtui status`, or stop it with `fluxtui stop` first."
        )


def read(lock_file: Path) -> LockInfo | None:
    try:
        data = json.loads(Path(lock_file).read_text(encoding="utf-8"))
        return LockInfo(**{k: data.get(k) for k in LockInfo.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def _guard(lock_file: Path):
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file.with_name(lock_file.name + ".guard"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def acquire(lock_file: Path, run_id: str | None, *, pid: int | None = None) -> str | None:
    """Take the workspace lock for `run_id`, held by `pid` (default: this process).

    Raises LockHeld when a live process holds it. Returns a message when a stale lock was
    taken over (to show the person), else None. Re-entrant for the same holder pid.
    """
    lock_file = Path(lock_file)
    pid = pid or os.getpid()
    with _guard(lock_file):
        message = None
        current = read(lock_file)
        if current is not None and current.pid != pid:
            if current.alive():
                raise LockHeld(current, lock_file)
            message = (
                f"took over a stale lock from {current.describe()}: no process of it is alive "
                f"(it ended without releasing {lock_file})"
            )
        elif current is None and lock_file.exists():
            message = f"replaced an unreadable lock file {lock_file}"
        _write(lock_file, LockInfo(pid, run_id, pid_start=process_start_time(pid)))
        return message


def update(lock_file: Path, *, expect_pid: int | None = None, **changes) -> bool:
    """Change fields of the lock we hold (new holder pid, trainer pid, run id)."""
    lock_file = Path(lock_file)
    with _guard(lock_file):
        current = read(lock_file)
        if current is None or (expect_pid is not None and current.pid != expect_pid):
            return False
        for k, v in changes.items():
            setattr(current, k, v)
        if "pid" in changes:
            current.pid_start = process_start_time(current.pid)
        if "trainer_pid" in changes:
            current.trainer_pid_start = process_start_time(current.trainer_pid) if current.trainer_pid else None
        _write(lock_file, current)
        return True


def release(lock_file: Path, *, pid: int | None = None, run_id: str | None = None) -> bool:
    """Remove the lock if it is still ours (same holder pid, and run id when given)."""
    lock_file = Path(lock_file)
    pid = pid or os.getpid()
    with _guard(lock_file):
        current = read(lock_file)
        if current is None or current.pid != pid or (run_id is not None and current.run_id != run_id):
            return False
        lock_file.unlink(missing_ok=True)
        return True


def holder(lock_file: Path) -> LockInfo | None:
    """The live holder of the lock, or None (no lock, or a stale one)."""
    current = read(Path(lock_file))
    return current if current is not None and current.alive() else None


def _write(lock_file: Path, info: LockInfo) -> None:
    info.host = info.host or socket.gethostname()
    info.since = info.since or time.time()
    atomic_write_text(lock_file, json.dumps(asdict(info), indent=1) + "\n")
