"""The run registry: start, watch, stop and reconcile trainer processes of a workspace.

On disk, a run is `outputs/<run-id>/` with run.json (how it was started, pids, exit),
config.toml (the frozen config), events.jsonl (the trainer's progress), trainer.log, and
control/ (requests from viewers). The truth about a run is reconciled from all of them:
events say what the trainer reported, run.json what the supervisor saw, and the process
table whether anything is still alive. A run whose processes are gone without `run.end`
is `crashed`, with the exit code or signal the supervisor recorded; nothing stays
"running" forever.

API (used by the CLI and the TUI; all take a Workspace or a folder path):
    validate(ws) -> (Project | None, problems)          config + rules + dataset scan
    list_runs(ws) -> list[RunInfo]                      oldest first, reconciled
    get_run(ws, run_id) -> RunInfo
    active_run(ws) -> RunInfo | None                    the run holding the lock, if alive
    start_run(ws, *, fresh=False, detach=True, max_steps=None, resume=None) -> RunInfo
        validates first (ConfigError with every problem), takes the lock (LockHeld naming
        the holder's pid and run id; a stale lock is taken over and said so in
        RunInfo.notes), creates the run folder, run.json, config.toml, trainer.log, then
        launches through core/launch.py: detached under a supervisor process, or as a
        child of this process (detach=False; `wait_run` / `local_process` then apply).
    request(ws, run_id, action)                         "stop" | "checkpoint" | "validate"
    stop_run(ws, run_id=None, *, timeout=60.0) -> RunInfo
        control file, then SIGTERM if the trainer did not take it up, then SIGKILL to the
        whole process group once `timeout` has passed.
    wait_run(ws, run_id, timeout=None) -> RunInfo       until the run's status is final
    kill_run(info) -> bool                              SIGKILL to the trainer's process group
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import config, lock, preflight, supervise
from . import events as ev
from . import launch as launch_mod
from .lock import LockHeld, pid_alive
from .problems import ConfigError, Problem, has_errors
from .workspace import Workspace

STATUSES = ("starting", "running", "completed", "stopped", "failed", "crashed")
FINAL = ("completed", "stopped", "failed", "crashed")
ACTIONS = ("stop", "checkpoint", "validate")
CONTROL_DIR = "control"
CONFIG_FILE = "config.toml"

__all__ = [
    "ACTIONS",
    "FINAL",
    "STATUSES",
    "ConfigError",
    "LockHeld",
    "RunInfo",
    "RunLister",
    "RunStartError",
    "active_run",
    "get_run",
    "kill_run",
    "list_runs",
    "local_process",
    "request",
    "start_run",
    "stop_run",
    "validate",
    "wait_run",
]


class RunStartError(RuntimeError):
    """The trainer (or its supervisor) could not be started; the message says why."""


@dataclass
class RunInfo:
    """One run as a viewer should show it."""

    run_id: str
    dir: Path
    status: str  # starting | running | completed | stopped | failed | crashed
    pid: int | None = None  # the trainer (or accelerate launcher) process
    started: float | None = None  # unix seconds
    ended: float | None = None
    step: int | None = None  # last step reported
    total_steps: int | None = None
    last_loss: float | None = None
    error: str | None = None  # run.end's error for failed runs
    exit_detail: str | None = None  # how the process ended when that matters (signal, code)
    config_hash: str | None = None
    resumed_from: int | None = None  # the step resumed from, from run.start
    # more, for viewers that want them
    stage: str | None = None  # last stage event's name (load_models, cache_latents, train...)
    exit_code: int | None = None
    signal: str | None = None  # e.g. "SIGKILL"
    supervisor_pid: int | None = None
    world_size: int | None = None
    last_checkpoint: str | None = None  # absolute path of the newest checkpoint event
    last_event_t: float | None = None
    traceback_tail: str | None = None
    notes: list[str] = field(default_factory=list)  # things to tell the person (stale lock taken over)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    @property
    def events_path(self) -> Path:
        return self.dir / ev.EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / supervise.LOG_FILE

    def to_json(self) -> dict:
        out = asdict(self)
        out["dir"] = str(self.dir)
        return out


def _ws(ws: Workspace | str | os.PathLike) -> Workspace:
    return ws if isinstance(ws, Workspace) else Workspace.at(ws)


# -- validation ---------------------------------------------------------------------------


def validate(ws) -> tuple[config.Project | None, list[Problem]]:
    """Everything `fluxtui validate` checks: the file, cross-field rules, the datasets."""
    ws = _ws(ws)
    project, problems = config.load(ws.project_file)
    if project is None:
        return None, problems
    from . import rules  # imports the dataset scanner too

    _reports, more = rules.check_all(project)
    problems = list(problems) + more + preflight.problems(project)
    return (None if has_errors(problems) else project), problems


# -- reading runs -------------------------------------------------------------------------


@dataclass
class _Summary:
    start: dict | None = None
    end: dict | None = None
    last_step: dict | None = None
    stage: dict | None = None
    train_total: int | None = None
    checkpoint: dict | None = None
    last_t: float | None = None


def _summarise(events_path: Path, head_bytes: int = 1 << 16, tail_bytes: int = 1 << 18) -> _Summary:
    """What a run list needs from events.jsonl, from its head and tail only (long runs
    have megabytes of step events)."""
    s = _Summary()
    try:
        with open(events_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(0)
            if size <= head_bytes + tail_bytes:
                chunks = [f.read(size)]
            else:
                head = f.read(head_bytes)
                f.seek(size - tail_bytes)
                tail = f.read(tail_bytes)
                chunks = [head.rsplit(b"\n", 1)[0], tail.split(b"\n", 1)[1]]
    except OSError:
        return s
    steps: list[bytes] = []  # the newest step lines: only the last one that parses is needed
    for chunk in chunks:
        for raw in chunk.splitlines():
            if _STEP_LINE.search(raw):  # nearly every line of a long run: not parsed
                steps = [*steps[-1:], raw]
                continue
            e = _event(raw)
            if e is None:
                continue
            kind = e.get("type")
            if kind == "run.start":
                s.start = s.start or e
            elif kind == "run.end":
                s.end = e
            elif kind == "stage":
                s.stage = e
                if e.get("name") == "train" and e.get("total"):
                    s.train_total = e.get("total")
            elif kind == "checkpoint":
                s.checkpoint = e
            if isinstance(e.get("t"), (int, float)):
                s.last_t = e["t"]
    for raw in reversed(steps):  # the very last may be half-written
        e = _event(raw)
        if e is not None and e.get("type") == "step":
            s.last_step = e
            if isinstance(e.get("t"), (int, float)) and (s.last_t is None or e["t"] > s.last_t):
                s.last_t = e["t"]
            break
    return s


_STEP_LINE = re.compile(rb'"type"\s*:\s*"step"')


def _event(raw: bytes) -> dict | None:
    try:
        e = json.loads(raw)
    except ValueError:
        return None
    return e if isinstance(e, dict) else None


def _total_from_config(run_dir: Path, record: dict) -> int | None:
    if record.get("max_steps"):
        return int(record["max_steps"])
    try:
        doc = config.tomllib.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        steps = doc.get("training", {}).get("max_train_steps")
        return int(steps) if isinstance(steps, int) and steps > 0 else None
    except (OSError, ValueError):
        return None


def get_run(ws, run_id: str) -> RunInfo:
    """One run, reconciled with the process table."""
    ws = _ws(ws)
    run_dir = ws.run_dir(run_id)
    record = supervise.read_record(run_dir)
    s = _summarise(run_dir / ev.EVENTS_FILE)
    info = RunInfo(
        run_id=run_id,
        dir=run_dir,
        status=record.get("status") or "starting",
        pid=record.get("pid"),
        started=record.get("started") or (s.start or {}).get("t"),
        ended=record.get("ended"),
        config_hash=record.get("config_hash") or (s.start or {}).get("config_hash"),
        exit_code=record.get("exit_code"),
        signal=record.get("signal"),
        exit_detail=record.get("exit_detail"),
        supervisor_pid=record.get("supervisor_pid"),
        world_size=(s.start or {}).get("world_size") or record.get("num_processes"),
        last_event_t=s.last_t,
    )
    if s.start is not None:
        info.resumed_from = s.start.get("resumed_from")
        if info.pid is None:  # a trainer started by hand, without run.json
            info.pid = s.start.get("pid")
    if s.last_step is not None:
        info.step = s.last_step.get("step")
        info.last_loss = s.last_step.get("loss")
    if s.stage is not None:
        info.stage = s.stage.get("name")
    if s.checkpoint is not None and s.checkpoint.get("path"):
        info.last_checkpoint = str(run_dir / s.checkpoint["path"])  # stays as it is when absolute
    info.total_steps = s.train_total or _total_from_config(run_dir, record)

    trainer_alive = pid_alive(info.pid, record.get("pid_start"))
    supervisor_alive = pid_alive(record.get("supervisor_pid"), record.get("supervisor_pid_start"))
    if s.end is not None:
        info.status = s.end.get("status") if s.end.get("status") in FINAL else "failed"
        info.error = s.end.get("error") or None
        info.traceback_tail = s.end.get("traceback_tail") or None
        if s.end.get("step") is not None:
            info.step = s.end.get("step")
        info.ended = info.ended or s.end.get("t")
        if _orphaned(record, trainer_alive, supervisor_alive):
            _repair_record(run_dir, info)
        return info
    if info.status in FINAL:  # the supervisor recorded the exit (a crash: no run.end)
        return info
    if trainer_alive or (info.pid is None and supervisor_alive):
        info.status = "running" if (s.start or s.last_step) else "starting"
        return info
    info.status = "crashed"
    info.ended = info.ended or s.last_t
    if supervisor_alive:
        info.exit_detail = "the trainer is gone without run.end; its supervisor is recording how it ended"
    elif info.pid is None:
        info.exit_detail = "the supervisor died before the trainer started — see trainer.log"
    else:
        info.exit_detail = (
            "the trainer is gone without run.end and no exit status was recorded "
            "(its supervisor was killed too, or the machine restarted) — see trainer.log"
        )
    if _orphaned(record, trainer_alive, supervisor_alive):
        _repair_record(run_dir, info)
    return info


def _orphaned(record: dict, trainer_alive: bool, supervisor_alive: bool) -> bool:
    """run.json says starting/running, but the supervisor that would record the end is gone
    (only once one was recorded: before that, start_run itself is still writing)."""
    return (
        record.get("status") not in FINAL
        and bool(record.get("supervisor_pid"))
        and not trainer_alive
        and not supervisor_alive
    )


def _repair_record(run_dir: Path, info: RunInfo) -> None:
    """run.json is the record: when every process of the run is gone and it still says
    starting/running (the supervisor was killed, or could not write), write what the events
    and the process table say. A read-only or full disk leaves it for a later read."""
    try:
        supervise.update_record(
            run_dir,
            status=info.status,
            ended=info.ended or time.time(),
            exit_detail=info.exit_detail,
            repaired=f"status reconciled by a later read ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        )
    except OSError:
        pass


def _run_ids(ws: Workspace) -> list[str]:
    if not ws.outputs_dir.is_dir():
        return []
    return sorted(
        p.name for p in ws.outputs_dir.iterdir() if (p / supervise.RUN_FILE).exists() or (p / ev.EVENTS_FILE).exists()
    )


def list_runs(ws) -> list[RunInfo]:
    """Every run of the workspace, oldest first (run ids sort by start time)."""
    ws = _ws(ws)
    return [get_run(ws, run_id) for run_id in _run_ids(ws)]


def active_run(ws) -> RunInfo | None:
    """The run that holds the workspace lock, or else the newest run still alive."""
    ws = _ws(ws)
    holder = lock.holder(ws.lock_file)
    if holder is not None and holder.run_id and ws.run_dir(holder.run_id).is_dir():
        info = get_run(ws, holder.run_id)
        if info.active:
            return info
    for run_id in reversed(_run_ids(ws)):
        info = get_run(ws, run_id)
        if info.active:
            return info
    return None


# -- starting -----------------------------------------------------------------------------

# Children started by this process (detach=False): run_id -> (Popen, recorder thread)
_local: dict[str, tuple[subprocess.Popen, threading.Thread]] = {}


def local_process(run_id: str) -> subprocess.Popen | None:
    """The trainer's Popen when this process started it with detach=False."""
    entry = _local.get(run_id)
    return entry[0] if entry else None


def start_run(
    ws,
    *,
    fresh: bool = False,
    detach: bool = True,
    max_steps: int | None = None,
    resume: str | os.PathLike | None = None,
    keep_lock: bool = False,
    project: config.Project | None = None,
) -> RunInfo:
    """Validate, lock, freeze the config and launch a trainer. See the module docstring.

    `resume` passes an explicit checkpoint (otherwise the trainer resumes from the latest
    compatible one by itself unless `fresh`). `keep_lock` (detach=False only) leaves the
    lock with this process when the trainer exits, for a caller that restarts runs (watch).
    `project` skips validation when the caller has just validated.
    """
    ws = _ws(ws)
    if project is None:
        project, problems = validate(ws)
        if project is None:
            raise ConfigError([p for p in problems if p.is_error] or problems)
    ws.outputs_dir.mkdir(parents=True, exist_ok=True)
    run_id, run_dir = _new_run_dir(ws)
    try:
        note = lock.acquire(ws.lock_file, run_id)
    except BaseException:
        _remove_empty_run_dir(run_dir)
        raise
    try:
        info = _prepare_and_launch(ws, project, run_id, run_dir, fresh, detach, max_steps, resume, keep_lock)
    except BaseException:
        lock.release(ws.lock_file, run_id=run_id)
        raise
    if note:
        info.notes.append(note)
    return info


def _new_run_dir(ws: Workspace) -> tuple[str, Path]:
    for _ in range(100):
        run_id = ws.new_run_id()
        run_dir = ws.run_dir(run_id)
        try:
            run_dir.mkdir(parents=True)
            return run_id, run_dir
        except FileExistsError:
            continue  # a run started in the same second by someone else
    raise RunStartError(f"cannot create a run folder in {ws.outputs_dir}")


def _remove_empty_run_dir(run_dir: Path) -> None:
    try:
        run_dir.rmdir()
    except OSError:
        pass


def _prepare_and_launch(ws, project, run_id, run_dir, fresh, detach, max_steps, resume, keep_lock) -> RunInfo:
    from fluxtui import __version__

    (run_dir / CONTROL_DIR).mkdir(exist_ok=True)
    config.atomic_write_text(run_dir / CONFIG_FILE, project.text)
    launch = launch_mod.for_project(project, ws.root, run_id, fresh=fresh, resume=resume, max_steps=max_steps)
    record = {
        "run_id": run_id,
        "workspace": str(ws.root),
        "status": "starting",
        "pid": None,
        "command": launch.argv,
        "env": launch.env,
        "num_processes": launch.num_processes,
        "config_hash": project.config_hash(),
        "started": time.time(),
        "ended": None,
        "exit_code": None,
        "signal": None,
        "exit_detail": None,
        "fresh": fresh,
        "resume": str(resume) if resume else None,
        "max_steps": max_steps,
        "detached": detach,
        "fluxtui_version": __version__,
    }
    supervise.write_record(run_dir, record)
    with open(run_dir / supervise.LOG_FILE, "a", encoding="utf-8") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"[fluxtui {__version__}] run {run_id} started {stamp}\n")
        for note in launch.notes:
            log.write(f"[fluxtui] {note}\n")
        extra = " ".join(f"{k}={v}" for k, v in launch.env.items() if k != "PYTHONUNBUFFERED")
        log.write(f"[fluxtui] $ {extra + ' ' if extra else ''}{subprocess.list2cmdline(launch.argv)}\n")
    if detach:
        _launch_detached(ws, run_id, run_dir)
    else:
        proc = supervise.spawn(run_dir)
        lock.update(ws.lock_file, expect_pid=os.getpid(), trainer_pid=proc.pid, run_id=run_id)
        thread = threading.Thread(
            target=supervise.wait_and_record,
            args=(run_dir, proc),
            kwargs={"lock_file": None if keep_lock else ws.lock_file},
            name=f"fluxtui-supervise-{run_id}",
            daemon=True,
        )
        _local[run_id] = (proc, thread)
        thread.start()
    return get_run(ws, run_id)


def _launch_detached(ws: Workspace, run_id: str, run_dir: Path, timeout: float = 30.0) -> None:
    with open(run_dir / supervise.LOG_FILE, "ab", buffering=0) as log:
        sup = subprocess.Popen(
            [sys.executable, "-m", "fluxtui.core.supervise", str(ws.root), run_id, str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # The supervisor takes the lock over and records the trainer's pid; wait for that, so
    # the caller may exit at once and a `status` right after sees a pid.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervise.read_record(run_dir).get("pid"):
            return
        if sup.poll() is not None:
            break
        time.sleep(0.02)
    if sup.poll() is None:
        return  # slow machine: it is alive and will get there
    tail = supervise._log_tail(run_dir, 2000).strip().splitlines()[-5:]
    raise RunStartError("the run supervisor exited at once:\n" + "\n".join(tail))


# -- control ------------------------------------------------------------------------------


def request(ws, run_id: str, action: str) -> Path:
    """Ask a running trainer to stop, checkpoint or validate: a file in outputs/<run>/control/.
    The trainer acts on it between steps and removes it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    ws = _ws(ws)
    folder = ws.run_dir(run_id) / CONTROL_DIR
    if not folder.parent.is_dir():
        raise FileNotFoundError(f"no run {run_id} in {ws.outputs_dir}")
    folder.mkdir(exist_ok=True)
    path = folder / action
    config.atomic_write_text(path, json.dumps({"t": time.time(), "by_pid": os.getpid()}) + "\n")
    return path


def _signal(pid: int, sig: int, *, group: bool = False) -> bool:
    try:
        if group and os.getpgid(pid) == pid:  # its own session: the whole group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_run(info: RunInfo) -> bool:
    """SIGKILL to the trainer's whole process group (accelerate ranks, data workers)."""
    return bool(info.pid) and _signal(info.pid, signal.SIGKILL, group=True)


def _reap(run_id: str) -> None:
    proc = local_process(run_id)
    if proc is not None:
        proc.poll()


def _trainer_alive(ws: Workspace, info: RunInfo) -> bool:
    _reap(info.run_id)
    record = supervise.read_record(info.dir)
    return pid_alive(info.pid, record.get("pid_start"))


def stop_run(
    ws,
    run_id: str | None = None,
    *,
    timeout: float = 60.0,
    grace: float | None = None,
    on_progress=None,
) -> RunInfo | None:
    """Stop a run gracefully (the trainer saves a checkpoint), by force if it must.

    1. the `stop` control file; 2. SIGTERM when the trainer has not taken the file up after
    `grace` seconds (default: a sixth of the timeout, at most 10 s; it may be busy loading
    models); 3. SIGKILL to its process group once `timeout` seconds have passed.
    `on_progress(message)` hears about each escalation. Returns the reconciled run, or None
    when no run was active.
    """
    ws = _ws(ws)
    info = get_run(ws, run_id) if run_id else active_run(ws)
    if info is None or not info.active:
        return info
    say = on_progress or (lambda _msg: None)
    if grace is None:
        grace = min(10.0, timeout / 6)
    start = time.monotonic()
    control = request(ws, info.run_id, "stop")
    sent_term = False
    while _trainer_alive(ws, info):
        elapsed = time.monotonic() - start
        if info.pid is None:  # still starting: wait for the pid
            info = get_run(ws, info.run_id)
        elif not sent_term and elapsed >= grace and control.exists():
            say(f"the trainer has not taken up the stop request after {grace:.0f}s: sending SIGTERM")
            sent_term = _signal(info.pid, signal.SIGTERM)
        elif elapsed >= timeout:
            say(f"still running after {timeout:.0f}s: sending SIGKILL")
            kill_run(info)
            break
        time.sleep(0.1)
    return wait_run(ws, info.run_id, timeout=10.0)


def wait_run(ws, run_id: str, timeout: float | None = None, poll: float = 0.1) -> RunInfo:
    """Wait until the run's status is final (and its supervisor has recorded the exit),
    or the timeout passes; returns the run as it then is."""
    ws = _ws(ws)
    deadline = None if timeout is None else time.monotonic() + timeout
    entry = _local.get(run_id)
    while True:
        _reap(run_id)
        info = get_run(ws, run_id)
        recorded = supervise.read_record(info.dir).get("status") in FINAL
        supervisor_gone = not pid_alive(info.supervisor_pid) or info.supervisor_pid == os.getpid()
        if info.status in FINAL and (recorded or supervisor_gone):
            if entry is not None:
                entry[1].join(timeout=5)
                info = get_run(ws, run_id)
            return info
        if deadline is not None and time.monotonic() >= deadline:
            return info
        time.sleep(poll)


# -- polling cheaply ----------------------------------------------------------------------


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RunLister:
    """`list_runs` for a viewer that polls: each run's RunInfo is kept until its run.json or
    events.jsonl changes (mtime, size), so a poll with nothing new costs a few stats. A run
    that is still active is re-checked against the process table on every poll (cheap),
    because a killed trainer changes no file.

    `poll()` returns (runs oldest first, active run or None, changed since the last poll)."""

    def __init__(self, ws):
        self.ws = _ws(ws)
        self._cache: dict[str, tuple[tuple, RunInfo, dict]] = {}
        self._last: list[RunInfo] | None = None
        self.reads = 0  # runs read from disk, for tests: an unchanged poll reads none
        self.polls = 0

    def _info(self, run_id: str) -> RunInfo:
        run_dir = self.ws.run_dir(run_id)
        key = (_file_key(run_dir / supervise.RUN_FILE), _file_key(run_dir / ev.EVENTS_FILE))
        cached = self._cache.get(run_id)
        if cached is not None and cached[0] == key:
            info, record = cached[1], cached[2]
            if not info.active:
                return info
            alive = pid_alive(info.pid, record.get("pid_start")) or (
                info.pid is None and pid_alive(record.get("supervisor_pid"), record.get("supervisor_pid_start"))
            )
            if alive:
                return info
        self.reads += 1
        info = get_run(self.ws, run_id)
        # read after get_run: a repaired record changes run.json, and its key with it
        key = (_file_key(run_dir / supervise.RUN_FILE), _file_key(run_dir / ev.EVENTS_FILE))
        self._cache[run_id] = (key, info, supervise.read_record(run_dir) if info.active else {})
        return info

    def poll(self) -> tuple[list[RunInfo], RunInfo | None, bool]:
        self.polls += 1
        ids = _run_ids(self.ws)
        for gone in set(self._cache) - set(ids):
            del self._cache[gone]
        infos = [self._info(run_id) for run_id in ids]
        changed = self._last is None or infos != self._last
        self._last = infos
        active = next((r for r in reversed(infos) if r.active), None)
        return infos, active, changed
