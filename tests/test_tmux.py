"""`fluxtui` in a real tmux pane at 100x30: start training with keys and read the advancing
step counter off the screen, as a person over SSH would see it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from fluxtui.core import config, runs
from fluxtui.core.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Tmux:
    """A private tmux server (its own socket), so a developer's sessions are never touched."""

    def __init__(self, tmp_path):
        self.socket = f"fluxtui-test-{os.getpid()}"
        self.conf = tmp_path / "tmux.conf"
        self.conf.write_text('set -g default-terminal "screen-256color"\nset -g status off\n')

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args], capture_output=True, text=True, timeout=20
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "fx")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            m = re.search(pattern, text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared; the pane shows:\n{text}")
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


def test_start_training_with_keys_in_tmux(demo_workspace, tmp_path):
    ws = Workspace.at(demo_workspace)
    config.set_values(ws.project_file, {"training.max_train_steps": 20000, "training.checkpointing_steps": 1000})
    tmux = Tmux(tmp_path)
    app = shlex.join(
        ["env", "-u", "NO_COLOR", f"XDG_CONFIG_HOME={tmp_path / 'xdg'}", sys.executable, "-m", "fluxtui.cli"]
    )
    try:
        tmux("new-session", "-d", "-s", "fx", "-x", "100", "-y", "30", "-c", str(ws.root), app)
        tmux.wait_for(r"1 Overview.*5 Runs", 60)
        tmux.wait_for(r"no runs yet", 30)
        tmux("send-keys", "-t", "fx", "s")  # Start
        first = int(tmux.wait_for(r"step (\d+)/20000", 240)[1])
        later = first
        deadline = time.monotonic() + 120
        while later <= first + 20 and time.monotonic() < deadline:
            time.sleep(0.5)
            later = int(tmux.wait_for(r"step (\d+)/20000", 30)[1])
        assert later > first + 20, f"the step counter stayed at {first}"
        tmux("send-keys", "-t", "fx", "4")  # the monitor shows the same counter and a chart
        tmux.wait_for(r"running\s+step \d+/20000", 30)
        tmux("send-keys", "-t", "fx", "x")  # Stop
        tmux.wait_for(r"stopped", 120)
        tmux("send-keys", "-t", "fx", "q")
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and "fx"
            in subprocess.run(["tmux", "-L", tmux.socket, "list-sessions"], capture_output=True, text=True).stdout
        ):
            time.sleep(0.2)
    finally:
        tmux.kill()
        if runs.active_run(ws) is not None:
            runs.stop_run(ws, timeout=20)
    assert runs.list_runs(ws)[-1].status == "stopped"


def test_fluxtui_dir_opens_the_tui_on_that_folder(demo_workspace, tmp_path):
    ws = Workspace.at(demo_workspace)
    tmux = Tmux(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    app = shlex.join(
        [
            "env",
            "-u",
            "NO_COLOR",
            f"XDG_CONFIG_HOME={tmp_path / 'xdg'}",
            sys.executable,
            "-m",
            "fluxtui.cli",
            str(ws.root),
        ]
    )
    try:
        tmux("new-session", "-d", "-s", "fx", "-x", "80", "-y", "24", "-c", str(elsewhere), app)
        tmux.wait_for(r"1 Overview", 60)
        tmux.wait_for(r"\(ws\)", 30)  # the project panel names the workspace folder
        tmux("send-keys", "-t", "fx", "q")
    finally:
        tmux.kill()
