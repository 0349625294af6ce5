"""Real faults for tests: a small tmpfs (a disk that fills up) and a read-only bind mount.
Both need root (mount); elsewhere the tests that use them are skipped with the reason."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs / bind mount (run the tests as root to include it)")
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command on this machine")


@contextlib.contextmanager
def small_disk(where: Path, size: str = "64m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where`: a disk that really fills up."""
    _need_root()
    where.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        _umount(where)


@contextlib.contextmanager
def read_only_view(source: Path, where: Path) -> Iterator[Path]:
    """`source` bind-mounted read-only at `where` (root ignores file modes; a mount does not)."""
    _need_root()
    where.mkdir(parents=True, exist_ok=True)
    done = _mount("--bind", str(source), str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        again = _mount("-o", "remount,bind,ro", str(where))
        if again.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {again.stderr.strip()}")
        yield where
    finally:
        _umount(where)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system holding `folder` until at most `leave` bytes are free."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        while True:
            free = shutil.disk_usage(folder).free
            if free <= leave:
                break
            try:
                f.write(chunk[: max(4096, min(len(chunk), free - leave))])
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return filler
