"""Shared pieces of the TUI tests: the workspace fixture and waiting on the app's state.

conftest.py registers this module as a plugin, so `ws` is there for every TUI test;
`from tui_support import wait_for` for the helper.
"""

from __future__ import annotations

import time

import pytest

from fluxtui.core import workspace


@pytest.fixture
def ws(demo_workspace):
    return workspace.Workspace.at(demo_workspace)


async def wait_for(pilot, predicate, timeout: float = 20.0, what: str = "the condition") -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
