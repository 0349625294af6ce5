"""Two CPU processes over gloo, launched the way the runner launches them (core/launch.py)."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest
from trainer_support import check_well_formed, end_event, events, make_workspace, steps, trainer_env

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_lora_with_one_event_stream(tmp_path, tmp_path_factory):
    from fluxtui.core import config, launch

    ws = make_workspace(
        tmp_path / "ws",
        {
            "hardware.num_processes": 2,
            "hardware.main_process_port": _free_port(),
            "training.max_train_steps": 8,
            "training.train_batch_size": 2,
            "training.gradient_accumulation_steps": 2,
            "training.checkpointing_steps": 4,
            "validation.validation_steps": 4,
        },
        tiny_root=tmp_path_factory.getbasetemp() / "tiny-models",
    )
    project, _ = config.load(ws)
    cmd = launch.for_project(project, ws, "mp", gpu_count=0)
    assert cmd.uses_accelerate and "--multi_gpu" in cmd.argv and cmd.env["ACCELERATE_USE_CPU"] == "true"
    proc = subprocess.run(
        cmd.argv, env=trainer_env(cmd.env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:]

    evs = events(ws, "mp")
    check_well_formed(evs, "mp")  # one run.start, one run.end: rank 0 alone writes
    assert evs[0]["world_size"] == 2
    assert sorted(steps(evs)) == list(range(1, 9))  # each step once
    assert end_event(evs)["status"] == "completed"

    digests = re.findall(r"(\[rank 1\] )?LoRA sha256 ([0-9a-f]+)", proc.stdout)
    assert len(digests) == 2 and {bool(r) for r, _ in digests} == {True, False}, proc.stdout[-2000:]
    assert digests[0][1] == digests[1][1]  # both ranks hold the same LoRA

    run_dir = ws / "outputs" / "mp"
    meta = json.loads((run_dir / "checkpoints" / "checkpoint-8" / "fluxtui_checkpoint.json").read_text())
    assert meta["world_size"] == 2 and meta["data_position"] == 8 * 2 * 2
    assert (run_dir / "lora" / "pytorch_lora_weights.safetensors").exists()
    assert len([e for e in evs if e["type"] == "validation"]) == 2
