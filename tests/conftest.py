"""Shared fixtures. Heavy things (the tiny model, a demo workspace) are built once per session
(per xdist worker) and copied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The TUI tests' `ws` fixture (a Workspace of a fresh demo copy) and helpers.
pytest_plugins = ["tui_support"]
PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory, tmp_path):
    """Keep a developer's own settings, tokens and the network out of every test; settings
    written by one test (the TUI's theme) stay with that test."""
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / ".hf"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # This machine's RAM is an input of `validate` (core/rules/memory.py); tests see a roomy
    # one unless they write their own (tests/test_estimate_memory.py).
    meminfo = home / "meminfo"
    if not meminfo.exists():
        meminfo.write_text("MemTotal:       1073741824 kB\nMemAvailable:   1073741824 kB\n")
    monkeypatch.setenv("FLUXTUI_MEMINFO", str(meminfo))
    for var in ("FORCE_COLOR", "CUDA_VISIBLE_DEVICES", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny-random Flux pipeline folder, built once per session."""
    from fluxtui.trainer.tiny import ensure_tiny_flux

    return ensure_tiny_flux(tmp_path_factory.mktemp("models"), seed=0, size="tiny")


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory) -> Path:
    from fluxtui.core import workspace

    return workspace.init(tmp_path_factory.mktemp("demo-template") / "ws", demo=True).root


@pytest.fixture
def demo_workspace(_demo_template, tmp_path) -> Path:
    """A fresh `fluxtui init --demo` workspace (a copy, so each test may change it)."""
    dest = tmp_path / "ws"
    shutil.copytree(_demo_template, dest)
    return dest


# The smallest project the trainer's unit tests load models from.
TINY = """
[model]
model_flavour = "tiny-random"
base_model_precision = "no_change"
text_encoder_2_precision = "no_change"
"""


def make_project(ws: Path, text: str = TINY):
    """A checked Project from project.toml text written into folder `ws`."""
    from fluxtui.core import config

    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(text)
    project, problems = config.load(ws)
    assert project is not None, [str(p) for p in problems]
    return project


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300, input: str | None = None
):
    """Run `fluxtui ARGS` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [PYTHON, "-m", "fluxtui.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
