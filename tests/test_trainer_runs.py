"""The trainer as a real process on tiny-random: the demo, resume, crashes, control, signals.

Option coverage across runs is in test_trainer_options.py; two processes in
test_trainer_multiprocess.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from trainer_support import (
    check_well_formed,
    end_event,
    events,
    make_workspace,
    output_of,
    run_trainer,
    start_trainer,
    steps,
    trainer_env,
    wait_for,
    wait_for_event,
)

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny-models"


def test_demo_trains_validates_and_writes_a_lora_that_loads(tmp_path, tiny_root):
    ws = make_workspace(tmp_path / "demo", tiny_root=tiny_root)
    proc = run_trainer(ws, "demo")
    assert proc.returncode == 0, proc.stdout[-3000:]
    evs = events(ws, "demo")
    check_well_formed(evs, "demo")
    assert end_event(evs)["status"] == "completed" and end_event(evs)["step"] == 100
    losses = steps(evs)
    assert sorted(losses) == list(range(1, 101))
    first, last = sum(losses[s] for s in range(1, 11)) / 10, sum(losses[s] for s in range(91, 101)) / 10
    assert last < first * 0.95, (first, last)  # visibly lower
    assert "loss: first 10 steps average" in proc.stdout
    step_event = next(e for e in evs if e["type"] == "step")
    assert step_event["vram_alloc_mb"] == 0 and step_event["rss_mb"] > 100 and step_event["samples_per_s"] > 0
    stages = {e["name"] for e in evs if e["type"] == "stage"}
    assert {"load_models", "cache_latents", "cache_text", "train", "validate", "save"} <= stages

    run_dir = ws / "outputs" / "demo"
    vals = [e for e in evs if e["type"] == "validation"]
    assert [v["step"] for v in vals] == [50, 100]
    for v in vals:
        assert v["images"] == [f"validation/step-{v['step']}/validation-64x64.png"]
        assert (run_dir / v["images"][0]).stat().st_size > 0
    assert [e["path"] for e in evs if e["type"] == "checkpoint"] == [
        "checkpoints/checkpoint-50",
        "checkpoints/checkpoint-100",
    ]
    lora_file = run_dir / "lora" / "pytorch_lora_weights.safetensors"
    card = (run_dir / "lora" / "README.md").read_text()
    assert "tiny-random" in card and "`training.learning_rate` | `0.001`" in card
    assert (run_dir / "config.toml").read_text() == (ws / "project.toml").read_text()

    # a fresh process: the LoRA changes the pipeline's output; adapter weight 0 gives it back
    code = f"""
import sys, torch
from diffusers import FluxPipeline
pipe = FluxPipeline.from_pretrained({str(ws / "cache" / "models" / "tiny-0")!r})
pipe.set_progress_bar_config(disable=True)
def render():
    return pipe("a red circle", height=64, width=64, num_inference_steps=2, max_sequence_length=32,
                generator=torch.Generator().manual_seed(0), output_type="pt").images
base = render()
pipe.load_lora_weights({str(lora_file)!r}, adapter_name="demo")
with_lora = render()
pipe.set_adapters(["demo"], adapter_weights=[0.0])
off = render()
print("CHANGED", float((with_lora - base).abs().max()), "OFF", float((off - base).abs().max()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=trainer_env(), timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    changed, off = float(words[words.index("CHANGED") + 1]), float(words[words.index("OFF") + 1])
    assert changed > 1e-4 and off < 1e-6, out.stdout


RESUME_SETTINGS = {
    "training.max_train_steps": 12,
    "training.checkpointing_steps": 4,
    "training.checkpoints_total_limit": 1,
    "training.gradient_accumulation_steps": 2,
    "training.train_batch_size": 2,
    "training.optimizer": "adamw_bf16",
    "training.lr_scheduler": "cosine",
    "training.lr_warmup_steps": 3,
    "training.max_grad_norm": 0.5,
    "training.seed": 7,
    "training.flow_schedule_shift": None,  # auto shift excludes a fixed one
    "training.flow_schedule_auto_shift": True,
    "lora.lora_dropout": 0.1,  # draws from the global RNG: the checkpoint must restore it
    "validation.validation_steps": 6,  # sampling in the middle must not disturb the numbers
}


def test_sigkill_during_a_checkpoint_write_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_root):
    straight = make_workspace(tmp_path / "straight", RESUME_SETTINGS, tiny_root=tiny_root)
    crashed = make_workspace(tmp_path / "crashed", RESUME_SETTINGS, tiny_root=tiny_root)
    a = start_trainer(straight, "a")
    b = start_trainer(crashed, "b", env={"FLUXTUI_TEST_PAUSE_CHECKPOINT_AT": "8"})

    # b: checkpoint-4 is complete; checkpoint-8 is being written when the kill lands
    ckpts = crashed / "outputs" / "b" / "checkpoints"
    half = wait_for(
        lambda: [p for p in ckpts.glob(".tmp-checkpoint-8-*") if (p / "optimizer.pt").exists()],
        proc=b,
        timeout=180,
        what="checkpoint-8 half written",
    )
    b.send_signal(signal.SIGKILL)
    b.wait(timeout=30)
    assert half[0].exists() and (ckpts / "checkpoint-4").is_dir() and not (ckpts / "checkpoint-8").exists()
    assert a.wait(timeout=240) == 0, output_of(straight, "a")[-3000:]

    # the next run picks the last complete checkpoint (4), not the half one, and goes on
    c = run_trainer(crashed, "c")
    assert c.returncode == 0, c.stdout[-3000:]
    evs_c = events(crashed, "c")
    check_well_formed(evs_c, "c")
    assert evs_c[0]["resumed_from"] == 4
    assert "resuming from outputs/b/checkpoints/checkpoint-4" in c.stdout
    assert not half[0].exists()  # cleaned up on the way
    first_cache = next(e for e in evs_c if e["type"] == "stage" and e["name"] == "cache_latents")
    assert first_cache["done"] == first_cache["total"]  # the latent cache of run b was reused

    losses_a, losses_c = steps(events(straight, "a")), steps(evs_c)
    assert sorted(losses_c) == list(range(5, 13))
    for s in range(5, 13):
        assert losses_c[s] == pytest.approx(losses_a[s], rel=1e-5, abs=1e-6), (s, losses_a, losses_c)
    from safetensors.torch import load_file

    final_a = load_file(straight / "outputs" / "a" / "lora" / "pytorch_lora_weights.safetensors")
    final_c = load_file(crashed / "outputs" / "c" / "lora" / "pytorch_lora_weights.safetensors")
    assert final_a.keys() == final_c.keys()
    assert all(final_a[k].allclose(final_c[k], rtol=1e-5, atol=1e-7) for k in final_a)

    # retention: limit 1 keeps only the newest; the event lists what went
    evs_a = events(straight, "a")
    cks = [e for e in evs_a if e["type"] == "checkpoint"]
    assert [e["step"] for e in cks] == [4, 8, 12]
    assert cks[1]["removed"] == ["checkpoints/checkpoint-4"] and cks[2]["removed"] == ["checkpoints/checkpoint-8"]
    assert [p.name for p in (straight / "outputs" / "a" / "checkpoints").iterdir()] == ["checkpoint-12"]
    meta = json.loads(
        (straight / "outputs" / "a" / "checkpoints" / "checkpoint-12" / "fluxtui_checkpoint.json").read_text()
    )
    assert meta["step"] == 12 and meta["data_position"] == 24 and meta["epoch"] >= 1


def test_control_files_then_stop(tmp_path, tiny_root):
    ws = make_workspace(
        tmp_path / "ws",
        {
            "training.max_train_steps": 100000,
            "training.checkpointing_steps": 0,
            "training.optimizer": "optimi-stableadamw",
            "training.lr_scheduler": "linear",
            "training.gradient_checkpointing": False,
            "lora.flux_lora_target": "mmdit",
            "lora.lora_init_type": "gaussian",
            "validation.validation_steps": 0,
        },
        tiny_root=tiny_root,
    )
    proc = start_trainer(ws, "ctl")
    control = ws / "outputs" / "ctl" / "control"
    try:
        wait_for_event(ws, "ctl", lambda e: e["type"] == "step" and e["step"] >= 3, proc=proc, what="step 3")
        (control / "checkpoint").write_text("")
        ck = wait_for_event(ws, "ctl", lambda e: e["type"] == "checkpoint", proc=proc, what="checkpoint")
        assert not (control / "checkpoint").exists()
        assert (ws / "outputs" / "ctl" / ck["path"] / "pytorch_lora_weights.safetensors").exists()
        (control / "validate").write_text("")
        val = wait_for_event(ws, "ctl", lambda e: e["type"] == "validation", proc=proc, what="validation")
        assert all((ws / "outputs" / "ctl" / p).exists() for p in val["images"])
        assert not (control / "validate").exists()
        (control / "stop").write_text("")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    evs = events(ws, "ctl")
    check_well_formed(evs, "ctl")
    end = end_event(evs)
    assert end["status"] == "stopped" and end["error"] is None
    last_ck = [e for e in evs if e["type"] == "checkpoint"][-1]
    assert last_ck["step"] == end["step"]  # stop saves first
    assert not (control / "stop").exists()
    assert not (ws / "outputs" / "ctl" / "lora").exists()  # the final LoRA is for completed runs
    assert any(e["type"] == "warning" and e["key"] == "training.gradient_checkpointing" for e in evs)


def test_sigterm_checkpoints_and_stops_and_a_second_signal_exits_at_once(tmp_path, tiny_root):
    ws = make_workspace(
        tmp_path / "ws",
        {
            "training.max_train_steps": 100000,
            "training.checkpointing_steps": 0,
            "training.optimizer": "bnb-adamw8bit",
            "validation.validation_steps": 0,
        },
        tiny_root=tiny_root,
    )
    proc = start_trainer(ws, "t1")
    wait_for_event(ws, "t1", lambda e: e["type"] == "step" and e["step"] >= 2, proc=proc, what="step 2")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, output_of(ws, "t1")[-2000:]
    evs = events(ws, "t1")
    check_well_formed(evs, "t1")
    end = end_event(evs)
    assert end["status"] == "stopped"
    assert [e for e in evs if e["type"] == "checkpoint"][-1]["step"] == end["step"]
    assert "SIGTERM" in output_of(ws, "t1")

    # the next run resumes there; two signals in a row end it at once, still with a run.end
    proc = start_trainer(ws, "t2")
    wait_for_event(ws, "t2", lambda e: e["type"] == "step", proc=proc, what="a step")
    assert events(ws, "t2")[0]["resumed_from"] == end["step"]
    first_step = next(e["step"] for e in events(ws, "t2") if e["type"] == "step")
    assert first_step == end["step"] + 1
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    end2 = end_event(events(ws, "t2"))
    assert end2["status"] == "stopped" and "twice" in end2["error"]


def test_config_and_model_problems_end_the_run_with_one_clear_line(tmp_path, tiny_root):
    ws = make_workspace(tmp_path / "bad", {"datasets[0].instance_data_dir": "datasets/nowhere"}, tiny_root=tiny_root)
    proc = run_trainer(ws, "r1")
    assert proc.returncode == 1
    evs = events(ws, "r1")
    check_well_formed(evs, "r1")
    end = end_event(evs)
    assert end["status"] == "failed" and end["traceback_tail"] is None
    assert "datasets/nowhere" in end["error"] and "does not exist" in end["error"]
    assert "Traceback" not in proc.stdout

    ws2 = make_workspace(
        tmp_path / "bad2", {"model.pretrained_model_name_or_path": "./no-such-model"}, tiny_root=tiny_root
    )
    proc = run_trainer(ws2, "r2")
    assert proc.returncode == 1
    end = end_event(events(ws2, "r2"))
    assert end["status"] == "failed" and end["traceback_tail"] is None
    assert "model.pretrained_model_name_or_path" in end["error"] and "Traceback" not in proc.stdout

    # an explicit checkpoint that does not exist
    proc = run_trainer(ws2, "r3", "--resume", "outputs/none/checkpoints/checkpoint-1")
    assert proc.returncode == 1
    assert "not a complete fluxtui checkpoint" in end_event(events(ws2, "r3"))["error"]
    assert os.path.exists(ws2 / "outputs" / "r3" / "config.toml")
