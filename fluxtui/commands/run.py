"""`fluxtui run DIR [--fresh] [--detach] [--watch] [--every N]`: validate, lock, train, follow.

Foreground: this process supervises the trainer (which runs in its own session, so a Ctrl+C
here is handled deliberately: the first asks for a graceful stop with a checkpoint, the
second stops at once) and follows events.jsonl: a live display on a terminal, one plain
line every N steps when piped. Exit 0 completed (or stopped from elsewhere), 1 failed or
crashed, 2 config errors, 130 after Ctrl+C.

--watch: config or dataset changes restart the trainer (resume when the change allows it,
a new run when it does not); invalid edits are reported and the trainer left alone.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from pathlib import Path

from fluxtui.core import events as ev
from fluxtui.core import gpu, lock, preflight, runs, supervise
from fluxtui.core.problems import ConfigError, has_errors
from fluxtui.core.workspace import Workspace

from .common import fail, paint, print_problems, use_colour

LOG_TAIL_LINES = 25
CTRL_C_GRACE = 5.0  # seconds the trainer gets to take up the stop file before SIGTERM
WATCH_STOP_GRACE = 30.0


def main(args) -> int:
    ws = Workspace.at(args.workspace)
    if ws.missing_reason():
        return fail(ws.missing_reason())
    if args.detach and args.watch:
        return fail("--watch needs this process to stay (it restarts the trainer); drop --detach")
    project, problems = runs.validate(ws)
    if problems:
        print_problems(problems, stream=sys.stderr)
    if project is None or has_errors(problems):
        n = sum(p.is_error for p in problems)
        return fail(f"{n} problem(s) in {ws.project_file.name} must be fixed before training")
    if args.detach:
        return _detach(ws, project, args)
    return Foreground(ws, args).run(project)


def _detach(ws: Workspace, project, args) -> int:
    try:
        info = runs.start_run(ws, fresh=args.fresh, detach=True, project=project)
    except lock.LockHeld as e:
        return fail(str(e), 1)
    except runs.RunStartError as e:
        return fail(str(e), 1)
    except OSError as e:  # a disk that filled up or went read-only since validation
        return fail(preflight.os_error_line(e, "cannot start the run"))
    for note in info.notes:
        print(f"{paint('note', 'yellow', sys.stderr)}: {note}", file=sys.stderr)
    print(info.run_id)
    where = args.workspace
    print(
        f"started in the background (trainer pid {info.pid}). "
        f"Follow: fluxtui logs {where} -f   status: fluxtui status {where}   stop: fluxtui stop {where}",
        file=sys.stderr,
    )
    return 0


class Foreground:
    """Runs (and under --watch restarts) the trainer and shows its progress."""

    def __init__(self, ws: Workspace, args):
        self.ws = ws
        self.args = args
        self.display = make_display(every=max(1, args.every))
        self.interrupts = 0
        self.changes: queue.Queue = queue.Queue()
        self.info: runs.RunInfo | None = None
        self.reader: ev.EventReader | None = None
        self.stop_sent_at: float | None = None
        self.term_sent = False
        self.pending: str | None = None  # under --watch: "resume" or "fresh" once the trainer stops
        self.last_status: str | None = None
        self.start_error = False  # the workspace could not be written: exit 2, like a config error

    # -- signals ----------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        self.interrupts += 1

    def _on_sighup(self, signum, frame) -> None:
        # the terminal is gone: keep supervising, silently
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        self.display.quiet = True

    # -- the loop ---------------------------------------------------------------------------
    def run(self, project) -> int:
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGHUP, self._on_sighup)
        watcher = None
        try:
            if not self._start(project, fresh=self.args.fresh):
                return 2 if self.start_error else 1
            if self.args.watch:
                from fluxtui.core.watch import ProjectWatcher

                watcher = ProjectWatcher(self.ws, self.changes.put, project=project).start()
                self.display.note(f"watching {self.ws.project_file.name} and the dataset folders for changes")
            return self._loop()
        finally:
            if watcher is not None:
                watcher.stop()
            self.display.close()
            if self.args.watch:
                lock.release(self.ws.lock_file)

    def _start(self, project, *, fresh: bool, resume: str | None = None) -> bool:
        try:
            info = runs.start_run(
                self.ws, fresh=fresh, detach=False, resume=resume, keep_lock=self.args.watch, project=project
            )
        except lock.LockHeld as e:
            fail(str(e), 1)
            return False
        except ConfigError as e:
            print_problems(e.problems, stream=sys.stderr)
            return False
        except runs.RunStartError as e:
            fail(str(e), 1)
            return False
        except OSError as e:  # a disk that filled up or went read-only since validation
            fail(preflight.os_error_line(e, "cannot start the run"))
            self.start_error = True
            return False
        for note in info.notes:
            self.display.note(note)
        self.info = info
        self.reader = ev.EventReader(info.events_path)
        self.stop_sent_at, self.term_sent = None, False
        self.display.begin(info)
        return True

    def _loop(self) -> int:
        last_gpu = 0.0
        handled_interrupts = 0
        while True:
            if self.interrupts > handled_interrupts:
                handled_interrupts = self.interrupts
                if not self._interrupt(handled_interrupts):
                    return 130
            if time.monotonic() - last_gpu > 2.0:
                last_gpu = time.monotonic()
                self.display.gpus(gpu.sample())
            self._drain_changes()
            if self.info is not None:
                for event in self.reader.poll():
                    self.display.event(event)
                self._escalate_stop()
                proc = runs.local_process(self.info.run_id)
                if proc is not None and proc.poll() is not None:
                    code = self._finished()
                    if code is not None:
                        return code
            time.sleep(0.1)

    def _finished(self) -> int | None:
        """The trainer exited. Returns an exit code, or None to keep going (watch)."""
        for event in self.reader.poll():
            self.display.event(event)
        info = runs.wait_run(self.ws, self.info.run_id, timeout=10)
        self.display.end(info)
        self.last_status = info.status
        self.info = None
        if self.interrupts:
            return 130
        if info.status in ("failed", "crashed"):
            self._explain_failure(info)
        if self.args.watch:
            if self.pending is not None:
                mode, self.pending = self.pending, None
                self._restart(mode, info)
                return None
            if info.status == "stopped":  # `fluxtui stop` or the TUI asked: that ends the session
                self.display.note("stopped from elsewhere; no longer watching")
                return 0
            self.display.note("waiting for changes (Ctrl+C to quit)")
            return None
        return 0 if info.status in ("completed", "stopped") else 1

    def _explain_failure(self, info: runs.RunInfo) -> None:
        err = sys.stderr
        if info.status == "failed":
            print(f"{paint('error', 'red', err)}: training failed: {info.error or 'no message'}", file=err)
        else:
            print(f"{paint('error', 'red', err)}: the trainer crashed: {info.exit_detail}", file=err)
        tail = _tail_lines(info.log_path, LOG_TAIL_LINES)
        if tail:
            print(paint(f"--- last lines of {info.log_path} ---", "dim", err), file=err)
            for line in tail:
                print(line, file=err)

    # -- stopping ---------------------------------------------------------------------------
    def _interrupt(self, count: int) -> bool:
        """Ctrl+C. Returns False when this process should leave at once."""
        if self.info is None:  # --watch, idle between runs
            return False
        if count == 1:
            self.display.note("stopping: the trainer saves a checkpoint first (Ctrl+C again to stop at once)")
            self._request_stop(grace=CTRL_C_GRACE)
            return True
        if count >= 3 and self.info.pid:
            self.display.note("killing the trainer (SIGKILL)")
            runs.kill_run(self.info)
            return True
        if supervise.last_run_end(self.info.events_path) is not None:
            self.display.note("the trainer has already ended its run; it is exiting (Ctrl+C again to kill)")
            return True
        self.display.note("stopping at once, without a checkpoint (Ctrl+C again to kill)")
        if self.info.pid:
            # The trainer leaves at once on its second signal. Two different ones: two of the
            # same kind can reach Python as one while it is busy in native code.
            if not self.term_sent:
                _kill(self.info.pid, signal.SIGTERM)
            _kill(self.info.pid, signal.SIGINT)
            self.term_sent = True
        return True

    def _request_stop(self, grace: float) -> None:
        if self.info is None or self.stop_sent_at is not None:
            return
        try:
            runs.request(self.ws, self.info.run_id, "stop")
        except OSError:
            pass
        self.stop_sent_at = time.monotonic()
        self._grace = grace

    def _escalate_stop(self) -> None:
        """SIGTERM when the trainer has not taken up the stop file (busy loading, say)."""
        if self.stop_sent_at is None or self.term_sent or self.info is None or not self.info.pid:
            return
        if time.monotonic() - self.stop_sent_at < self._grace:
            return
        if (self.info.dir / runs.CONTROL_DIR / "stop").exists():
            _kill(self.info.pid, signal.SIGTERM)
            self.term_sent = True

    # -- watch ------------------------------------------------------------------------------
    def _drain_changes(self) -> None:
        while True:
            try:
                change = self.changes.get_nowait()
            except queue.Empty:
                return
            self._on_change(change)

    def _on_change(self, change) -> None:
        note = self.display.note
        if not change.valid:
            note(paint("the edit has problems; the trainer is left running as it was:", "yellow"))
            self.display.pause()
            print_problems([p for p in change.problems if p.is_error] or change.problems)
            self.display.resume()
            return
        if not change.keys and not change.paths:
            note("project.toml is valid again; nothing that matters changed")
            return
        what = change.describe()
        if change.resumable:
            note(f"changed: {what} — resuming can absorb this: stop with a checkpoint, then resume")
            mode = "resume"
        else:
            blocking = ", ".join(change.blocking_keys)
            note(f"changed: {what} — resuming cannot absorb {blocking}: a new run will start from step 0")
            mode = "fresh"
        self.pending = "fresh" if "fresh" in (mode, self.pending) else "resume"
        if self.info is None:
            mode, self.pending = self.pending, None
            self._restart(mode, None)
        else:
            self._request_stop(grace=WATCH_STOP_GRACE)

    def _restart(self, mode: str, previous: runs.RunInfo | None) -> None:
        project, problems = runs.validate(self.ws)
        if project is None:
            self.display.note("cannot restart: the project has problems now")
            print_problems(problems)
            return
        resume = None
        if mode == "resume" and previous is not None and previous.last_checkpoint:
            resume = previous.last_checkpoint
        self._start(project, fresh=(mode == "fresh"), resume=resume)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-n:]


# -- progress display -----------------------------------------------------------------------


class _Stats:
    """Running numbers for the display: smoothed loss and s/step, ETA."""

    def __init__(self):
        self.step = 0
        self.total: int | None = None
        self.loss: float | None = None
        self.loss_avg: float | None = None
        self.lr: float | None = None
        self.s_per_step: float | None = None
        self.vram_peak_mb: float | None = None
        self.rss_mb: float | None = None
        self._last: tuple[float, int] | None = None
        self.gpus: list = []

    def step_event(self, e: dict) -> None:
        step, t = int(e.get("step") or 0), float(e.get("t") or time.time())
        if self._last is not None and step > self._last[1]:
            dt = (t - self._last[0]) / (step - self._last[1])
            self.s_per_step = dt if self.s_per_step is None else 0.8 * self.s_per_step + 0.2 * dt
        self._last = (t, step)
        self.step = step
        loss = e.get("loss")
        if isinstance(loss, (int, float)):
            self.loss = float(loss)
            self.loss_avg = self.loss if self.loss_avg is None else 0.9 * self.loss_avg + 0.1 * self.loss
        self.lr = e.get("lr")
        self.vram_peak_mb = e.get("vram_peak_mb")
        self.rss_mb = e.get("rss_mb")

    def eta(self) -> str:
        if not self.total or self.s_per_step is None:
            return "?"
        return _duration(max(0, self.total - self.step) * self.s_per_step)

    def memory(self) -> str:
        if self.gpus:
            return "  ".join(
                f"GPU{g.index} {g.used_mb / 1024:.1f}/{g.total_mb / 1024:.0f} GB"
                + (f" {g.util_pct}%" if g.util_pct is not None else "")
                for g in self.gpus
            )
        if self.vram_peak_mb:
            return f"VRAM peak {self.vram_peak_mb / 1024:.1f} GB"
        if self.rss_mb:
            return f"RAM {self.rss_mb:.0f} MB (no GPU)"
        return "no GPU"

    def lines(self) -> tuple[str, str]:
        """(progress and loss, speed and memory): one line each on a terminal."""
        total = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.step / self.total:.0f}%)" if self.total else ""
        first = [f"step {self.step}{total}{pct}"]
        if self.loss is not None:
            first.append(f"loss {self.loss:.4f} (avg {self.loss_avg:.4f})")
        second = []
        if isinstance(self.lr, (int, float)):
            second.append(f"lr {self.lr:.2e}")
        if self.s_per_step is not None:
            second.append(f"{self.s_per_step:.2f} s/step")
            second.append(f"ETA {self.eta()}")
        second.append(self.memory())
        return "  ".join(first), "  ".join(second)

    def line(self) -> str:
        return "  ".join(self.lines())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _describe_event(e: dict, run_dir: Path | None) -> str | None:
    """A line for the events worth a line of their own (everything but steps)."""
    kind = e.get("type")
    if kind == "run.start":
        resumed = e.get("resumed_from")
        how = f"resumed from step {resumed}" if resumed is not None else "from step 0"
        return f"trainer started (pid {e.get('pid')}, {e.get('world_size')} process(es), {how})"
    if kind == "stage":
        total = e.get("total") or 0
        return f"stage {e.get('name')}" + (f": {e.get('done')}/{total}" if total > 1 else "")
    if kind == "checkpoint":
        removed = e.get("removed") or []
        extra = f", pruned {len(removed)} old" if removed else ""
        return f"checkpoint at step {e.get('step')}: {e.get('path')} ({e.get('seconds', 0):.1f}s{extra})"
    if kind == "validation":
        images = e.get("images") or []
        folder = run_dir / "validation" / f"step-{e.get('step')}" if run_dir else None
        where = f" in {folder}" if folder else ""
        return f"validation at step {e.get('step')}: {len(images)} image(s){where}"
    if kind == "warning":
        key = f" [{e.get('key')}]" if e.get("key") else ""
        return f"warning{key}: {e.get('message')}"
    return None


class PlainDisplay:
    """Piped output: one line per `every` steps, and one per other event."""

    def __init__(self, every: int, stream=None):
        self.every = every
        self.stream = stream or sys.stdout
        self.stats = _Stats()
        self.quiet = False
        self._stages_seen: set[str] = set()
        self.run_dir: Path | None = None

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        self._print(f"[fluxtui] {text}")

    def begin(self, info: runs.RunInfo) -> None:
        self.stats = _Stats()
        self.stats.total = info.total_steps
        self._stages_seen = set()
        self.run_dir = info.dir
        self._print(f"run {info.run_id} (outputs/{info.run_id}, log: {info.log_path})")

    def gpus(self, samples: list) -> None:
        self.stats.gpus = samples

    def event(self, e: dict) -> None:
        kind = e.get("type")
        if kind == "step":
            self.stats.step_event(e)
            step = self.stats.step
            if step % self.every == 0 or step == 1 or step == self.stats.total:
                self._print(self.stats.line())
            return
        if kind == "stage":
            if e.get("name") == "train" and e.get("total"):
                self.stats.total = int(e["total"])
            # one line when a stage first starts; save and validate have their own events
            if e.get("name") in self._stages_seen or e.get("name") in ("save", "validate"):
                return
            self._stages_seen.add(e.get("name"))
        if kind == "run.end":
            return
        text = _describe_event(e, self.run_dir)
        if text:
            self._print(text)

    def end(self, info: runs.RunInfo) -> None:
        self._print(_end_line(info))

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        pass


def _end_line(info: runs.RunInfo) -> str:
    step = f" at step {info.step}" if info.step is not None else ""
    if info.status == "completed":
        lora = info.dir / "lora"
        return f"completed{step}; LoRA in {lora}"
    if info.status == "stopped":
        if info.error:  # stopped at once: no checkpoint of this step
            earlier = f" (last checkpoint {info.last_checkpoint})" if info.last_checkpoint else ""
            return f"stopped{step}: {info.error}{earlier}"
        ckpt = f"; checkpoint {info.last_checkpoint}" if info.last_checkpoint else ""
        return f"stopped{step}{ckpt}"
    if info.status == "failed":
        return f"failed{step}: {info.error}"
    return f"{info.status}{step}: {info.exit_detail or ''}"


class RichDisplay(PlainDisplay):
    """A terminal: a live progress bar and numbers; other events scroll above it."""

    def __init__(self, every: int):
        super().__init__(every)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(no_color=not use_colour())
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.run_id = ""

    def _print(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def begin(self, info: runs.RunInfo) -> None:
        super().begin(info)
        self.run_id = info.run_id
        self._refresh()

    def gpus(self, samples: list) -> None:
        super().gpus(samples)
        self._refresh()

    def event(self, e: dict) -> None:
        if e.get("type") == "step":
            self.stats.step_event(e)
            self._refresh()
            return
        if e.get("type") == "stage":
            self._stage_now = e
        super().event(e)
        self._refresh()

    def _refresh(self) -> None:
        if self.quiet:
            return
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self.stats
        stage = getattr(self, "_stage_now", None)
        head = f"run {self.run_id}"
        if stage is not None and stage.get("name") != "train" and (stage.get("done") or 0) < (stage.get("total") or 0):
            head += f"  ·  {stage.get('name')} {stage.get('done')}/{stage.get('total')}"  # a stage in progress
        width = max(10, min(60, self.console.width - 2))
        bar = ProgressBar(total=float(s.total or 1), completed=float(s.step), width=width)
        grid = Table.grid()
        for row in (Text(head, style="bold"), bar, *(Text(line) for line in s.lines())):
            grid.add_row(row)  # a grid puts each on its own line (a bar alone ends no line)
        self.live.update(grid)

    def pause(self) -> None:
        self.live.stop()

    def resume(self) -> None:
        self.live.start()

    def close(self) -> None:
        self.live.stop()


def make_display(every: int):
    if sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        return RichDisplay(every)
    return PlainDisplay(every)
