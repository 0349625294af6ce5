"""Faults and bad inputs (issue 10): each must end in a clear line, never a lost file or a
silent wrong result. Real files, real subprocesses; mounts (tmpfs, read-only bind) when the
tests run as root, else skipped with the reason."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from fluxtui.core import config


def test_init_demo_never_overwrites_the_users_files(tmp_path):
    ws = tmp_path / "ws"
    shapes = ws / "datasets" / "shapes"
    shapes.mkdir(parents=True)
    (shapes / "000-yellow-circle.png").write_bytes(b"my own picture")
    (shapes / "000-yellow-circle.txt").write_text("my own caption\n")
    done = run_cli("init", str(ws), "--demo")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "000-yellow-circle.png" in done.stderr and "000-yellow-circle.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert (shapes / "000-yellow-circle.png").read_bytes() == b"my own picture"
    assert (shapes / "000-yellow-circle.txt").read_text() == "my own caption\n"
    assert sorted(p.name for p in shapes.iterdir()) == ["000-yellow-circle.png", "000-yellow-circle.txt"]
    assert not (ws / "project.toml").exists()  # nothing half made

    # other files of the user's in that folder are no obstacle
    other = tmp_path / "ws2" / "datasets" / "shapes"
    other.mkdir(parents=True)
    (other / "mine.png").write_bytes(b"x")
    assert run_cli("init", str(tmp_path / "ws2"), "--demo").returncode == 0
    assert (other / "mine.png").read_bytes() == b"x"


def test_project_toml_that_is_a_folder_is_named_as_such(tmp_path):
    ws = tmp_path / "ws"
    (ws / "project.toml").mkdir(parents=True)
    project, problems = config.load(ws)
    assert project is None and "is a folder, not a file" in problems[0].message
    assert "project.toml/project.toml" not in problems[0].message
    for args in (["validate", str(ws)], ["run", str(ws)], ["status", str(ws)], ["init", str(ws)]):
        done = run_cli(*args)
        text = done.stdout + done.stderr
        assert done.returncode == 2, (args, text)
        assert "is a folder" in text and "does not exist" not in text, (args, text)
        assert "project.toml/project.toml" not in text and "Traceback" not in text, (args, text)
    assert Path(ws / "project.toml").is_dir()
