"""`fluxtui serve`: the TUI in a browser through textual-serve, on loopback by default."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
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


async def read_app_over_websocket(url: str, want: str, timeout: float = 90, headers=None) -> str:
    """Be the browser: open the websocket, and collect what the app draws until `want` shows."""
    import aiohttp

    seen = ""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}?width=100&height=30", headers=headers) as ws,
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


async def websocket_status(url: str, headers=None) -> int:
    """The HTTP status a websocket handshake gets (101 when it is accepted)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"{url}?width=80&height=24", headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def http_status(url: str, headers=None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def served(demo_workspace):
    """`fluxtui serve` on a free loopback port: (process, port, the URL it printed)."""
    proc, port, url = start_serve(demo_workspace)
    try:
        yield proc, port, url
    finally:
        stop_serve(proc)


def start_serve(workspace, timeout: float = 60):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxtui.cli", "serve", str(workspace), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)
            continue
        seen.append(line)
        found = re.search(r"open (http://\S+)", line)
        if found:
            return proc, port, found[1]
    stop_serve(proc)
    raise AssertionError(f"fluxtui serve printed no URL: {''.join(seen)}")


def stop_serve(proc) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_serve_prints_a_token_url_and_the_page_needs_it(served):
    _proc, port, url = served
    token = re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=([A-Za-z0-9_-]{{20,}})", url)[1]
    status, body = http_status(url)
    assert status == 200 and "fluxtui" in body and f"/ws/{token}" in body
    # nothing from outside the machine: every src/href is a local path
    assert "googleapis" not in body and not re.findall(r'(?:src|href)="(?!/static/|data:)[^"]*"', body)
    assert http_status(f"http://127.0.0.1:{port}/")[0] == 403
    assert http_status(f"http://127.0.0.1:{port}/?token=wrong")[0] == 403
    status, css = http_status(f"http://127.0.0.1:{port}/static/css/xterm.css")
    assert status == 200 and "http" not in re.sub(r"/\*.*?\*/", "", css, flags=re.S)  # no remote import
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 is refused even with the token
    assert http_status(url, headers={"Host": f"evil.example:{port}"})[0] == 403
    addr = other_address()
    if addr is not None:
        with pytest.raises(OSError):
            socket.create_connection((addr, port), timeout=2).close()


@pytest.mark.slow
def test_serve_websocket_needs_the_token_and_its_own_origin(served):
    proc, port, url = served
    token = url.split("token=")[1]
    ws_url = f"http://127.0.0.1:{port}/ws/{token}"
    assert asyncio.run(websocket_status(f"http://127.0.0.1:{port}/ws")) == 404
    assert asyncio.run(websocket_status(f"http://127.0.0.1:{port}/ws/wrong-token")) == 403
    foreign = {"Origin": "http://evil.example"}
    assert asyncio.run(websocket_status(ws_url, headers=foreign)) == 403
    other_port = {"Origin": f"http://127.0.0.1:{port + 1}"}
    assert asyncio.run(websocket_status(ws_url, headers=other_port)) == 403
    own = {"Origin": f"http://127.0.0.1:{port}"}
    screen = asyncio.run(read_app_over_websocket(ws_url, want="demo-shapes", headers=own))
    assert "Overview" in screen and "demo-shapes" in screen
    assert proc.poll() is None


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
