"""core/runs.py against real child processes: a scripted stand-in trainer that speaks the
events/control/signal contract in milliseconds, so lock, supervision, stop escalation and
crash reconciliation are tested on real processes without loading a model. The real
trainer is exercised by tests/test_cli_run.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fluxtui.core import config, lock, runs, supervise, workspace
from fluxtui.core import events as ev
from fluxtui.core.launch import TRAINER_ENV
from fluxtui.core.problems import ConfigError

FAKE_TRAINER = textwrap.dedent(
    '''
    """A stand-in for `python -m fluxtui.trainer`: same arguments, events, control, signals.
    FAKE_MODE: "" (train), "fail" (run.end failed at step 3), "ignore" (ignores stop requests
    and SIGTERM), "exit3" (exits 3 at step 3 without run.end). FAKE_STEP_S: seconds a step."""
    import argparse, json, os, signal, sys, time
    from pathlib import Path

    try:
        import tomllib
    except ImportError:
        import tomli as tomllib

    p = argparse.ArgumentParser()
    p.add_argument("workspace")
    p.add_argument("--run", required=True)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--resume")
    p.add_argument("--max-steps", type=int)
    a = p.parse_args()
    ws = Path(a.workspace)
    run_dir = ws / "outputs" / a.run
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    total = a.max_steps or cfg["training"]["max_train_steps"]
    mode = os.environ.get("FAKE_MODE", "")
    step_s = float(os.environ.get("FAKE_STEP_S", "0.01"))
    out = open(run_dir / "events.jsonl", "a")

    def emit(kind, **f):
        out.write(json.dumps({"t": time.time(), "type": kind, "run": a.run, **f}) + "\\n")
        out.flush()

    signals = []

    def on_signal(num, frame):
        if mode == "ignore":
            return
        signals.append(num)
        if len(signals) > 1:
            os._exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def checkpoints():
        found = []
        for d in (ws / "outputs").glob("*/checkpoints/checkpoint-*"):
            found.append((int(d.name.split("-")[1]), d))
        return sorted(found)

    start = 0
    if a.resume:
        start = int(Path(a.resume).name.split("-")[1])
    elif not a.fresh and checkpoints():
        start = checkpoints()[-1][0]

    def save(step):
        d = run_dir / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True, exist_ok=True)
        emit("checkpoint", step=step, path=str(d), seconds=0.0, removed=[])

    print(f"fake trainer pid {os.getpid()} run {a.run} from step {start}", flush=True)
    emit("run.start", pid=os.getpid(), world_size=1, config_hash="fake", resumed_from=start or None,
         fluxtui_version="0")
    emit("stage", name="train", done=start, total=total)
    step = start
    while step < total:
        control = run_dir / "control"
        stop = bool(signals)
        for name in ("stop", "checkpoint", "validate"):
            f = control / name
            if f.exists() and mode != "ignore":
                f.unlink()
                if name == "stop":
                    stop = True
                elif name == "checkpoint":
                    save(step)
        if stop:
            save(step)
            emit("run.end", status="stopped", step=step, error=None, traceback_tail=None)
            print("stopped", flush=True)
            sys.exit(0)
        time.sleep(step_s)
        step += 1
        emit("step", step=step, epoch=0, loss=1.0 / step, lr=1e-3, grad_norm=1.0, samples_per_s=1.0,
             vram_alloc_mb=0, vram_peak_mb=0, rss_mb=100)
        print(f"step {step}", flush=True)
        if mode == "fail" and step == 3:
            print("Traceback: boom", flush=True)
            emit("run.end", status="failed", step=step, error="boom: the fake failed", traceback_tail="boom")
            sys.exit(1)
        if mode == "exit3" and step == 3:
            sys.exit(3)
    save(step)
    emit("run.end", status="completed", step=step, error=None, traceback_tail=None)
    '''
)


@pytest.fixture
def ws(demo_workspace, tmp_path, monkeypatch) -> workspace.Workspace:
    """A demo workspace whose trainer is the fake one."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "fake_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.setenv(TRAINER_ENV, "fake_trainer")
    path = os.pathsep.join(filter(None, [str(tmp_path / "fake"), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("FAKE_STEP_S", "0.01")
    monkeypatch.delenv("FAKE_MODE", raising=False)
    w = workspace.Workspace.at(demo_workspace)
    config.set_values(w.project_file, {"training.max_train_steps": 20, "hardware.num_processes": 1})
    return w


def _wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _steps(info: runs.RunInfo) -> list[int]:
    return [e["step"] for e in ev.read_all(info.events_path) if e["type"] == "step"]


def test_detached_run_completes_and_is_recorded(ws):
    info = runs.start_run(ws, detach=True)
    assert info.pid and info.status in ("starting", "running")
    run_dir = ws.run_dir(info.run_id)
    assert (run_dir / "config.toml").read_text() == ws.project_file.read_text()
    done = runs.wait_run(ws, info.run_id, timeout=60)
    assert done.status == "completed", done
    assert done.step == 20 and done.total_steps == 20
    assert done.last_loss == pytest.approx(1 / 20)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert record["command"][1:3] == ["-m", "fake_trainer"]
    assert record["supervisor_pid"] != os.getpid()
    log = (run_dir / "trainer.log").read_text()
    assert f"run {info.run_id} started" in log and "step 20" in log
    _wait_for(lambda: not ws.lock_file.exists(), what="lock released by the supervisor")
    assert runs.active_run(ws) is None
    assert [r.run_id for r in runs.list_runs(ws)] == [info.run_id]


def test_invalid_config_refuses_with_every_problem(ws):
    text = ws.project_file.read_text().replace("learning_rate = 0.001", 'learning_rate = "fast"')
    text = text.replace("train_batch_size = 4", "train_batch_size = 0")
    ws.project_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        runs.start_run(ws)
    keys = {p.key for p in err.value.problems}
    assert {"training.learning_rate", "training.train_batch_size"} <= keys
    assert all(p.line for p in err.value.problems)
    assert not ws.lock_file.exists() and runs.list_runs(ws) == []


def test_second_run_refused_then_stop_with_checkpoint(ws, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    config.set_values(ws.project_file, {"training.max_train_steps": 100000})
    first = runs.start_run(ws, detach=True)
    with pytest.raises(lock.LockHeld) as err:
        runs.start_run(ws, detach=True)
    message = str(err.value)
    assert first.run_id in message and str(first.pid) in message
    assert err.value.holder.trainer_pid == first.pid
    _wait_for(lambda: (runs.get_run(ws, first.run_id).step or 0) >= 3, what="steps")
    active = runs.active_run(ws)
    assert active is not None and active.run_id == first.run_id and active.status == "running"
    stopped = runs.stop_run(ws, timeout=60)
    assert stopped.status == "stopped", stopped
    assert stopped.last_checkpoint and Path(stopped.last_checkpoint).name == f"checkpoint-{stopped.step}"
    assert not (stopped.dir / "control" / "stop").exists()  # taken up by the trainer
    _wait_for(lambda: not ws.lock_file.exists(), what="lock released")
    # the next run resumes from that checkpoint by default, or starts over with fresh=True
    config.set_values(ws.project_file, {"training.max_train_steps": stopped.step + 5})
    resumed = runs.wait_run(ws, runs.start_run(ws).run_id, timeout=60)
    assert resumed.resumed_from == stopped.step and _steps(resumed)[0] == stopped.step + 1
    fresh = runs.wait_run(ws, runs.start_run(ws, fresh=True).run_id, timeout=60)
    assert fresh.resumed_from is None and _steps(fresh)[0] == 1


def test_sigkill_of_trainer_is_crashed_with_signal(ws, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    config.set_values(ws.project_file, {"training.max_train_steps": 100000})
    info = runs.start_run(ws, detach=True)
    _wait_for(lambda: runs.get_run(ws, info.run_id).step, what="a step")
    os.kill(info.pid, signal.SIGKILL)
    done = runs.wait_run(ws, info.run_id, timeout=20)
    assert done.status == "crashed"
    assert done.signal == "SIGKILL" and done.exit_code is None
    assert "SIGKILL" in done.exit_detail and "OOM" in done.exit_detail and "dmesg" in done.exit_detail
    _wait_for(lambda: not ws.lock_file.exists(), what="lock released")


def test_exit_code_without_run_end_and_failed_run(ws, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "exit3")
    crashed = runs.wait_run(ws, runs.start_run(ws).run_id, timeout=60)
    assert crashed.status == "crashed" and crashed.exit_code == 3
    assert "code 3" in crashed.exit_detail
    monkeypatch.setenv("FAKE_MODE", "fail")
    failed = runs.wait_run(ws, runs.start_run(ws).run_id, timeout=60)
    assert failed.status == "failed" and failed.error == "boom: the fake failed" and failed.exit_code == 1
    assert failed.exit_detail is None and failed.step == 3


def test_everything_killed_is_crashed_and_lock_is_taken_over(ws, monkeypatch):
    """kill -9 of trainer AND supervisor (a power cut, say): nothing records the exit, the
    lock is left behind. The run must not stay "running", and the next run takes over."""
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    config.set_values(ws.project_file, {"training.max_train_steps": 100000})
    info = runs.start_run(ws, detach=True)
    _wait_for(lambda: runs.get_run(ws, info.run_id).step, what="a step")
    os.kill(info.supervisor_pid, signal.SIGKILL)
    os.kill(info.pid, signal.SIGKILL)
    _wait_for(lambda: runs.get_run(ws, info.run_id).status == "crashed", what="crashed")
    gone = runs.get_run(ws, info.run_id)
    assert "no exit status was recorded" in gone.exit_detail
    assert ws.lock_file.exists() and lock.holder(ws.lock_file) is None  # stale
    config.set_values(ws.project_file, {"training.max_train_steps": 5})
    nxt = runs.start_run(ws, fresh=True)
    assert any("stale lock" in n and info.run_id in n for n in nxt.notes)
    assert runs.wait_run(ws, nxt.run_id, timeout=60).status == "completed"


def test_stop_escalates_to_sigkill(ws, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "ignore")
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    config.set_values(ws.project_file, {"training.max_train_steps": 100000})
    info = runs.start_run(ws, detach=True)
    _wait_for(lambda: runs.get_run(ws, info.run_id).step, what="a step")
    heard: list[str] = []
    done = runs.stop_run(ws, info.run_id, timeout=2.0, grace=0.5, on_progress=heard.append)
    assert [m.split(":")[-1].strip() for m in heard] == ["sending SIGTERM", "sending SIGKILL"]
    assert done.status == "crashed" and done.signal == "SIGKILL"


def test_foreground_child_and_local_supervision(ws):
    info = runs.start_run(ws, detach=False)
    assert runs.local_process(info.run_id) is not None
    assert lock.read(ws.lock_file).pid == os.getpid()
    done = runs.wait_run(ws, info.run_id, timeout=60)
    assert done.status == "completed" and done.exit_code == 0
    assert not ws.lock_file.exists()


def test_reconciles_a_record_left_running(ws):
    """A run.json that says running, with a pid that is long gone and no run.end."""
    run_dir = ws.run_dir("20000101-000000")
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    supervise.write_record(
        run_dir, {"run_id": run_dir.name, "status": "running", "pid": dead.pid, "supervisor_pid": dead.pid}
    )
    (run_dir / "events.jsonl").write_text(
        json.dumps(
            {
                "t": 1.0,
                "type": "run.start",
                "run": run_dir.name,
                "pid": dead.pid,
                "world_size": 1,
                "config_hash": "x",
                "resumed_from": None,
                "fluxtui_version": "0",
            }
        )
        + "\n"
    )
    info = runs.get_run(ws, run_dir.name)
    assert info.status == "crashed" and not info.active
    assert runs.active_run(ws) is None


def test_request_writes_control_files(ws):
    run_dir = ws.run_dir("20000101-000001")
    run_dir.mkdir(parents=True)
    path = runs.request(ws, run_dir.name, "checkpoint")
    assert path == run_dir / "control" / "checkpoint" and path.exists()
    with pytest.raises(ValueError):
        runs.request(ws, run_dir.name, "explode")


def test_lock_is_reentrant_and_ignores_recycled_pids(tmp_path):
    f = tmp_path / "lock"
    assert lock.acquire(f, "a") is None
    assert lock.acquire(f, "b") is None  # same holder: re-entrant
    assert lock.read(f).run_id == "b"
    info = lock.read(f)
    info.pid_start = "1"  # as if our pid had belonged to another process before
    f.write_text(json.dumps(vars(info)))
    assert lock.holder(f) is None
    assert lock.release(f) and not f.exists()


def test_run_json_left_running_by_a_killed_supervisor_is_repaired_on_the_next_read(ws, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    config.set_values(ws.project_file, {"training.max_train_steps": 100000})
    info = runs.start_run(ws, detach=True)
    _wait_for(lambda: runs.get_run(ws, info.run_id).step, what="a step")
    os.kill(info.supervisor_pid, signal.SIGKILL)
    os.kill(info.pid, signal.SIGKILL)
    _wait_for(lambda: not lock.pid_alive(info.pid) and not lock.pid_alive(info.supervisor_pid), what="both gone")
    assert supervise.read_record(info.dir)["status"] == "running"  # what the dead left behind
    assert runs.get_run(ws, info.run_id).status == "crashed"
    record = supervise.read_record(info.dir)
    assert record["status"] == "crashed" and record["ended"] and "no exit status" in record["exit_detail"]
    assert "reconciled" in record["repaired"]


def test_a_supervisor_that_cannot_write_still_releases_the_lock_and_the_record_is_repaired(
    demo_workspace, tmp_path, monkeypatch
):
    """Disk full while the supervisor records the exit: it must not die on its own write."""
    import shutil as sh

    from fault_support import fill, small_disk

    with small_disk(tmp_path / "disk", "96m") as disk:  # above what a run needs free at the start
        sh.copytree(demo_workspace, disk / "ws")
        (tmp_path / "fake").mkdir()
        (tmp_path / "fake" / "fake_trainer.py").write_text(FAKE_TRAINER)
        monkeypatch.setenv(TRAINER_ENV, "fake_trainer")
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "fake"), os.environ.get("PYTHONPATH")]))
        )
        monkeypatch.setenv("FAKE_STEP_S", "0.05")
        w = workspace.Workspace.at(disk / "ws")
        config.set_values(w.project_file, {"training.max_train_steps": 100000, "hardware.num_processes": 1})
        info = runs.start_run(w, detach=True)
        _wait_for(lambda: runs.get_run(w, info.run_id).step, what="a step")
        filler = fill(disk)
        os.kill(info.pid, signal.SIGKILL)  # the supervisor now records the exit on a full disk
        _wait_for(lambda: not lock.pid_alive(info.supervisor_pid), what="the supervisor to finish")
        assert lock.holder(w.lock_file) is None and not w.lock_file.exists()  # released all the same
        assert supervise.read_record(info.dir)["status"] == "running"  # its write failed
        filler.unlink()
        assert runs.get_run(w, info.run_id).status == "crashed"
        assert supervise.read_record(info.dir)["status"] == "crashed"  # repaired on this read


def test_a_signal_after_run_end_is_recorded_as_such(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    supervise.write_record(run_dir, {"run_id": "r", "status": "running", "pid": None})
    (run_dir / "events.jsonl").write_text(
        json.dumps({"t": 1.0, "type": "run.end", "run": "r", "status": "stopped", "step": 5, "error": None}) + "\n"
    )
    record = supervise.record_exit(run_dir, -signal.SIGTERM)
    assert record["status"] == "stopped" and record["signal"] == "SIGTERM"
    assert "after it had written run.end" in record["exit_detail"]
    assert "before it could write run.end" not in record["exit_detail"]
    # a second signal's exit (130) after its own run.end is what it says: no news
    assert supervise.record_exit(run_dir, 130)["exit_detail"] is None


STEP_STATS = {"grad_norm": 0.1, "samples_per_s": 1.0, "vram_alloc_mb": 0.0, "vram_peak_mb": 0.0, "rss_mb": 1.0}


def test_summary_of_a_long_run_reads_its_head_and_tail_and_survives_a_half_written_line(tmp_path):
    # a run list polls every second: only the head and tail are read, and of a long run's
    # step lines only the newest is parsed
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path, "r")
    w.emit("run.start", pid=1, world_size=1, config_hash="x", resumed_from=None, fluxtui_version="t")
    w.emit("stage", name="train", done=0, total=9000)
    for step in range(1, 6001):
        w.emit("step", step=step, epoch=1, loss=1 / step, lr=1e-3, **STEP_STATS)
        if step == 5990:
            w.emit("checkpoint", step=step, path="checkpoints/step-5990", seconds=1.0, removed=[])
    w.close()
    with open(path, "ab") as f:
        f.write(b'{"t": 1, "type": "step", "step": 6001, "lo')  # the trainer is mid-write
    assert path.stat().st_size > (1 << 16) + (1 << 18)  # head and tail, not the whole file
    s = runs._summarise(path)
    assert s.start["type"] == "run.start" and s.train_total == 9000
    assert s.last_step["step"] == 6000 and s.checkpoint["step"] == 5990 and s.end is None
    assert s.last_t == s.last_step["t"]
    with open(path, "ab") as f:
        f.write(b'ss": 0.1}\n')
    w = ev.EventWriter(path, "r")
    w.emit("run.end", status="completed", step=6001, error=None, traceback_tail=None)
    w.close()
    s = runs._summarise(path)
    assert s.last_step["step"] == 6001 and s.end["status"] == "completed" and s.last_t == s.end["t"]
