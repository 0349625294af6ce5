"""Requests from outside: files in outputs/<run>/control/ and signals.

Viewers write `stop`, `checkpoint` or `validate` into the control folder; the loop polls
between steps, removes the file and acts. SIGTERM (or a first Ctrl-C) asks for a graceful
stop: finish the step, save a checkpoint, end with status `stopped`. A second SIGTERM or
SIGINT leaves at once.

With several processes only rank 0 looks at the folder, and every poll agrees on the
requests across ranks (a max all-reduce), so all ranks stop or checkpoint at the same step.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from fluxtui.core.supervise import EXIT_NOW_CODE  # the supervisor reads this exit code too

__all__ = ["CONTROL_DIR", "EXIT_NOW_CODE", "REQUESTS", "Control", "leave"]

CONTROL_DIR = "control"
REQUESTS = ("stop", "checkpoint", "validate")


class Control:
    def __init__(self, run_dir: Path, *, main: bool):
        self.folder = Path(run_dir) / CONTROL_DIR
        self.main = main
        self.signals = 0
        self.signal_name = ""
        self._on_exit_now: Callable[[str], None] | None = None
        if main:
            self.folder.mkdir(parents=True, exist_ok=True)

    def install_signal_handlers(self, on_exit_now: Callable[[str], None]) -> None:
        """on_exit_now(signal_name) runs on the second signal, just before the process exits.

        Signals are counted by a small thread that reads the wakeup fd, not by a Python
        handler: a handler runs only when the main thread gets back to Python, which may be
        a minute away (a long native call, a big write), and a signal the kernel hands to
        another thread does not even wake it. The thread acts at once."""
        self._on_exit_now = on_exit_now
        handler: Callable[[int, object], None] = self._handle
        try:
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread: the handler counts, as before
            pass
        else:
            handler = _counted_by_the_watcher
            threading.Thread(target=self._watch, args=(read_fd,), name="fluxtui-signals", daemon=True).start()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _watch(self, read_fd: int) -> None:
        """Each byte is a signal number, written by the C-level handler as the signal lands."""
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._handle(signum, None)

    def _handle(self, signum: int, frame: object) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            self.signal_name = name
            return
        if self._on_exit_now is not None:
            try:
                self._on_exit_now(name)
            finally:
                os._exit(EXIT_NOW_CODE)
        os._exit(EXIT_NOW_CODE)

    @property
    def stop_requested(self) -> bool:
        return self.signals > 0

    def stop_agreed(self, world_size: int = 1, device: object = None) -> bool:
        """Whether any rank was signalled to stop (a collective: every rank must call it)."""
        if world_size == 1:
            return self.stop_requested
        return _agree({"stop": self.stop_requested}, device)["stop"]

    def poll(self, world_size: int = 1, device: object = None) -> set[str]:
        """The requests pending now (consumed): a subset of REQUESTS, the same on every rank."""
        wanted = dict.fromkeys(REQUESTS, False)
        if self.main:
            for name in REQUESTS:
                path = self.folder / name
                if path.exists():
                    wanted[name] = True
                    path.unlink(missing_ok=True)
        if self.signals:
            wanted["stop"] = True
        if world_size > 1:
            wanted = _agree(wanted, device)
        return {name for name, on in wanted.items() if on}


def _counted_by_the_watcher(signum: int, frame: object) -> None:
    """A Python-level handler must exist for the wakeup fd to hear the signal; Control._watch counts it."""


def leave(code: int) -> None:
    """Exit after run.end was written. A signal from now on only means "leave sooner": it
    exits with the run's own status instead of killing the process by default (which would
    put "killed by SIGTERM" next to a complete run.end). Module teardown is skipped, so
    Python never restores the default handlers while torch unloads."""

    def now(signum: int, frame: object) -> None:
        os._exit(code)

    signal.set_wakeup_fd(-1)  # the watcher thread must not end the run a second time
    signal.signal(signal.SIGTERM, now)
    signal.signal(signal.SIGINT, now)
    atexit._run_exitfuncs()  # trackers, logging: what a normal exit would run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _agree(wanted: dict[str, bool], device: object) -> dict[str, bool]:
    import torch
    import torch.distributed as dist

    flags = torch.tensor([int(v) for v in wanted.values()], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return {name: bool(v) for name, v in zip(wanted, flags.tolist())}
