"""`fluxtui run / status / logs / stop` as a person uses them: real `fluxtui` processes, the
real trainer on the tiny-random demo workspace (marked slow), or the scripted stand-in
trainer of test_runs.py where only the CLI's reaction to a failure is under test."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_runs import FAKE_TRAINER
from trainer_support import trainer_env, wait_for

from fluxtui.core import config, runs
from fluxtui.core import events as ev
from fluxtui.core.launch import TRAINER_ENV

CLI = [sys.executable, "-m", "fluxtui.cli"]
LONG = 1_000_000  # steps: a run that only ends when stopped


def cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], env=env or trainer_env(), capture_output=True, text=True, timeout=timeout
    )


def cli_popen(*args: str, out: Path, env: dict | None = None) -> subprocess.Popen:
    log = open(out, "w")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [*CLI, *map(str, args)], env=env or trainer_env(), stdout=log, stderr=subprocess.STDOUT, text=True
    )


def status_json(ws: Path) -> dict:
    result = cli("status", ws, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_of(ws: Path, run_id: str) -> dict:
    return next(r for r in status_json(ws)["runs"] if r["run_id"] == run_id)


def step_events(ws: Path, run_id: str) -> list[dict]:
    return [e for e in ev.read_all(Path(ws) / "outputs" / run_id / "events.jsonl") if e["type"] == "step"]


def run_ids(ws: Path) -> list[str]:
    return [r.run_id for r in runs.list_runs(ws)]


def wait_steps(ws: Path, run_id: str, n: int = 2, *, proc=None, timeout: float = 180) -> int:
    def enough():
        got = step_events(ws, run_id)
        return got[-1]["step"] if len(got) >= n else None

    return wait_for(enough, timeout=timeout, proc=proc, what=f"{n} steps of {run_id}")


@pytest.fixture
def demo(demo_workspace, tiny_model_dir) -> Path:
    """A fresh `init --demo` workspace using the session's tiny model; no intermediate
    checkpoints or validation (a stop still writes its checkpoint)."""
    from fluxtui.trainer.models import TINY_SEED

    models = demo_workspace / "cache" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / f"tiny-{TINY_SEED}").symlink_to(tiny_model_dir, target_is_directory=True)
    settings = {
        "training.max_train_steps": 12,
        "training.checkpointing_steps": 10_000,
        "validation.validation_steps": 10_000,
    }
    config.set_values(demo_workspace / "project.toml", settings)
    return demo_workspace


# -- without the trainer -------------------------------------------------------------------


def test_run_refuses_an_invalid_project(demo_workspace):
    ws = demo_workspace
    text = (ws / "project.toml").read_text().replace("train_batch_size = 4", "train_batch_size = 0")
    (ws / "project.toml").write_text(text)
    line = text.splitlines().index("train_batch_size = 0") + 1
    result = cli("run", ws)
    assert result.returncode == 2
    assert f"project.toml:{line}: training.train_batch_size" in result.stderr
    assert run_ids(ws) == [] and not (ws / ".fluxtui" / "lock").exists()
    both = cli("run", ws, "--detach", "--watch")
    assert both.returncode == 2 and "--watch" in both.stderr


def test_commands_on_a_workspace_without_runs(demo_workspace, tmp_path):
    ws = demo_workspace
    assert "no runs yet" in cli("status", ws).stdout
    assert status_json(ws)["runs"] == [] and status_json(ws)["active"] is None
    logs = cli("logs", ws)
    assert logs.returncode == 2 and "no runs yet" in logs.stderr
    stop = cli("stop", ws)
    assert stop.returncode == 0 and "no run is active" in stop.stdout
    missing = cli("status", tmp_path / "nowhere")
    assert missing.returncode == 2 and "fluxtui workspace" in missing.stderr


def test_failed_run_exits_1_with_error_and_log_tail(demo_workspace, tmp_path):
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "fake_trainer.py").write_text(FAKE_TRAINER)
    ws = demo_workspace
    config.set_values(ws / "project.toml", {"training.max_train_steps": 10})
    env = trainer_env({TRAINER_ENV: "fake_trainer", "PYTHONPATH": str(tmp_path / "fake"), "FAKE_MODE": "fail"})
    result = cli("run", ws, "--every", "1", env=env)
    assert result.returncode == 1
    assert "step 2/10" in result.stdout and "failed at step 3" in result.stdout
    assert "training failed: boom: the fake failed" in result.stderr
    assert "last lines of" in result.stderr and "Traceback: boom" in result.stderr
    (status,) = status_json(ws)["runs"]
    assert status["status"] == "failed" and status["error"] == "boom: the fake failed"


# -- with the real trainer -----------------------------------------------------------------


@pytest.mark.slow
def test_run_to_completion(demo):
    result = cli("run", demo, "--every", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("stage load_models", "step 1/12", "step 5/12", "step 10/12", "step 12/12", "completed at step 12"):
        assert expected in out, out
    assert "step 3/12" not in out  # piped: one line every 5 steps
    assert re.search(r"step 10/12 \(83%\)  loss \d\.\d{4} .* lr 1\.00e-03  [\d.]+ s/step  ETA \d:\d\d:\d\d", out)
    (run,) = status_json(demo)["runs"]
    assert run["status"] == "completed" and run["step"] == 12 and run["exit_code"] == 0
    assert (Path(run["dir"]) / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert (Path(run["dir"]) / "config.toml").read_text() == (demo / "project.toml").read_text()
    assert not (demo / ".fluxtui" / "lock").exists()


@pytest.mark.slow
def test_detach_then_status_logs_stop_from_other_processes(demo, tmp_path):
    config.set_values(demo / "project.toml", {"training.max_train_steps": LONG})
    started = cli("run", demo, "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", run_id)
    info = run_of(demo, run_id)
    assert info["status"] in ("starting", "running") and info["pid"]
    follow = cli_popen("logs", demo, "-f", out=tmp_path / "follow.out")
    wait_steps(demo, run_id, 2)

    # a second run on the same workspace refuses, naming the holder
    second = cli("run", demo)
    assert second.returncode == 1
    assert run_id in second.stderr and f"trainer pid {info['pid']}" in second.stderr

    status = cli("status", demo)
    assert re.search(rf"{run_id}\s+running", status.stdout) and f"active: {run_id}" in status.stdout

    stop = cli("stop", demo)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped at step" in stop.stdout and "checkpoint-" in stop.stdout
    assert follow.wait(timeout=30) == 0  # logs -f ends by itself when the run ends
    followed = (tmp_path / "follow.out").read_text()
    assert f"run {run_id} started" in followed and "checkpoint saved" in followed

    final = run_of(demo, run_id)
    assert final["status"] == "stopped" and Path(final["last_checkpoint"]).is_dir()
    assert not (demo / ".fluxtui" / "lock").exists()
    assert cli("logs", demo, run_id).stdout == (Path(final["dir"]) / "trainer.log").read_text()


@pytest.mark.slow
def test_sigkill_of_the_trainer_shows_crashed_with_the_signal(demo):
    config.set_values(demo / "project.toml", {"training.max_train_steps": LONG})
    run_id = cli("run", demo, "--detach").stdout.strip()
    wait_steps(demo, run_id, 2)
    info = run_of(demo, run_id)
    assert info["supervisor_pid"] != info["pid"]
    os.kill(info["pid"], signal.SIGKILL)  # the trainer, not its supervisor
    wait_for(lambda: run_of(demo, run_id)["status"] == "crashed", timeout=30, what="crashed")
    wait_for(lambda: run_of(demo, run_id)["signal"], timeout=10, what="the recorded signal")
    crashed = run_of(demo, run_id)
    assert crashed["signal"] == "SIGKILL"
    assert "OOM killer" in crashed["exit_detail"] and "dmesg" in crashed["exit_detail"]
    text = cli("status", demo).stdout
    assert re.search(rf"{run_id}\s+crashed", text) and "SIGKILL" in text
    assert status_json(demo)["active"] is None


@pytest.mark.slow
def test_ctrl_c_stops_gracefully_with_a_checkpoint(demo, tmp_path):
    config.set_values(demo / "project.toml", {"training.max_train_steps": LONG})
    proc = cli_popen("run", demo, "--every", "1", out=tmp_path / "run.out")
    run_id = wait_for(lambda: (run_ids(demo) or [None])[0], timeout=60, proc=proc, what="the run folder")
    wait_steps(demo, run_id, 2, proc=proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    out = (tmp_path / "run.out").read_text()
    assert "stopping: the trainer saves a checkpoint first" in out and "stopped at step" in out
    info = runs.get_run(demo, run_id)
    assert info.status == "stopped" and info.exit_code == 0
    assert info.last_checkpoint and Path(info.last_checkpoint).name == f"checkpoint-{info.step}"
    assert Path(info.last_checkpoint).is_dir()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_watch_restarts_on_valid_edits_and_ignores_invalid_ones(demo, tmp_path):
    project = demo / "project.toml"
    config.set_values(project, {"training.max_train_steps": LONG})
    out = tmp_path / "watch.out"
    proc = cli_popen("run", demo, "--watch", "--every", "50", out=out)
    try:
        first = wait_for(lambda: (run_ids(demo) or [None])[0], timeout=60, proc=proc, what="the first run")
        wait_steps(demo, first, 2, proc=proc)
        pid = runs.get_run(demo, first).pid

        # an invalid edit: problems with their line, the same trainer keeps going
        text = project.read_text()
        broken = text.replace("train_batch_size = 4", 'train_batch_size = "four"')
        config.atomic_write_text(project, broken)
        line = broken.splitlines().index('train_batch_size = "four"') + 1
        wait_for(lambda: f"project.toml:{line}" in out.read_text(), timeout=30, proc=proc, what="the problem")
        before = step_events(demo, first)[-1]["step"]
        wait_for(lambda: step_events(demo, first)[-1]["step"] > before + 5, timeout=60, proc=proc, what="steps")
        assert run_ids(demo) == [first] and runs.get_run(demo, first).pid == pid
        assert runs.get_run(demo, first).status == "running"

        # a valid lr edit: stop with a checkpoint, resume, the step count continues
        config.atomic_write_text(project, text.replace("learning_rate = 0.001", "learning_rate = 0.0005"))
        second = wait_for(lambda: len(run_ids(demo)) >= 2 and run_ids(demo)[1], timeout=90, proc=proc, what="run 2")
        wait_steps(demo, second, 2, proc=proc)
        stopped = runs.get_run(demo, first)
        assert stopped.status == "stopped" and stopped.step > before
        resumed = runs.get_run(demo, second)
        assert resumed.resumed_from == stopped.step
        assert step_events(demo, second)[0]["step"] == stopped.step + 1
        assert "learning_rate = 0.0005" in (resumed.dir / "config.toml").read_text()
        assert "changed: training.learning_rate" in out.read_text()

        # a rank edit: resume cannot absorb it, a new run starts from step 0
        config.set_values(project, {"lora.lora_rank": 8})
        third = wait_for(lambda: len(run_ids(demo)) >= 3 and run_ids(demo)[2], timeout=90, proc=proc, what="run 3")
        wait_steps(demo, third, 2, proc=proc)
        assert runs.get_run(demo, second).status == "stopped"
        assert runs.get_run(demo, third).resumed_from is None
        assert step_events(demo, third)[0]["step"] == 1
        assert "resuming cannot absorb lora.lora_rank" in out.read_text()
        # `fluxtui stop` from another shell ends the watching session too
        stop = cli("stop", demo)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    assert runs.get_run(demo, third).status == "stopped"
    assert "no longer watching" in out.read_text()
    assert not (demo / ".fluxtui" / "lock").exists()


@pytest.mark.slow
def test_two_process_cpu_run_from_hardware(demo):
    config.set_values(
        demo / "project.toml",
        {
            "hardware.num_processes": 2,
            "hardware.main_process_port": 29000 + os.getpid() % 1000,
            "training.max_train_steps": 4,
        },
    )
    result = cli("run", demo, "--every", "1", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    (run,) = runs.list_runs(demo)
    assert run.status == "completed" and run.step == 4 and run.world_size == 2
    record = json.loads((run.dir / "run.json").read_text())
    assert "accelerate.commands.launch" in record["command"] and "--multi_gpu" in record["command"]
    assert record["env"].get("ACCELERATE_USE_CPU") == "true"
    start = next(e for e in ev.read_all(run.events_path) if e["type"] == "run.start")
    assert start["world_size"] == 2
    assert "2 process(es)" in result.stdout


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_record_says_so(demo, tmp_path):
    """The first Ctrl+C asks for a checkpoint; the second, while it is being written, must
    stop now, and run.json, status and the last line must all tell that story."""
    config.set_values(demo / "project.toml", {"training.max_train_steps": LONG})
    env = trainer_env({"FLUXTUI_TEST_PAUSE_CHECKPOINT_AT": "*"})  # every checkpoint write takes a minute
    proc = cli_popen("run", demo, "--every", "1", out=tmp_path / "run.out", env=env)
    run_id = wait_for(lambda: (run_ids(demo) or [None])[0], timeout=60, proc=proc, what="the run folder")
    wait_steps(demo, run_id, 2, proc=proc)
    proc.send_signal(signal.SIGINT)
    ckpts = demo / "outputs" / run_id / "checkpoints"
    wait_for(
        lambda: list(ckpts.glob(".tmp-checkpoint-*/optimizer.pt")), proc=proc, timeout=120, what="a checkpoint write"
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=45) == 130  # well before the held write would have finished
    out = (tmp_path / "run.out").read_text()
    assert "stopping at once, without a checkpoint" in out
    info = runs.get_run(demo, run_id)
    assert info.status == "stopped" and "at once, without a checkpoint" in info.error
    assert info.exit_code == 130 and info.exit_detail is None  # nothing says it died before run.end
    record = json.loads((demo / "outputs" / run_id / "run.json").read_text())
    assert record["status"] == "stopped" and record["exit_detail"] is None
    assert f"stopped at step {info.step}: " in out and "; checkpoint" not in out
    assert not [p for p in ckpts.iterdir() if not p.name.startswith(".")]  # no checkpoint claimed
    text = cli("status", demo).stdout
    assert "before it could write run.end" not in text
