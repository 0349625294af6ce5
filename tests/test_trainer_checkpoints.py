"""Checkpoints: core/checkpoints.py (headless: list, inspect, pick) and trainer/checkpoint.py
(atomic save, retention, restore)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxtui.core import checkpoints, config


def _project(ws: Path, extra: str = ""):
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(
        '[model]\nmodel_flavour = "tiny-random"\n[[datasets]]\nid = "d"\ninstance_data_dir = "datasets/d"\n' + extra
    )
    project, problems = config.load(ws)
    assert project is not None, problems
    return project


def _fake_checkpoint(ws: Path, run: str, step: int, project, *, created: float | None = None) -> Path:
    path = ws / "outputs" / run / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    meta = {
        "step": step,
        "epoch": 1,
        "data_position": step * 2,
        "config_hash": project.config_hash(),
        "resume_hash": checkpoints.resume_hash(project),
        "created": created if created is not None else time.time(),
        "run": run,
    }
    (path / checkpoints.META_FILE).write_text(json.dumps(meta))
    return path


def test_resume_hash_ignores_what_a_resume_absorbs(tmp_path):
    base = checkpoints.resume_hash(_project(tmp_path / "a"))
    assert checkpoints.resume_hash(_project(tmp_path / "b", "")) == base
    # learning rate, steps, validation: a resume takes them
    absorbed = "[training]\nlearning_rate = 0.5\nmax_train_steps = 7\n[validation]\nvalidation_steps = 3\n"
    assert checkpoints.resume_hash(_project(tmp_path / "c", absorbed)) == base
    # rank, model, resolution: a different run
    assert checkpoints.resume_hash(_project(tmp_path / "d", "[lora]\nlora_rank = 4\n")) != base
    text = (
        (tmp_path / "a" / "project.toml").read_text().replace('model_flavour = "tiny-random"', 'model_flavour = "dev"')
    )
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "project.toml").write_text(text)
    assert checkpoints.resume_hash(config.load(tmp_path / "e")[0]) != base
    res = (tmp_path / "a" / "project.toml").read_text() + "resolution = 512\n"
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "project.toml").write_text(res)
    assert checkpoints.resume_hash(config.load(tmp_path / "f")[0]) != base


def test_pick_latest_compatible_of_any_run(tmp_path):
    ws = tmp_path / "ws"
    project = _project(ws)
    other = _project(tmp_path / "other", "[lora]\nlora_rank = 4\n")
    assert checkpoints.pick_resume(ws, project).checkpoint is None
    _fake_checkpoint(ws, "run-1", 10, project, created=100)
    _fake_checkpoint(ws, "run-2", 5, project, created=200)
    _fake_checkpoint(ws, "run-3", 50, other, created=300)  # newest, but a different rank
    (ws / "outputs" / "run-2" / "checkpoints" / ".tmp-checkpoint-9-123").mkdir()  # a half write
    choice = checkpoints.pick_resume(ws, project)
    assert choice.checkpoint.run_id == "run-2" and choice.checkpoint.step == 5
    assert [c.step for c in choice.skipped] == [50]
    assert "run-2/checkpoints/checkpoint-5" in choice.reason
    assert checkpoints.pick_resume(ws, project, requested="none").checkpoint is None
    # only the incompatible one left
    only_other = tmp_path / "ws2"
    _project(only_other)
    _fake_checkpoint(only_other, "r", 3, other)
    choice = checkpoints.pick_resume(only_other, project)
    assert choice.checkpoint is None and "different" in choice.reason


def test_explicit_checkpoint_must_be_complete_and_compatible(tmp_path):
    ws = tmp_path / "ws"
    project = _project(ws)
    good = _fake_checkpoint(ws, "r1", 4, project)
    assert checkpoints.pick_resume(ws, project, requested=str(good)).checkpoint.step == 4
    assert checkpoints.pick_resume(ws, project, requested="outputs/r1/checkpoints/checkpoint-4").checkpoint.step == 4
    assert checkpoints.pick_resume(ws, project, requested="outputs/r1").checkpoint.step == 4  # a run folder
    with pytest.raises(checkpoints.CheckpointError, match="not a complete"):
        checkpoints.pick_resume(ws, project, requested="outputs/r1/checkpoints/checkpoint-99")
    bad = _fake_checkpoint(ws, "r2", 8, _project(tmp_path / "x", "[lora]\nlora_rank = 2\n"))
    with pytest.raises(checkpoints.CheckpointError, match="different"):
        checkpoints.pick_resume(ws, project, requested=str(bad))


def test_unreadable_metadata_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "outputs" / "r" / "checkpoints" / "checkpoint-3"
    p.mkdir(parents=True)
    (p / checkpoints.META_FILE).write_text("{not json")
    assert checkpoints.read_checkpoint(p) is None
    assert checkpoints.run_checkpoints(tmp_path / "outputs" / "r") == []


# -- trainer/checkpoint.py ------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def _state():
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def test_save_is_atomic_prunes_and_restores(tmp_path):
    from fluxtui.trainer import checkpoint

    model, opt, sched = _state()
    run = tmp_path / "outputs" / "r"
    meta = {"epoch": 1, "data_position": 0, "config_hash": "c", "resume_hash": "h"}
    for step in (1, 2, 3):
        path = checkpoint.save(
            run, step=step, lora_state={"w": model.weight}, optimizer=opt, lr_scheduler=sched, meta=meta
        )
        assert path.name == f"checkpoint-{step}"
    assert [c.step for c in checkpoints.run_checkpoints(run)] == [1, 2, 3]
    removed = checkpoint.prune(run, 2)
    assert [p.name for p in removed] == ["checkpoint-1"]
    assert [c.step for c in checkpoints.run_checkpoints(run)] == [2, 3]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert checkpoint.prune(run, 0) == []

    # saving the same step again replaces it whole
    checkpoint.save(run, step=3, lora_state={"w": model.weight}, optimizer=opt, lr_scheduler=sched, meta=meta)

    random_after_save = torch.rand(3)
    _m2, opt2, sched2 = _state()
    lora_state, meta2 = checkpoint.load(
        run / "checkpoints" / "checkpoint-3", optimizer=opt2, lr_scheduler=sched2, restore_rng=True
    )
    assert torch.equal(lora_state["w"], model.weight.detach())
    assert meta2["step"] == 3
    assert sched2.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"]
    assert torch.equal(torch.rand(3), random_after_save)  # RNG put back to where the save was


def test_stale_temp_folders_are_ignored_then_removed(tmp_path):
    from fluxtui.trainer import checkpoint

    run = tmp_path / "outputs" / "r"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    half = run / "checkpoints" / checkpoints.temp_name("checkpoint-7", dead.pid)
    half.mkdir(parents=True)
    (half / "optimizer.pt").write_bytes(b"partial")
    busy = run / "checkpoints" / checkpoints.temp_name("checkpoint-8", os.getppid())  # a live writer: left alone
    busy.mkdir()
    assert checkpoints.run_checkpoints(run) == []
    assert checkpoint.remove_stale_temp(tmp_path / "outputs") == [half]
    assert not half.exists() and busy.exists()


def test_leftovers_of_a_prune_are_removed_even_when_the_step_is_a_live_pid(tmp_path):
    """A crash mid-prune leaves the renamed folder; its step number is no writer's pid."""
    from fluxtui.trainer import checkpoint

    run = tmp_path / "outputs" / "r"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    live = os.getppid()  # a step number that happens to be a live pid
    old_style = folder / f".tmp-removed-checkpoint-{live}"  # what earlier versions left
    new_style = folder / checkpoints.temp_name("removed-checkpoint-4", dead_pid(tmp_path))
    for p in (old_style, new_style):
        p.mkdir()
        (p / "optimizer.pt").write_bytes(b"x")
    assert sorted(checkpoint.remove_stale_temp(tmp_path / "outputs")) == sorted([old_style, new_style])
    assert list(folder.iterdir()) == []
    # the names a prune writes carry the pid mark, never a bare step
    assert checkpoints.temp_name("removed-checkpoint-12", 345) == ".tmp-removed-checkpoint-12-pid345"
    assert not checkpoints.temp_writer_alive(f".tmp-removed-checkpoint-{live}")


def dead_pid(tmp_path) -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
