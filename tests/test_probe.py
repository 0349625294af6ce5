"""`fluxtui probe`: a real short run with random weights, reported next to the estimate."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from fluxtui.core import config
from fluxtui.core.probe import prepare, stage_peaks, summarise
from fluxtui.core.workspace import Workspace


def test_scratch_workspace_is_valid_and_isolated(demo_workspace):
    project = config.load_or_raise(demo_workspace)
    dest = prepare(project, Workspace.at(demo_workspace), steps=3)
    probe_project, problems = config.load(dest)
    assert problems == []
    assert probe_project.model.random_weights is True
    assert probe_project.training.max_train_steps == 3
    assert probe_project.validation.validation_steps == 0
    assert [d.id for d in probe_project.datasets] == ["probe"]
    assert probe_project.datasets[0].resolution == project.datasets[0].resolution
    assert len(list((dest / "datasets" / "probe").glob("*.png"))) == 4
    assert dest.is_relative_to(demo_workspace / ".fluxtui")
    assert (demo_workspace / "project.toml").read_text() == project.text  # untouched


def test_summary_from_events():
    events = [
        {"type": "run.start", "t": 100.0},
        {"type": "step", "t": 110.0, "vram_peak_mb": 10, "rss_mb": 500},
        {"type": "step", "t": 111.0, "vram_peak_mb": 30, "rss_mb": 520},
        {"type": "step", "t": 113.0, "vram_peak_mb": 20, "rss_mb": 510},
        {"type": "run.end", "t": 114.0, "status": "completed"},
    ]
    r = summarise(events, 1.234)
    assert r.ok and r.steps == 3
    assert r.time_to_first_step_s == 10.0
    assert r.seconds_per_step == 1.5
    assert r.peak_vram_mb == 30 and r.peak_rss_mb == 520
    timed = summarise(
        [{"type": "run.start", "t": 0.0, "world_size": 2}]
        + [{"type": "step", "t": 1.0, "samples_per_s": v} for v in (1.0, 8.0, 4.0, 2.0)],
        None,
        samples_per_step=4,
    )
    assert timed.seconds_per_step == 2.0  # median of 4*2/8, 4*2/4, 4*2/2: the first step is warm-up
    failed = summarise([{"type": "run.start", "t": 1.0}, {"type": "run.end", "status": "failed", "error": "OOM"}], None)
    assert not failed.ok and failed.error == "OOM"


def test_stage_peaks_take_the_largest_report_of_each_stage(demo_workspace):
    from fluxtui.core.estimate import estimate

    evs = [
        {"type": "stage", "name": "cache_text", "rss_peak_mb": 600.0, "nvml_peak_mb": 900.0},
        {"type": "stage", "name": "train", "rss_peak_mb": 700.0, "vram_reserved_peak_mb": 2048.0},
        {"type": "step", "rss_mb": 5000.0},
        {"type": "stage", "name": "train", "rss_peak_mb": 650.0, "vram_reserved_peak_mb": 4096.0},
    ]
    est = estimate(config.load_or_raise(demo_workspace))
    peaks = stage_peaks(evs, est)
    assert list(peaks) == ["cache_text", "train"]
    assert peaks["train"]["rss_peak_mb"] == 700.0 and peaks["train"]["vram_reserved_peak_mb"] == 4096.0
    assert peaks["cache_text"]["nvml_peak_mb"] == 900.0
    assert peaks["train"]["estimate_torch_gib"] == round(est.torch_gib("train"), 3)
    assert peaks["train"]["estimate_ram_gib"] == round(est.ram_peaks["train"], 3)


@pytest.mark.slow
def test_probe_runs_the_real_trainer(demo_workspace):
    out = run_cli("probe", str(demo_workspace), "--steps", "3", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] and result["steps"] == 3
    assert result["seconds_per_step"] > 0 and result["peak_rss_mb"] > 0
    assert result["estimate_gib"] > 0
    # peaks by stage, each next to its estimate (RSS only: no GPU here)
    stages = result["stages"]
    assert {"cache_text", "cache_latents", "load_models", "train"} <= set(stages)
    for name in ("cache_text", "cache_latents", "load_models", "train"):
        assert stages[name]["rss_peak_mb"] > 0 and stages[name]["estimate_ram_gib"] > 0
        assert "vram_peak_mb" not in stages[name]
    assert not (demo_workspace / ".fluxtui" / "probe").exists()  # cleaned up after success
    assert not list((demo_workspace / "outputs").iterdir())  # no run left in the real workspace
