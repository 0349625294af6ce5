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


async def wait_for(pilot, predicate, timeout: float = 60.0, what: str = "the condition") -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds. Pilot's pause
    gives up after 30 s of a busy screen (WaitForScreenTimeout), which on a loaded machine is
    no failure of the app: only our own deadline decides."""
    from textual.pilot import WaitForScreenTimeout

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            await pilot.pause(0.05)
        except WaitForScreenTimeout:
            continue


async def wait_for_workers(app, timeout: float = 120.0) -> None:
    """Until no worker runs. Under load a periodic exclusive worker (the run poller) can be
    replaced by its next tick while we wait, which Textual reports as WorkerCancelled: that
    is no failure of the test, so wait again, up to a generous deadline."""
    from textual.worker import WorkerCancelled

    deadline = time.monotonic() + timeout
    while True:
        try:
            await app.workers.wait_for_complete()
            return
        except WorkerCancelled:
            if time.monotonic() > deadline:
                raise


def send_batch(app, *keys: str) -> None:
    """Post keys the way a terminal read delivers them over SSH: all at once, no pause
    between them (Pilot's `press` waits for the app to go idle after every key)."""
    from textual import events

    for key in keys:
        char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)


def toasts(app) -> list[str]:
    """The notifications shown so far, oldest first."""
    return [str(n.message) for n in app._notifications]
