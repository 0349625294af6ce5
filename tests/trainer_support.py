"""Helpers for the trainer's subprocess tests: workspaces, runs, events.

Each test builds its own workspace under tmp_path (xdist-friendly); the tiny-random model
is built once per worker and linked into every workspace's cache/models/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fluxtui.core import config, workspace
from fluxtui.core.events import END_STATUSES, EVENT_FIELDS, STAGES, read_all

TRAINER = [sys.executable, "-m", "fluxtui.trainer"]
_TINY: dict[str, Path] = {}


def tiny_model(root: Path) -> Path:
    """The tiny-random pipeline folder, built once per test process."""
    from fluxtui.trainer.models import TINY_SEED
    from fluxtui.trainer.tiny import ensure_tiny_flux

    if "dir" not in _TINY:
        _TINY["dir"] = ensure_tiny_flux(root, seed=TINY_SEED)
    return _TINY["dir"]


def make_workspace(path: Path, settings: dict[str, Any] | None = None, *, tiny_root: Path | None = None) -> Path:
    """An `init --demo` workspace with `settings` applied (dotted keys, as config.set_values)."""
    ws = workspace.init(path, demo=True)
    if settings:
        config.set_values(ws.project_file, settings)
    if tiny_root is not None:
        from fluxtui.trainer.models import TINY_SEED

        models = ws.cache_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        (models / f"tiny-{TINY_SEED}").symlink_to(tiny_model(tiny_root), target_is_directory=True)
    return ws.root


def trainer_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    env.pop("RANK", None)
    env.update(extra or {})
    return env


def run_trainer(ws: Path, run_id: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240):
    """Run the trainer to the end; returns CompletedProcess with stdout+stderr in .stdout."""
    return subprocess.run(
        [*TRAINER, str(ws), "--run", run_id, *args],
        env=trainer_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def start_trainer(ws: Path, run_id: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(Path(ws) / f"{run_id}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*TRAINER, str(ws), "--run", run_id, *args],
        env=trainer_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def output_of(ws: Path, run_id: str) -> str:
    return (Path(ws) / f"{run_id}.log").read_text()


def events(ws: Path, run_id: str) -> list[dict]:
    return read_all(Path(ws) / "outputs" / run_id / "events.jsonl")


def wait_for(predicate, *, timeout: float = 120, proc: subprocess.Popen | None = None, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            raise AssertionError(f"trainer exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_event(ws: Path, run_id: str, match, *, proc=None, timeout: float = 120, what: str = "") -> dict:
    def found():
        for e in events(ws, run_id):
            if match(e):
                return e
        return None

    return wait_for(found, timeout=timeout, proc=proc, what=what or "an event")


def signal_and_wait(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def steps(evs: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in evs if e["type"] == "step"}


def check_well_formed(evs: list[dict], run_id: str) -> None:
    """Every event has t/type/run and its type's fields; one run.start first, one run.end last."""
    assert evs, "no events"
    for e in evs:
        assert e["type"] in EVENT_FIELDS, e
        assert isinstance(e["t"], float) and e["run"] == run_id, e
        missing = [f for f in EVENT_FIELDS[e["type"]] if f not in e]
        assert not missing, (e, missing)
        if e["type"] == "stage":
            assert e["name"] in STAGES and 0 <= e["done"] <= e["total"], e
        if e["type"] == "run.end":
            assert e["status"] in END_STATUSES, e
    assert evs[0]["type"] == "run.start"
    assert evs[-1]["type"] == "run.end"
    assert sum(e["type"] == "run.start" for e in evs) == 1
    assert sum(e["type"] == "run.end" for e in evs) == 1
    json.dumps(evs)  # every value serialisable


def end_event(evs: list[dict]) -> dict:
    ends = [e for e in evs if e["type"] == "run.end"]
    assert ends, "no run.end"
    return ends[-1]


def make_assistant_lora(transformer_dir: Path, dest: Path, *, std: float = 0.05, rank: int = 4) -> Path:
    """A diffusers-format LoRA for the tiny transformer (attention layers, random A and B), as
    an assistant LoRA file would be; returns the .safetensors path."""
    import torch
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders import FluxLoraLoaderMixin
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    t = FluxTransformer2DModel.from_pretrained(transformer_dir)
    t.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    FluxLoraLoaderMixin.save_lora_weights(dest, transformer_lora_layers=get_peft_model_state_dict(t))
    return Path(dest) / "pytorch_lora_weights.safetensors"
