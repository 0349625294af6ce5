"""`fluxtui probe`: a short real training run of the configured model with random weights.

The probe answers "will this fit, and how fast is it?" before anyone downloads 24 GB: it copies
the project into a scratch workspace under .fluxtui/probe/, switches on `random_weights`,
replaces the datasets with a few generated images at the configured resolution, turns off
validation, checkpoints and uploads, runs the real trainer for N steps, and reads peak VRAM,
s/step and time to first step from its events.

Per stage (the trainer's `stage` events carry each stage's peaks: torch's allocated and
reserved counters, NVML's device-wide use, the process's peak RSS) it sets the measurement
next to the estimate of the scratch project, so a GPU run can hold the estimate to +-10% per
stage: torch's reserved peak against the stage without the CUDA context, NVML against the
whole stage, RSS against the RAM estimate.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from . import config
from .datasets import target_size
from .events import read_all
from .workspace import Workspace

PROBE_IMAGES = 4
RUN_ID = "probe"


@dataclass
class ProbeResult:
    ok: bool
    steps: int
    time_to_first_step_s: float | None
    seconds_per_step: float | None  # median over the steps after the first
    peak_vram_mb: float | None  # torch's peak allocation (0 on a CPU)
    peak_rss_mb: float | None
    estimate_gib: float | None
    error: str | None = None
    log_tail: str = ""
    # stage -> measured peaks (MiB: vram_peak_mb, vram_reserved_peak_mb, nvml_peak_mb, rss_peak_mb)
    # and the estimate's (GiB: estimate_torch_gib, estimate_gpu_gib, estimate_ram_gib)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def scratch_dir(ws: Workspace) -> Path:
    return ws.state_dir / "probe"


def prepare(project: config.Project, ws: Workspace, steps: int) -> Path:
    """Write the scratch workspace and return its folder."""
    from PIL import Image

    dest = scratch_dir(ws)
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "datasets" / "probe").mkdir(parents=True)
    shutil.copy2(project.path, dest / config.PROJECT_FILE)
    # The scratch cache reuses the workspace's built tiny models, never its latents.
    models = ws.cache_dir / "models"
    if models.is_dir():
        (dest / "cache").mkdir()
        (dest / "cache" / "models").symlink_to(models, target_is_directory=True)

    largest = max(project.active_datasets, key=_pixels, default=None)
    w, h = target_size(1024, 1024, largest) if largest is not None else (512, 512)
    for i in range(PROBE_IMAGES):
        Image.new("RGB", (w, h), (40 * i, 120, 200 - 40 * i)).save(dest / "datasets" / "probe" / f"{i}.png")
        (dest / "datasets" / "probe" / f"{i}.txt").write_text("a probe image\n")

    changes: dict[str, Any] = {
        "model.random_weights": True,
        "training.max_train_steps": steps,
        "training.num_train_epochs": 0,
        "training.checkpointing_steps": 0,
        "training.resume_from_checkpoint": "none",
        "training.lr_warmup_steps": 0,
        "validation.validation_steps": 0,
        "hub.push_to_hub": False,
        "logging.report_to": "none",
        "text_embeds.cache_dir": "cache/text",
    }
    config.set_values(dest / config.PROJECT_FILE, changes)
    _replace_datasets(dest / config.PROJECT_FILE, largest)
    return dest


def _pixels(ds: Any) -> int:
    w, h = target_size(1024, 1024, ds)
    return w * h


def _replace_datasets(path: Path, like: Any) -> None:
    """One dataset of the generated images, sized like the project's largest."""
    import tomlkit

    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    table = tomlkit.table()
    table["id"] = "probe"
    table["instance_data_dir"] = "datasets/probe"
    table["caption_strategy"] = "textfile"
    table["repeats"] = 64  # enough for any batch x accumulation x processes
    if like is not None:
        table["resolution"] = like.resolution
        table["resolution_type"] = like.resolution_type
    aot = tomlkit.aot()
    aot.append(table)
    doc["datasets"] = aot
    config.atomic_write_text(path, tomlkit.dumps(doc))


def run(project: config.Project, ws: Workspace, steps: int, *, timeout: float | None = None) -> ProbeResult:
    from .estimate import estimate

    dest = prepare(project, ws, steps)
    # the scratch project is what runs; torch counts a peak without the CUDA context
    scratch = config.load_or_raise(dest)
    full = estimate(scratch)
    est = full.torch_gib("train")
    cmd = [sys.executable, "-m", "fluxtui.trainer", str(dest), "--run", RUN_ID, "--fresh"]
    log = dest / "probe.log"
    with open(log, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=dict(os.environ))
    events = read_all(dest / "outputs" / RUN_ID / "events.jsonl")
    t = project.training
    result = summarise(events, est, samples_per_step=t.train_batch_size * t.gradient_accumulation_steps)
    result.stages = stage_peaks(events, full)
    if proc.returncode != 0 or not result.ok:
        result.ok = False
        tail = log.read_text(errors="replace").splitlines()[-15:]
        result.log_tail = "\n".join(tail)
        result.error = result.error or f"the trainer exited with {proc.returncode}"
    else:
        shutil.rmtree(dest, ignore_errors=True)
    return result


MEASURED = ("vram_peak_mb", "vram_reserved_peak_mb", "nvml_peak_mb", "rss_peak_mb")


def stage_peaks(events: list[dict], est: Any = None) -> dict[str, dict[str, float]]:
    """Each stage's peaks from its `stage` events (the largest any of them reported), with the
    estimate's figures for it when `est` (a core.estimate.Estimate) is given."""
    out: dict[str, dict[str, float]] = {}
    for e in events:
        if e.get("type") != "stage":
            continue
        row = out.setdefault(e["name"], {})
        for key in MEASURED:
            if e.get(key) is not None:
                row[key] = max(row.get(key, 0.0), float(e[key]))
    if est is not None:
        for name, row in out.items():
            if name in est.stages:
                row["estimate_torch_gib"] = round(est.torch_gib(name), 3)
                row["estimate_gpu_gib"] = round(est.stage_peaks[name], 3)
            if name in est.ram_peaks:
                row["estimate_ram_gib"] = round(est.ram_peaks[name], 3)
    return out


def summarise(events: list[dict], estimate_gib: float | None, *, samples_per_step: int | None = None) -> ProbeResult:
    start = next((e for e in events if e["type"] == "run.start"), None)
    steps = [e for e in events if e["type"] == "step"]
    end = next((e for e in events if e["type"] == "run.end"), None)
    error = end.get("error") if end and end.get("status") == "failed" else None
    if not steps:
        return ProbeResult(False, 0, None, None, None, None, estimate_gib, error or "no training step ran")
    first = steps[0]["t"] - start["t"] if start else None
    world = (start or {}).get("world_size") or 1
    if samples_per_step and all(e.get("samples_per_s") for e in steps[1:]):
        # each step's own duration (event timestamps are only millisecond-precise)
        gaps = [samples_per_step * world / e["samples_per_s"] for e in steps[1:]]
    else:
        gaps = [b["t"] - a["t"] for a, b in pairwise(steps)]
    return ProbeResult(
        ok=error is None,
        steps=len(steps),
        time_to_first_step_s=round(first, 2) if first is not None else None,
        seconds_per_step=round(statistics.median(gaps), 5) if gaps else None,
        peak_vram_mb=max(e.get("vram_peak_mb") or 0 for e in steps),
        peak_rss_mb=max(e.get("rss_mb") or 0 for e in steps),
        estimate_gib=None if estimate_gib is None else round(estimate_gib, 4),
        error=error,
    )
