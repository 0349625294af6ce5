"""`fluxtui serve`: the TUI in a browser through textual-serve, on loopback by default."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from fluxtui.commands.serve import command_for
from fluxtui.core.workspace import Workspace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent, it only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


async def read_app_over_websocket(port: int, want: str, timeout: float = 90) -> str:
    """Be the browser: open the websocket, and collect what the app draws until `want` shows."""
    import aiohttp

    seen = ""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30") as ws,
    ):
        deadline = time.monotonic() + timeout
        while want not in seen and time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                seen += msg.data.decode("utf-8", "replace")
            elif msg.type == aiohttp.WSMsgType.TEXT:
                seen += msg.data
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen)


@pytest.mark.slow
def test_serve_answers_on_loopback_and_stops(demo_workspace):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxtui.cli", "serve", str(demo_workspace), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while body is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    assert resp.status == 200
                    body = resp.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert "fluxtui" in body and "/ws" in body  # the page that opens the app's websocket
        screen = asyncio.run(read_app_over_websocket(port, want="demo-shapes"))
        assert "Overview" in screen and "demo-shapes" in screen
        addr = other_address()
        if addr is not None:
            with pytest.raises(OSError):
                socket.create_connection((addr, port), timeout=2).close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode is not None


def test_serve_runs_the_tui_command_for_the_workspace(demo_workspace):
    cmd = command_for(Workspace.at(demo_workspace))
    assert cmd.startswith(sys.executable) and cmd.endswith(f"-m fluxtui.cli tui {Workspace.at(demo_workspace).root}")


def test_serve_refuses_a_folder_without_a_project(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli", "serve", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "no project.toml" in out.stderr


def test_tui_refuses_a_folder_without_a_project(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli", "tui", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "no project.toml" in out.stderr and "fluxtui init" in out.stderr
    bare = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert bare.returncode == 2 and "no project.toml here" in bare.stderr
