"""The TUI latency bench runs (CI smoke): the real app, a live tiny-random run, every
number present. No timing asserts: the numbers go in docs/benchmarks.md."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FIELDS = [
    "first_paint_ms",
    "key_idle_p50_ms",
    "key_idle_p95_ms",
    "key_run_p50_ms",
    "key_run_p95_ms",
    "cpu_overview_idle_pct",
    "cpu_overview_run_pct",
    "cpu_monitor_run_pct",
    "rss_start_mb",
    "rss_end_mb",
]


def run_bench(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_numbers(out: dict, fields: list[str]) -> None:
    for name in fields:
        assert isinstance(out.get(name), (int, float)) and math.isfinite(out[name]) and out[name] >= 0, name


def test_tui_latency_bench_quick_json():
    out = run_bench("tui_latency.py", "--quick")
    assert_numbers(out, FIELDS)
    assert out["rss_end_mb"] > 0 and out["key_run_p95_ms"] >= out["key_run_p50_ms"]


TMUX_FIELDS = [
    "first_paint_ms",
    "key_idle_p50_ms",
    "key_idle_p95_ms",
    "cpu_overview_idle_pct",
    "cpu_monitor_idle_pct",
    "key_run_p50_ms",
    "key_run_p95_ms",
    "cpu_overview_run_pct",
    "cpu_monitor_run_pct",
    "cpu_runs_run_pct",
    "rss_start_mb",
    "rss_end_mb",
]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_tui_tmux_bench_one_round_json():
    """The terminal bench: `fluxtui DIR` in a real tmux pane, keys timed by the frames tmux saw."""
    out = run_bench("tui_tmux.py", "--rounds", "1", "--window", "2")
    assert_numbers(out, TMUX_FIELDS)
    assert out["key_run_p95_ms"] >= out["key_run_p50_ms"] > 0
    assert set(out["key_idle_median_by_screen"]) == {"1", "2", "3", "4", "5"}
