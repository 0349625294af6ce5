"""Start a trainer, wait for it, and record how it ended in run.json.

The trainer runs in its own session (its own process group), so a Ctrl+C in the terminal
that started it, or a closed SSH connection, never reaches it by accident; stopping is
always deliberate (control file, SIGTERM, SIGKILL to the group).

Two ways to use this module:
- in process (foreground `fluxtui run`): `spawn()` then `wait_and_record()` in a thread;
- as a small detached process (`fluxtui run --detach`, the TUI):
  `python -m fluxtui.core.supervise WORKSPACE RUN_ID` started in a new session by
  `runs.start_run`. It takes the workspace lock over from its parent, starts the trainer,
  waits, records the exit code or signal, and releases the lock. Its own output goes to the
  run's trainer.log, so a supervisor failure is visible where people look.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import events as ev
from . import lock
from .config import atomic_write_text

RUN_FILE = "run.json"
LOG_FILE = "trainer.log"
FINAL = ("completed", "stopped", "failed", "crashed")


def read_record(run_dir: Path) -> dict:
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_record(run_dir: Path, record: dict) -> None:
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(record, indent=1, default=str) + "\n")


def update_record(run_dir: Path, **changes) -> dict:
    """Read-modify-write of run.json. Only one process writes a run's record at a time
    (start_run, then its supervisor), so no lock is needed here."""
    record = read_record(run_dir)
    record.update(changes)
    write_record(run_dir, record)
    return record


def spawn(run_dir: Path) -> subprocess.Popen:
    """Start the trainer described by run.json (command, env) with its output appended to
    trainer.log, in a new session. Records pid and its start time in run.json."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    env = dict(os.environ)
    env.update(record.get("env") or {})
    with open(run_dir / LOG_FILE, "ab", buffering=0) as log:
        proc = subprocess.Popen(
            record["command"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=record.get("workspace") or None,
            start_new_session=True,
            close_fds=True,
        )
    _try_update(
        run_dir,
        pid=proc.pid,
        pid_start=lock.process_start_time(proc.pid),
        status="running",
        supervisor_pid=os.getpid(),
        supervisor_pid_start=lock.process_start_time(os.getpid()),
    )
    return proc


def _try_update(run_dir: Path, **changes) -> dict:
    """update_record that survives a full or read-only disk: the supervisor keeps waiting and
    releases the lock; the next read of the run (core.runs.get_run) repairs run.json."""
    try:
        return update_record(run_dir, **changes)
    except OSError as e:
        why = e.strerror or str(e)
        print(f"fluxtui supervisor: cannot write {Path(run_dir) / RUN_FILE}: {why}", file=sys.stderr, flush=True)
        return {**read_record(run_dir), **changes}


def wait_and_record(run_dir: Path, proc: subprocess.Popen, *, lock_file: Path | None = None) -> dict:
    """Wait for the trainer, then write its exit into run.json; release the lock if given."""
    rc = proc.wait()
    return record_exit(run_dir, rc, lock_file=lock_file)


def record_exit(run_dir: Path, returncode: int, *, lock_file: Path | None = None) -> dict:
    run_dir = Path(run_dir)
    end = last_run_end(run_dir / ev.EVENTS_FILE)
    pid = read_record(run_dir).get("pid")
    changes: dict = {
        "exit_code": returncode if returncode >= 0 else None,
        "signal": signal_name(-returncode) if returncode < 0 else None,
        "ended": time.time(),
    }
    if end is not None:
        changes["status"] = end.get("status") if end.get("status") in FINAL else "failed"
        # the trainer exits 0 (completed, stopped), 1 (failed) or EXIT_NOW_CODE (stopped at
        # once on a second signal, which its run.end says); anything else is news
        expected = returncode in (0, 1) or (returncode == EXIT_NOW_CODE and end.get("status") == "stopped")
        changes["exit_detail"] = None if expected else exit_detail_after_end(returncode)
    else:
        changes["status"] = "crashed"
        changes["exit_detail"] = exit_detail(returncode, run_dir, pid)
    record = _try_update(run_dir, **changes)
    if lock_file is not None:
        try:
            lock.release(lock_file, run_id=record.get("run_id"))
        except OSError as e:  # left stale: the next run takes it over
            print(f"fluxtui supervisor: cannot release {lock_file}: {e.strerror or e}", file=sys.stderr, flush=True)
    return record


def last_run_end(events_path: Path, tail_bytes: int = 1 << 16) -> dict | None:
    try:
        with open(events_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            data = f.read()
    except OSError:
        return None
    for raw in reversed(data.splitlines()):
        if b'"run.end"' not in raw:
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if event.get("type") == "run.end":
            return event
    return None


def _signal_numbers() -> set[int]:
    return {int(s) for s in signal.Signals}


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


OOM_HINT = "often the kernel's OOM killer: check `dmesg` and system RAM"
EXIT_NOW_CODE = 130  # trainer/control.py: a second SIGTERM/SIGINT, after writing run.end


def exit_detail_after_end(returncode: int) -> str:
    """A sentence for a trainer that wrote run.end and then ended unusually."""
    if returncode < 0:
        return f"ended by {signal_name(-returncode)} after it had written run.end (while exiting)"
    return f"exited with code {returncode} after it had written run.end"


def exit_detail(returncode: int, run_dir: Path | None = None, pid: int | None = None) -> str:
    """A sentence for a trainer that ended without (or despite) run.end."""
    sig = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else None)
    if sig is not None and sig not in _signal_numbers():
        sig = None
    log_tail = _log_tail(run_dir) if run_dir else ""
    if sig == signal.SIGKILL or _log_says_rank_killed(log_tail):
        who = "killed by SIGKILL" if sig == signal.SIGKILL else "a training process was killed by SIGKILL"
        if _kernel_says_oom(pid):
            return f"{who} — the kernel's OOM killer ended it (the machine ran out of RAM): reduce RAM use or add swap"
        return f"{who} — {OOM_HINT}"
    if sig is not None:
        name = signal_name(sig)
        what = {
            signal.SIGSEGV: "a segmentation fault in native code (CUDA driver, a compiled extension)",
            signal.SIGABRT: "an abort in native code",
            signal.SIGTERM: "terminated before it could write run.end",
            signal.SIGINT: "interrupted before it could write run.end",
            signal.SIGHUP: "its terminal went away",
            signal.SIGBUS: "a bus error (often a full /dev/shm or a truncated file)",
        }.get(sig, "ended by a signal")
        return f"killed by {name} — {what}"
    if returncode == 0:
        return "exited with code 0 without writing run.end"
    return f"exited with code {returncode} without writing run.end — see trainer.log"


def _log_tail(run_dir: Path, nbytes: int = 8192) -> str:
    try:
        with open(Path(run_dir) / LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - nbytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _log_says_rank_killed(text: str) -> bool:
    # torch elastic (under accelerate launch) reports a rank killed by the kernel like this
    return "Signal 9 (SIGKILL)" in text or "exitcode  : -9" in text


def _kernel_says_oom(pid: int | None) -> bool:
    """Best effort: the kernel log names the pid it killed; often unreadable without root."""
    if not pid:
        return False
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any("Killed process" in line and f"process {pid} " in line for line in out.splitlines()[-200:])


# -- the detached supervisor process --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workspace, run_id = Path(argv[0]), argv[1]
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()
    for sig in (signal.SIGINT, signal.SIGHUP):  # only `fluxtui stop` ends a run
        signal.signal(sig, signal.SIG_IGN)
    from .workspace import Workspace

    ws = Workspace.at(workspace)
    run_dir = ws.run_dir(run_id)
    lock.update(ws.lock_file, expect_pid=parent, pid=os.getpid())
    try:
        proc = spawn(run_dir)
    except Exception as e:
        print(f"fluxtui supervisor: cannot start the trainer: {e}", file=sys.stderr, flush=True)
        _try_update(run_dir, status="crashed", exit_detail=f"could not start the trainer: {e}", ended=time.time())
        lock.release(ws.lock_file, run_id=run_id)
        return 1
    try:
        lock.update(ws.lock_file, expect_pid=os.getpid(), trainer_pid=proc.pid)
    except OSError as e:  # the lock still names this supervisor, which lives until the trainer ends
        print(f"fluxtui supervisor: cannot update {ws.lock_file}: {e.strerror or e}", file=sys.stderr, flush=True)
    record = wait_and_record(run_dir, proc, lock_file=ws.lock_file)
    return 0 if record.get("status") in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
