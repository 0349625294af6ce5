"""The trainer as a real process on tiny-random, under faults and changed settings (issue 10):
a resume trains with the current config, disk-full and broken inputs end in clear lines."""

from __future__ import annotations

import pytest
from trainer_support import check_well_formed, end_event, events, make_workspace, run_trainer

from fluxtui.core import config

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

SHORT = {
    "training.max_train_steps": 4,
    "training.checkpointing_steps": 4,
    "training.learning_rate": 1e-3,
    "training.lr_scheduler": "constant",
    "training.lr_warmup_steps": 0,
    "training.optimizer": "torch-adamw",
    "validation.validation_steps": 0,
}


@pytest.fixture
def tiny_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny-models"


def test_a_resumed_run_trains_with_the_current_settings(tmp_path, tiny_root):
    import torch

    ws = make_workspace(tmp_path / "ws", SHORT, tiny_root=tiny_root)
    first = run_trainer(ws, "a")
    assert first.returncode == 0, first.stdout[-3000:]
    assert {e["lr"] for e in events(ws, "a") if e["type"] == "step"} == {1e-3}

    config.set_values(
        ws / "project.toml",
        {
            "training.learning_rate": 1e-4,
            "training.adam_beta1": 0.8,
            "training.adam_weight_decay": 0.05,
            "training.adam_epsilon": 1e-6,
            "training.lr_scheduler": "linear",
            "training.max_train_steps": 8,
        },
    )
    second = run_trainer(ws, "b")
    assert second.returncode == 0, second.stdout[-3000:]
    evs = events(ws, "b")
    check_well_formed(evs, "b")
    assert evs[0]["resumed_from"] == 4 and end_event(evs)["status"] == "completed"
    # the lr actually used: the new base lr on the new (linear) schedule at the resumed step
    used = {e["step"]: e["lr"] for e in evs if e["type"] == "step"}
    assert sorted(used) == [5, 6, 7, 8]
    for step, lr in used.items():
        assert lr == pytest.approx(1e-4 * (8 - step) / 8), (step, used)
    said = [e["message"] for e in evs if e["type"] == "warning" and "changed setting" in e["message"]]
    for line in (
        "learning_rate 0.001 -> 0.0001 from step 4",
        "adam_beta1 0.9 -> 0.8 from step 4",
        "adam_weight_decay 0.01 -> 0.05 from step 4",
        "adam_epsilon 1e-08 -> 1e-06 from step 4",
        "lr_scheduler constant -> linear from step 4",
        "total steps 4 -> 8 from step 4",
    ):
        assert any(line in m for m in said), (line, said)
        assert line in second.stdout  # the human log (trainer.log under a supervisor)
    # the optimizer that trained steps 5-8 held the new hyperparameters (and kept its moments)
    state = torch.load(ws / "outputs" / "b" / "checkpoints" / "checkpoint-8" / "optimizer.pt", weights_only=False)
    group = state["param_groups"][0]
    assert tuple(group["betas"]) == (0.8, 0.999) and group["weight_decay"] == 0.05 and group["eps"] == 1e-6
    assert group["initial_lr"] == 1e-4
    assert all(int(s["step"]) == 8 for s in state["state"].values())  # moments carried on, not restarted


def test_a_change_a_resume_cannot_absorb_is_refused_with_the_reason(tmp_path, tiny_root):
    ws = make_workspace(tmp_path / "ws", SHORT, tiny_root=tiny_root)
    assert run_trainer(ws, "a").returncode == 0
    config.set_values(ws / "project.toml", {"lora.lora_rank": 4, "training.max_train_steps": 8})
    refused = run_trainer(ws, "b", "--resume", "outputs/a/checkpoints/checkpoint-4")
    assert refused.returncode == 1
    error = end_event(events(ws, "b"))["error"]
    assert "lora.lora_rank 16 -> 4" in error and "cannot absorb" in error, error


def _damaged_images(shapes):
    """A baseline JPEG cut in half with its end marker appended, and a PNG whose pixel-data
    chunk fails its CRC: both pass the header scan; only a checked decode finds them."""
    import io
    import struct

    from PIL import Image

    src = sorted(shapes.glob("*.png"))
    with Image.open(src[0]) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((256, 256)).save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    cut = shapes / "cut-in-half.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2] + b"\xff\xd9")
    cut.with_suffix(".txt").write_text("a cut picture\n")
    raw = bytearray(src[1].read_bytes())
    pos = 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        if raw[pos + 4 : pos + 8] == b"IDAT":
            raw[pos + 8 + length] ^= 0xFF  # the chunk's CRC no longer matches its data
            break
        pos += 12 + length
    bad_png = shapes / "bad-crc.png"
    bad_png.write_bytes(bytes(raw))
    bad_png.with_suffix(".txt").write_text("a damaged picture\n")
    return cut, bad_png


def test_damaged_images_are_left_out_with_a_warning_naming_them(tmp_path, tiny_root):
    from fluxtui.core import datasets
    from fluxtui.trainer import data

    ws = make_workspace(tmp_path / "ws", {**SHORT, "training.max_train_steps": 2}, tiny_root=tiny_root)
    shapes = ws / "datasets" / "shapes"
    cut, bad_png = _damaged_images(shapes)
    project, _ = config.load(ws)
    scanned = {i.path.name for i in datasets.scan_dataset(project, 0).images}
    assert {cut.name, bad_png.name} <= scanned  # the header scan cannot tell
    for path in (cut, bad_png):
        with pytest.raises((ValueError, OSError, SyntaxError)):
            data.load_rgb(path)
    data.load_rgb(sorted(shapes.glob("0*.png"))[0])  # an intact one decodes

    done = run_trainer(ws, "r")
    assert done.returncode == 0, done.stdout[-3000:]
    evs = events(ws, "r")
    check_well_formed(evs, "r")
    warnings = [e["message"] for e in evs if e["type"] == "warning"]
    assert any(cut.name in m and "truncated JPEG" in m and "left out" in m for m in warnings), warnings
    assert any(bad_png.name in m and "left out" in m for m in warnings), warnings
    cache = ws / "cache" / "vae" / "shapes"
    cached = {p.name.split("-")[0] for p in cache.glob("*.safetensors")}
    assert "cut" not in cached and "bad" not in cached and len(list(cache.glob("*.safetensors"))) == 24


def test_a_checkpoint_that_does_not_fit_on_the_disk_is_refused_with_the_numbers(tmp_path, tiny_root):
    import shutil

    from fault_support import fill, small_disk
    from trainer_support import output_of, start_trainer, wait_for_event

    with small_disk(tmp_path / "disk", "96m") as disk:
        ws = make_workspace(
            disk / "ws",
            {**SHORT, "training.max_train_steps": 1_000_000, "training.checkpointing_steps": 0},
            tiny_root=tiny_root,
        )
        proc = start_trainer(ws, "r")
        try:
            wait_for_event(ws, "r", lambda e: e["type"] == "step", proc=proc, what="a step")
            fill(disk, leave=300 * 1024)  # room for events, not for a ~1.2 MB checkpoint
            (ws / "outputs" / "r" / "control" / "checkpoint").write_text("{}")
            assert proc.wait(timeout=120) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
        out = output_of(ws, "r")
        end = end_event(events(ws, "r"))
        assert end["status"] == "failed" and end["traceback_tail"] is None
        assert "not enough disk space for checkpoint-" in end["error"] and "free on the disk" in end["error"]
        assert "MB" in end["error"] and "KB" in end["error"]
        assert "Traceback" not in out and "unexpected pos" not in out
        assert not list((ws / "outputs" / "r" / "checkpoints").glob("*")), "nothing half written"
        shutil.rmtree(ws / "outputs")


def test_sigkill_while_pruning_then_resume_cleans_the_leftover(tmp_path, tiny_root):
    import signal

    from trainer_support import start_trainer, wait_for

    ws = make_workspace(
        tmp_path / "ws",
        {
            **SHORT,
            "training.max_train_steps": 6,
            "training.checkpointing_steps": 2,
            "training.checkpoints_total_limit": 1,
        },
        tiny_root=tiny_root,
    )
    proc = start_trainer(ws, "a", env={"FLUXTUI_TEST_PAUSE_PRUNE": "1"})
    ckpts = ws / "outputs" / "a" / "checkpoints"
    # at step 4, checkpoint-2 is renamed away and held there: the kill lands mid-prune
    trash = wait_for(lambda: list(ckpts.glob(".tmp-removed-checkpoint-2*")), proc=proc, timeout=180, what="mid-prune")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert trash[0].name == f".tmp-removed-checkpoint-2-pid{proc.pid}"  # a pid mark, never a bare step
    assert (ckpts / "checkpoint-4").is_dir()
    done = run_trainer(ws, "b")
    assert done.returncode == 0, done.stdout[-3000:]
    evs = events(ws, "b")
    check_well_formed(evs, "b")
    assert evs[0]["resumed_from"] == 4 and end_event(evs)["status"] == "completed"
    assert not trash[0].exists()
    assert not [p for p in ws.glob("outputs/*/checkpoints/.tmp-*")]
