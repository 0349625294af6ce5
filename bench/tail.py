"""The run monitor on a long run: time to first paint, memory, and how fast a new event shows.

Writes a run with N step events (default 1,000,000) into a fresh demo workspace, opens the
TUI's monitor on it (headless, the same app `fluxtui` runs), and prints:
  - first paint: seconds from app start to the first events on screen
  - full history: seconds until the whole events.jsonl has been read and drawn
  - memory: the process's RSS before the app, after the history, and the growth
  - new event: seconds from appending one step event to the monitor showing it (median, p95)

    python bench/tail.py [--lines 1000000] [--log-lines 200000] [--samples 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

RUN_ID = "20260101-000000"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_run(ws, lines: int, log_lines: int) -> Path:
    folder = ws.run_dir(RUN_ID)
    folder.mkdir(parents=True)
    t0 = time.time() - lines * 0.01
    with open(folder / "events.jsonl", "w", encoding="utf-8") as f:
        head = {"run": RUN_ID, "pid": os.getpid(), "world_size": 1, "config_hash": "x", "resumed_from": None}
        f.write(json.dumps({"t": t0, "type": "run.start", **head, "fluxtui_version": "bench"}) + "\n")
        f.write(
            json.dumps({"t": t0, "type": "stage", "run": RUN_ID, "name": "train", "done": 0, "total": lines * 2}) + "\n"
        )
        for step in range(1, lines - 1):
            f.write(
                json.dumps(
                    {
                        "t": round(t0 + step * 0.01, 3),
                        "type": "step",
                        "run": RUN_ID,
                        "step": step,
                        "epoch": 1 + step // 1000,
                        "loss": round(1.0 / (1 + step * 1e-5) + (step % 7) * 0.01, 6),
                        "lr": 1e-4,
                        "grad_norm": 0.12,
                        "samples_per_s": 3.1,
                        "vram_alloc_mb": 9120.5,
                        "vram_peak_mb": 9800.0,
                        "rss_mb": 5400.0,
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
    with open(folder / "trainer.log", "w", encoding="utf-8") as f:
        for i in range(log_lines):
            f.write(f"12:00:00 step {i}/{lines} epoch 1 loss 0.4213 lr 1.00e-04 310 ms\n")
    return folder


def append_step(folder: Path, step: int) -> None:
    event = {
        "t": time.time(),
        "type": "step",
        "run": RUN_ID,
        "step": step,
        "epoch": 1,
        "loss": 0.4,
        "lr": 1e-4,
        "grad_norm": 0.1,
        "samples_per_s": 3.0,
        "vram_alloc_mb": 9000.0,
        "vram_peak_mb": 9800.0,
        "rss_mb": 5400.0,
    }
    with open(folder / "events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(event, separators=(",", ":")) + "\n")


async def measure(root: Path, folder: Path, lines: int, samples: int) -> dict:
    from fluxtui.tui.app import make_app
    from fluxtui.tui.screens.monitor import MonitorScreen

    base = rss_mb()
    app = make_app(
        root, watch=False, gpu=False, mode="monitor", tail_interval=0.25
    )  # the interval the numbers in docs were measured at
    start = time.monotonic()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        while "history" not in screen.timings:
            await pilot.pause(0.01)
            if time.monotonic() - start > 600:
                raise SystemExit("the history never finished loading")
        await pilot.pause(0.5)  # the last chart redraw
        after = rss_mb()
        shown = screen.current.step
        latencies = []
        step = lines + 10
        for _ in range(samples):
            step += 1
            written = time.monotonic()
            append_step(folder, step)
            while screen.current.step != step or f"step {step}" not in str(screen.query_one("#mon-status").render()):
                await pilot.pause(0.002)
            latencies.append(time.monotonic() - written)
            await pilot.pause(random.uniform(0.0, 0.3))  # land anywhere in the tail's poll cycle
        return {
            "first_paint_s": screen.timings["first_batch"] - start,
            "history_s": screen.timings["history"] - start,
            "steps_loaded": shown,
            "rss_before_mb": base,
            "rss_after_mb": after,
            "latencies": latencies,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--log-lines", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="fluxtui-bench-xdg-"))

    from fluxtui.core import workspace

    with tempfile.TemporaryDirectory(prefix="fluxtui-bench-") as tmp:
        ws = workspace.init(Path(tmp) / "ws", demo=True)
        t = time.perf_counter()
        folder = write_run(ws, args.lines, args.log_lines)
        size_mb = (folder / "events.jsonl").stat().st_size / 1e6
        print(f"wrote {args.lines:,} events ({size_mb:.0f} MB) in {time.perf_counter() - t:.1f} s")
        r = asyncio.run(measure(ws.root, folder, args.lines, args.samples))
    lat = sorted(r["latencies"])
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(f"first paint        {r['first_paint_s']:.2f} s   (app start to the first events on screen)")
    print(f"full history       {r['history_s']:.2f} s   ({r['steps_loaded']:,} steps read and drawn)")
    print(
        f"memory (RSS)       {r['rss_before_mb']:.0f} MB before, {r['rss_after_mb']:.0f} MB after "
        f"(+{r['rss_after_mb'] - r['rss_before_mb']:.0f} MB)"
    )
    print(
        f"new event shown    median {statistics.median(lat) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {lat[-1] * 1000:.0f} ms ({len(lat)} events, poll interval 250 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
