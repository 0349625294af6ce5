"""The TUI as a person over SSH feels it: `fluxtui DIR` in a real tmux pane.

    .venv/bin/python bench/tui_tmux.py [--size 160x48] [--rounds 6] [--no-run] [--json]
                                       [--soak MINUTES]

Starts the real app in a private tmux server and follows the pane's output through a tmux
control-mode client, which reports every byte the app writes, stamped as it arrives. A key
is sent through the same client; its latency is from the send to the last byte of the
frame that shows the key's effect (the screen's own text, checked with capture-pane once
the output has been quiet for QUIET seconds, so the time is that of the frame, not of the
check). Measures, with and without a live tiny-random run (started with `s`, as a user
would):

- first paint: `tmux new-session` to the navigation bar on screen;
- key p50/p95: the screen-switch keys 1-5 (the heaviest keys: a whole 160x48 repaint),
  after every screen was visited once;
- idle CPU % of one core and RSS of the app process (from /proc; the trainer is another
  process and not counted): Overview and Monitor without a run, Overview, Monitor and
  Runs (which follows the live run's curve) with one;
- --soak MINUTES: keys every few seconds for that long with the run going; RSS sampled each
  minute, key p95 at the end, and whether the step on screen keeps up with the trainer's.

No timing asserts anywhere: the numbers go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import report  # bench/report.py: the script's folder is on sys.path
from tui_latency import make_workspace, pct  # the same workspace and percentile as the Pilot bench

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUIET = 0.015  # seconds without output that end a frame
# What each screen shows in its first rows, and nothing else does.
MARKERS = {
    "1": re.compile(r"─ Project ─"),
    "2": re.compile(r"project\s+model\s+lora"),
    "3": re.compile(r"file\s+size\s+bucket"),
    "4": re.compile(r"\A\s*(no run yet: press s|\S+ (starting|running|completed|stopped|failed|crashed) )"),
    "5": re.compile(r"run\s+status\s+steps\s+loss"),
}
ORDER = ["2", "3", "4", "5", "1"]  # from the Overview, where the app starts
TOP_ROWS = 4
CLK = os.sysconf("SC_CLK_TCK")


class Pane:
    """A private tmux server running one command, and a control client that timestamps output."""

    def __init__(self, command: str, size: tuple[int, int], cwd: Path, conf: Path):
        self.socket = f"fluxtui-bench-{os.getpid()}"
        conf.write_text('set -g default-terminal "screen-256color"\nset -g status off\n')
        self.base = ["tmux", "-L", self.socket, "-f", str(conf)]
        self.shown = "1"  # the screen on show, by its key
        self.started = time.monotonic()
        self.tmux("new-session", "-d", "-s", "b", "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd), command)
        # manual: the control client below must not resize the pane (in the config file it
        # crashes tmux 3.3a's server at new-session)
        self.tmux("set", "-g", "window-size", "manual")
        self.pid = int(self.tmux("list-panes", "-t", "b", "-F", "#{pane_pid}").strip())
        self.client = subprocess.Popen(
            [*self.base, "-C", "attach", "-t", "b"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.outputs: queue.Queue[float] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.client.stdout is not None
        for line in self.client.stdout:
            if line.startswith(b"%output "):
                self.outputs.put(time.monotonic())

    def tmux(self, *args: str) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"bench: tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "b")

    def send(self, key: str) -> float:
        assert self.client.stdin is not None
        t0 = time.monotonic()
        self.client.stdin.write(f"send-keys -t b {shlex.quote(key)}\n".encode())
        self.client.stdin.flush()
        return t0

    def drain(self) -> None:
        while True:
            try:
                self.outputs.get_nowait()
            except queue.Empty:
                return

    def wait_frame(self, predicate, t0: float, timeout: float = 60.0, eager: bool = False) -> float:
        """Seconds from t0 to the end of the first frame after which predicate(screen) holds.
        eager: check after every piece of output, not only once it went quiet (for startup,
        where one frame follows another without a pause)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.outputs.get(timeout=QUIET)
                if eager and predicate(self.screen()):
                    return last - t0
                continue
            except queue.Empty:
                pass
            if last is not None and predicate(self.screen()):
                return last - t0
            last = None
        raise SystemExit(f"bench: the pane never showed what was waited for; it shows:\n{self.screen()}")

    def wait_text(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.screen())
            if m:
                return m
            time.sleep(0.1)
        raise SystemExit(f"bench: {pattern!r} never appeared; the pane shows:\n{self.screen()}")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        try:
            if self.client.stdin:
                self.client.stdin.close()
        except OSError:
            pass
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)
        try:
            self.client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.client.kill()


def top(screen: str) -> str:
    return "\n".join(screen.splitlines()[1:TOP_ROWS])


def switch(pane: Pane, key: str) -> float | None:
    """Milliseconds from the key to the frame showing its screen; None if already there."""
    if pane.shown == key:
        return None
    pane.drain()
    t0 = pane.send(key)
    ms = 1000 * pane.wait_frame(lambda s: bool(MARKERS[key].search(top(s))), t0)
    pane.shown = key
    return ms


def key_latencies(pane: Pane, rounds: int, by_key: dict | None = None) -> list[float]:
    out = []
    for _ in range(rounds):
        for key in ORDER:
            ms = switch(pane, key)
            if ms is None:
                continue
            out.append(ms)
            if by_key is not None:
                by_key.setdefault(key, []).append(ms)
    return out


def medians(by_key: dict) -> dict:
    """Per screen key: [median, slowest] milliseconds."""
    return {key: [round(statistics.median(v), 1), round(max(v), 1)] for key, v in by_key.items()}


def idle_cpu(pane: Pane, key: str, seconds: float, frames: dict | None = None) -> float:
    """CPU % of one core over `seconds` on screen `key`; frames[key]: repaints per second."""
    switch(pane, key)
    time.sleep(1.0)
    pane.drain()
    c0, w0 = pane.cpu_s(), time.monotonic()
    time.sleep(seconds)
    cpu = 100 * (pane.cpu_s() - c0) / (time.monotonic() - w0)
    if frames is not None:
        frames[key] = round(count_frames(pane) / seconds, 2)
    return cpu


def count_frames(pane: Pane) -> int:
    """Bursts of output separated by QUIET: one per repaint."""
    n, last = 0, None
    while True:
        try:
            t = pane.outputs.get_nowait()
        except queue.Empty:
            return n
        if last is None or t - last > QUIET:
            n += 1
        last = t


def bench(args) -> dict:
    from fluxtui.core import runs

    size = tuple(int(v) for v in args.size.lower().split("x"))
    out: dict = {"size": list(size), "rounds": args.rounds, "trainer_threads": args.trainer_threads or None}
    with tempfile.TemporaryDirectory(prefix="fluxtui-tmux-bench-") as tmp:
        tmp = Path(tmp)
        root = make_workspace(tmp)
        env = ["env", "-u", "NO_COLOR", f"XDG_CONFIG_HOME={tmp / 'xdg'}", "HF_HUB_OFFLINE=1", f"PYTHONPATH={ROOT}"]
        if args.trainer_threads:  # the trainer inherits it: leaves the TUI a core of its own
            env += [f"OMP_NUM_THREADS={args.trainer_threads}"]
        command = shlex.join([*env, sys.executable, "-m", "fluxtui.cli", str(root)])
        pane = Pane("exec " + command, size, root, tmp / "tmux.conf")
        run_id = None
        try:
            first = pane.wait_frame(
                lambda s: "1 Overview" in s and bool(MARKERS["1"].search(top(s))), pane.started, eager=True
            )
            out["first_paint_ms"] = 1000 * first
            pane.wait_text(r"no runs yet", 60)
            out["rss_start_mb"] = pane.rss_mb()
            key_latencies(pane, 1)  # visit (mount) every screen once
            by_key: dict = {}
            lat = key_latencies(pane, args.rounds, by_key)
            out["key_idle_p50_ms"], out["key_idle_p95_ms"] = statistics.median(lat), pct(lat, 0.95)
            out["key_idle_median_by_screen"] = medians(by_key)
            frames: dict = {}
            out["cpu_overview_idle_pct"] = idle_cpu(pane, "1", args.window, frames)
            out["cpu_monitor_idle_pct"] = idle_cpu(pane, "4", args.window, frames)
            out["frames_per_s_idle"] = dict(frames)
            if not args.no_run:
                switch(pane, "1")
                pane.send("s")
                pane.wait_text(r"step [1-9]\d*/", 300)
                run_id = runs.list_runs(root)[-1].run_id
                by_key = {}
                lat = key_latencies(pane, args.rounds, by_key)
                out["key_run_p50_ms"], out["key_run_p95_ms"] = statistics.median(lat), pct(lat, 0.95)
                out["key_run_median_by_screen"] = medians(by_key)
                frames = {}
                out["cpu_overview_run_pct"] = idle_cpu(pane, "1", args.window, frames)
                out["cpu_monitor_run_pct"] = idle_cpu(pane, "4", args.window, frames)
                out["cpu_runs_run_pct"] = idle_cpu(pane, "5", args.window, frames)  # the live run's curve
                out["frames_per_s_run"] = frames
            if args.soak:
                out.update(soak(pane, root, run_id, args))
            out["rss_end_mb"] = pane.rss_mb()
        finally:
            if run_id is not None:
                runs.stop_run(root, run_id, timeout=30.0)
            pane.close()
    return out


def soak(pane: Pane, root: Path, run_id: str | None, args) -> dict:
    from fluxtui.core import runs

    rss, lags = [pane.rss_mb()], []
    end = time.monotonic() + args.soak * 60
    next_sample = time.monotonic() + 60
    while time.monotonic() < end:
        key_latencies(pane, 1)
        time.sleep(5)
        if time.monotonic() >= next_sample:
            rss.append(pane.rss_mb())
            next_sample += 60
            if run_id is not None:
                switch(pane, "4")
                time.sleep(3)  # the monitor's coalesced redraw
                shown = re.search(r"step (\d+)/", pane.screen())
                wrote = runs.get_run(root, run_id).step or 0
                if shown:
                    lags.append(wrote - int(shown[1]))
            print(f"soak: {len(rss) - 1} min, rss {rss[-1]:.1f} MB, step lag {lags[-1:]}", file=sys.stderr)
    lat = key_latencies(pane, args.rounds)
    return {
        "soak_minutes": args.soak,
        "soak_rss_mb": [round(v, 1) for v in rss],
        "soak_step_lag_max": max(lags) if lags else None,
        "key_after_soak_p50_ms": statistics.median(lat),
        "key_after_soak_p95_ms": pct(lat, 0.95),
        "cpu_monitor_after_soak_pct": idle_cpu(pane, "4", args.window),
        "cpu_runs_after_soak_pct": idle_cpu(pane, "5", args.window),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="160x48", help="pane size, COLSxROWS")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of the five screen keys per measurement")
    ap.add_argument("--no-run", action="store_true", help="idle workspace only, no trainer")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--soak", type=float, default=0.0, metavar="MINUTES", help="keep it open this long with a run")
    ap.add_argument("--window", type=float, default=10.0, help="seconds per idle CPU window")
    ap.add_argument(
        "--trainer-threads", type=int, default=0, help="OMP_NUM_THREADS for the tiny trainer (0: its default)"
    )
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench: needs tmux")
    out = bench(args)
    report.emit(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
