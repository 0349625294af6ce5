"""TUI responsiveness: key-to-repaint latency, startup, idle CPU and memory of the real app.

    .venv/bin/python bench/tui_latency.py [--quick] [--no-run] [--json] [--soak MINUTES]

Drives the real FluxApp with Textual's Pilot (headless, real timers, the real run poller,
GPU sampler and file watcher) on an `init --demo` workspace, first idle (no run), then with
a live tiny-random run started the way the TUI starts one (detached trainer). Measures:

- first paint: from building the app to Pilot getting control (first screen composed,
  mounted and drawn);
- key p50/p95: `pilot.press` round trips (key handled, app idle again, screen repainted)
  for the screen-switch keys 1-5, after every screen was visited; with and without a run;
- idle CPU % of one core, from this process's CPU times over a window (the trainer is
  another process and is not counted): Overview without a run, Overview and Monitor with;
- RSS at start and at the end (and after --soak MINUTES of switching screens).

No timing asserts: tests/test_bench_smoke.py runs `--quick --json` and checks the fields.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import report  # bench/report.py: the script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = (160, 48)
KEYS = ["1", "2", "3", "4", "5"]


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_until(pilot, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        await pilot.pause(0.05)


async def key_latencies(pilot, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        for key in KEYS:
            t0 = time.perf_counter()
            await pilot.press(key)
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def idle_cpu(pilot, app, mode: str, seconds: float) -> float:
    await app.switch_mode(mode)
    await pilot.pause(1.0)  # let the switch settle
    c0, w0 = cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_s() - c0) / (time.monotonic() - w0)


def make_workspace(folder: Path) -> Path:
    from fluxtui.core import config, workspace

    root = workspace.init(folder / "ws", demo=True).root
    # the tiny trainer makes ~50 steps a second: a run that outlasts any soak
    config.set_values(
        root / "project.toml",
        {"training.max_train_steps": 10_000_000, "training.checkpointing_steps": 0, "validation.validation_steps": 0},
    )
    return root


async def bench(args) -> dict:
    from fluxtui.core import runs
    from fluxtui.tui.app import make_app

    quick = args.quick
    window = 2.0 if quick else args.window
    rounds = 2 if quick else 6
    out: dict = {"size": list(SIZE), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="fluxtui-bench-") as tmp:
        root = make_workspace(Path(tmp))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        out["rss_start_mb"] = rss_mb()
        t0 = time.perf_counter()
        app = make_app(root, settings_dir=Path(tmp) / "settings")
        run_id = None
        try:
            async with app.run_test(size=SIZE) as pilot:
                out["first_paint_ms"] = (time.perf_counter() - t0) * 1000
                await wait_until(pilot, lambda: app.state.loaded, 30, "the project")
                await key_latencies(pilot, 1)  # visit (mount) every screen once
                lat = await key_latencies(pilot, rounds)
                out["key_idle_p50_ms"], out["key_idle_p95_ms"] = statistics.median(lat), pct(lat, 0.95)
                out["cpu_overview_idle_pct"] = await idle_cpu(pilot, app, "overview", window)
                if not args.no_run:
                    info = runs.start_run(root, detach=True)
                    run_id = info.run_id
                    await wait_until(
                        pilot,
                        lambda: app.state.active is not None and (app.state.active.step or 0) > 0,
                        300,
                        "the first training step",
                    )
                    lat = await key_latencies(pilot, rounds)
                    out["key_run_p50_ms"], out["key_run_p95_ms"] = statistics.median(lat), pct(lat, 0.95)
                    out["cpu_overview_run_pct"] = await idle_cpu(pilot, app, "overview", window)
                    out["cpu_monitor_run_pct"] = await idle_cpu(pilot, app, "monitor", window)
                if args.soak:
                    end = time.monotonic() + args.soak * 60
                    while time.monotonic() < end:
                        await key_latencies(pilot, 1)
                        await asyncio.sleep(5)
                    lat = await key_latencies(pilot, rounds)
                    out["soak_minutes"] = args.soak
                    out["key_after_soak_p95_ms"] = pct(lat, 0.95)
                    if app.state.active is not None:
                        out["step_shown_after_soak"] = app.state.active.step
                out["rss_end_mb"] = rss_mb()
                await pilot.press("ctrl+q")
        finally:
            if run_id is not None:
                runs.stop_run(root, run_id, timeout=30.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run (CI): fewer keys, 2 s CPU windows")
    ap.add_argument("--no-run", action="store_true", help="idle workspace only, no trainer")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--soak", type=float, default=0.0, metavar="MINUTES", help="keep switching screens this long")
    ap.add_argument("--window", type=float, default=10.0, help="seconds per idle CPU window")
    args = ap.parse_args()
    out = asyncio.run(bench(args))
    report.emit(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
